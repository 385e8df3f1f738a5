"""``output="dense"``: a 0/1 raster ``(B, T, N)``, float32 by default (what ``nn.Linear``,
snnTorch and Norse take), or ``(T, B, N)`` with ``time_first=True`` as their training loops
step through time; ``flatten=False`` keeps ``(C, H, W)`` in place of ``N``."""

from __future__ import annotations

import dataclasses

import torch

from ..events import SpikeEvents
from ..rasters import check_raster_dtype, dense_raster
from .base import OutputFormat, check_image_shape

__all__ = ["Dense"]


@dataclasses.dataclass(frozen=True, repr=False)
class Dense(OutputFormat):
    """A dense 0/1 raster.

    Attributes:
        time_first: ``(T, B, ...)`` instead of ``(B, T, ...)``.
        dtype: element type (values 0 and 1): a real dtype torch fills (not uint16/32/64 or
            float8), ``torch.bool`` for memory.
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
        check_raster_dtype(self.dtype)

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
