"""``output="times"``: ``(B, N)`` int64 first-spike step per neuron, ``-1`` where it never
fires (``flatten=False``: ``(B, C, H, W)``); only for encodings where a neuron fires at most once."""

from __future__ import annotations

import dataclasses

import torch

from ..events import SpikeEvents
from ..memory_guard import check_fits
from ..spec import EncodingSpec
from .base import OutputFormat, check_image_shape

__all__ = ["Times", "first_spike_steps"]


def first_spike_steps(ev: SpikeEvents) -> torch.Tensor:
    """``(B, N)`` int64 step of each neuron's spike, ``-1`` where it never fires.

    Raises:
        ValueError: some neuron fires more than once (the latency code is ambiguous).
    """
    check_fits(ev.batch_size * ev.num_neurons * 8, ev.step.device,
               f"first-spike times of {ev.batch_size} images x {ev.num_neurons} neurons", "use smaller batches")
    times = torch.full((ev.batch_size, ev.num_neurons), -1, dtype=torch.int64, device=ev.step.device)
    flat = ev.sample * ev.num_neurons + ev.neuron
    if flat.numel() and bool((torch.bincount(flat, minlength=times.numel()) > 1).any()):
        raise ValueError(
            "output='times' needs at most one spike per neuron, but some neuron fires more "
            "than once; use TauRefrac >= the window, or output='sparse'/'events'"
        )
    times.view(-1)[flat] = ev.step
    return times


@dataclasses.dataclass(frozen=True, repr=False)
class Times(OutputFormat):
    """First-spike steps: a latency code as one integer per neuron.

    Attributes:
        flatten: ``True``: ``(B, N)``; ``False``: ``(B, C, H, W)``.
    """

    name = "times"
    flatten: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.flatten, bool):
            raise TypeError(f"flatten must be True or False, got {self.flatten!r}")

    def check_spec(self, spec: EncodingSpec) -> None:
        """Refuse an encoding in which a neuron can fire twice within the window."""
        p = spec.params
        if spec.neuron is None and not p.at_most_one_spike:
            raise ValueError(
                f"output='times' needs at most one spike per neuron, but TauRefrac={p.lif.TauRefrac} ms "
                f"lets a neuron fire again within the {p.present_time_ms} ms window; use output='sparse' or 'events'")

    def render(self, ev: SpikeEvents, *, dt: float, image_shape: tuple[int, int, int] | None, batched: bool) -> torch.Tensor:
        times = first_spike_steps(ev)
        if not self.flatten:
            times = times.view(-1, *check_image_shape(image_shape, ev.num_neurons))
        return times if batched else times[0]
