"""``output="dense"``: a 0/1 raster ``(B, T, N)``, float32 by default (what ``nn.Linear``,
snnTorch and Norse take), or ``(T, B, N)`` with ``time_first=True`` as their training loops
step through time; ``flatten=False`` keeps ``(C, H, W)`` in place of ``N``."""

from __future__ import annotations

import dataclasses

import torch

from ..events import SpikeEvents
from ..rasters import dense_raster
from .base import OutputFormat, check_image_shape

__all__ = ["Dense"]


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
        (see :func:`spike_encode.rasters.dense_raster`)."""
        dense = dense_raster(ev, time_first=self.time_first, dtype=self.dtype, out=out)
        if not self.flatten:
            dense = dense.view(*dense.shape[:2], *check_image_shape(image_shape, ev.num_neurons))
        if batched:
            return dense
        return dense[:, 0] if self.time_first else dense[0]


def _is_quantized(dtype: torch.dtype) -> bool:
    return dtype in (torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4)
