"""``output="dense"``: a 0/1 raster ``(B, T, N)``, float32 by default (what ``nn.Linear``,
snnTorch and Norse take), or ``(T, B, N)`` with ``time_first=True`` as their training loops
step through time; ``flatten=False`` keeps ``(C, H, W)`` in place of ``N``."""

from __future__ import annotations

import dataclasses

import torch

from ..events import SpikeEvents
from ..memory_guard import check_fits
from .base import OutputFormat, check_image_shape

__all__ = ["Dense", "dense_raster"]


def dense_raster(ev: SpikeEvents, *, time_first: bool = False, dtype: torch.dtype = torch.float32,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """The ``(B, T, N)`` (``time_first``: ``(T, B, N)``) 0/1 raster of ``ev``, written into
    ``out`` when given: zeroed first; same dtype and device, contiguous, shaped ``(B, T, N)``
    or ``(B, T, C, H, W)`` (time-first: ``T, B`` leading). No new memory is allocated then.

    Raises:
        ValueError: ``out`` does not fit, naming what differs.
        MemoryError: a new raster larger than the device's memory.
    """
    shape = (ev.num_steps, ev.batch_size, ev.num_neurons) if time_first else ev.shape
    device = ev.step.device
    if out is None:
        itemsize = torch.empty(0, dtype=dtype).element_size()
        check_fits(ev.batch_size * ev.num_steps * ev.num_neurons * itemsize, device,
                   f"a dense {dtype} raster of {ev.batch_size} images x {ev.num_steps:,} steps x {ev.num_neurons} neurons",
                   "use output='sparse' (or 'times'), smaller batches, or dtype=torch.bool")
        dense = torch.zeros(shape, dtype=dtype, device=device)
    else:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"out must be a torch.Tensor, got {type(out).__name__}")
        want = {"dtype": dtype, "device": device, "leading dimensions": shape[:2], "size": shape[0] * shape[1] * shape[2]}
        have = {"dtype": out.dtype, "device": out.device, "leading dimensions": tuple(out.shape[:2]), "size": out.numel()}
        for key in want:
            if want[key] != have[key]:
                raise ValueError(f"out has {key} {have[key]}, the raster needs {want[key]}")
        if not out.is_contiguous():
            raise ValueError("out must be contiguous")
        dense = out.view(shape).zero_()
    if time_first:
        dense[ev.step, ev.sample, ev.neuron] = 1
    else:
        dense[ev.sample, ev.step, ev.neuron] = 1
    return dense


@dataclasses.dataclass(frozen=True, repr=False)
class Dense(OutputFormat):
    """A dense 0/1 raster.

    Attributes:
        time_first: ``(T, B, ...)`` instead of ``(B, T, ...)``.
        dtype: element type (values 0 and 1): any real dtype, ``torch.bool`` for memory.
        flatten: ``True``: neurons along one axis ``N``; ``False``: the image's ``(C, H, W)``.
    """

    name = "dense"
    time_first: bool = False
    dtype: torch.dtype = torch.float32
    flatten: bool = True

    def __post_init__(self) -> None:
        for option in ("time_first", "flatten"):
            if not isinstance(getattr(self, option), bool):
                raise TypeError(f"{option} must be True or False, got {getattr(self, option)!r}")
        if not isinstance(self.dtype, torch.dtype) or self.dtype.is_complex or _is_quantized(self.dtype):
            raise ValueError(f"dtype must be a real torch.dtype such as torch.float32 or torch.bool, got {self.dtype!r}")

    def render(self, ev: SpikeEvents, *, dt: float, image_shape: tuple[int, int, int] | None, batched: bool,
               out: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`OutputFormat.render`; ``out``: a buffer to write the batched raster into
        (see :func:`dense_raster`)."""
        dense = dense_raster(ev, time_first=self.time_first, dtype=self.dtype, out=out)
        if not self.flatten:
            dense = dense.view(*dense.shape[:2], *check_image_shape(image_shape, ev.num_neurons))
        if batched:
            return dense
        return dense[:, 0] if self.time_first else dense[0]


def _is_quantized(dtype: torch.dtype) -> bool:
    return dtype in (torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4)
