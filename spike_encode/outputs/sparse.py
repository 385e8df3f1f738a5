"""``output="sparse"``: a coalesced sparse COO tensor ``(B, T, N)`` (one image ``(T, N)``),
float32 values of 1; with ``flatten=False``, ``(B, T, C, H, W)``. The default: a few KiB per image."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..events import SpikeEvents
from .base import OutputFormat, check_image_shape

__all__ = ["Sparse", "spike_events_to_sparse"]


def spike_events_to_sparse(ev: SpikeEvents, batched: bool = True) -> torch.Tensor:
    """Engine output as the sparse format; ``batched=False`` for one image's ``(T, N)``.

    ``ev`` must be sorted by (sample, step, neuron) without repeats, as every
    :class:`~spike_encode.events.SpikeEvents` is: the result is marked coalesced."""
    indices = ev.indices()  # no copy for the CPU engine's events
    indices, shape = (indices, ev.shape) if batched else (indices[1:], ev.shape[1:])
    return torch.sparse_coo_tensor(indices, _ones(len(ev), indices.device), shape, is_coalesced=True,
                                   check_invariants=False)


def _ones(count: int, device: torch.device) -> torch.Tensor:
    """``count`` float32 ones. On the CPU filled by NumPy: torch fills large tensors on its
    OpenMP threads, which then keep polling a core for a while, the one the CPU engine's
    helper thread needs for the next batch."""
    if device.type == "cpu":
        return torch.from_numpy(np.ones(count, dtype=np.float32))
    return torch.ones(count, dtype=torch.float32, device=device)


def _shaped_sparse(ev: SpikeEvents, image_shape: tuple[int, int, int] | None, batched: bool) -> torch.Tensor:
    """The sparse format with ``(c, h, w)`` indices in place of the neuron's."""
    _, height, width = image_shape
    pixel = ev.neuron % (height * width)
    rows = [ev.step, ev.neuron // (height * width), pixel // width, pixel % width]
    shape = (ev.num_steps, *image_shape)
    if batched:
        rows, shape = [ev.sample, *rows], (ev.batch_size, *shape)
    values = _ones(len(ev), ev.step.device)
    # row-major (c, h, w) keeps the (sample, step, neuron) order: still coalesced
    return torch.sparse_coo_tensor(torch.stack(rows), values, shape, is_coalesced=True, check_invariants=False)


@dataclasses.dataclass(frozen=True, repr=False)
class Sparse(OutputFormat):
    """Sparse COO spikes.

    Attributes:
        flatten: ``True``: neurons along one axis ``N``; ``False``: the image's ``(C, H, W)``.
    """

    name = "sparse"
    flatten: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.flatten, bool):
            raise TypeError(f"flatten must be True or False, got {self.flatten!r}")

    def render(self, ev: SpikeEvents, *, dt: float, image_shape: tuple[int, int, int] | None, batched: bool) -> torch.Tensor:
        if self.flatten:
            return spike_events_to_sparse(ev, batched)
        return _shaped_sparse(ev, check_image_shape(image_shape, ev.num_neurons), batched)
