"""Dense 0/1 rasters of spike events, fresh or written into a buffer the caller keeps.

A float32 raster of an MNIST image (200 steps x 784 neurons) is 627 KB, so a batch of 1000
is 627 MB: making it costs far more than encoding it. Two things keep that cost down:

- ``out=``: a buffer reused batch after batch is only zeroed (no new memory from the
  operating system, page by page, each time);
- fresh CPU rasters are allocated by NumPy, which asks Linux for transparent huge pages
  (2 MB) for large arrays where the system allows it (``madvise`` mode), so the kernel
  maps 512 times fewer pages; torch's own allocator does so only with the environment
  variable ``THP_MEM_ALLOC_ENABLE=1``. The result is an ordinary tensor sharing NumPy's
  memory (only ``resize_`` is refused, as for any ``torch.from_numpy`` tensor).
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch

from .events import SpikeEvents
from .memory_guard import check_fits

__all__ = ["check_raster_dtype", "dense_raster"]


def check_raster_dtype(dtype: object) -> None:
    """Refuse a ``dtype`` no raster can be made of: not a real ``torch.dtype``, or one torch's
    ``index_fill_`` does not fill (uint16/32/64, float8; probed on the CPU, whose kernel
    takes the same types as the CUDA one)."""
    if not isinstance(dtype, torch.dtype) or dtype.is_complex or not _fills(dtype):
        raise ValueError(f"dtype must be a real torch.dtype that torch's index_fill_ fills, such as "
                         f"torch.float32 or torch.bool, got dtype={dtype!r}")


@functools.cache
def _fills(dtype: torch.dtype) -> bool:
    try:
        with warnings.catch_warnings():  # quantized dtypes warn they are deprecated
            warnings.simplefilter("ignore")
            torch.zeros(1, dtype=dtype).index_fill_(0, torch.zeros(1, dtype=torch.int64), True)
    except (NotImplementedError, RuntimeError):
        return False
    return True


def dense_raster(ev: SpikeEvents, *, time_first: bool, dtype: torch.dtype,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """The spikes of ``ev`` as a 0/1 raster of ``dtype``: ``(B, T, N)``, or ``(T, B, N)``
    with ``time_first``.

    Args:
        ev: the spikes.
        time_first: ``(T, B, ...)`` instead of ``(B, T, ...)``.
        dtype: element type (ones at spikes, zeros elsewhere), e.g. ``torch.float32`` or ``torch.bool``.
        out: a contiguous tensor of ``dtype`` on the events' device to write into (zeroed
            first) and return; its trailing dimensions may be the image's ``(C, H, W)`` in
            place of ``N`` (any whose product is ``N``).

    Raises:
        ValueError: ``out`` of another shape, dtype or device, not contiguous, or requiring grad.
        MemoryError: a fresh raster larger than the device's whole memory.
    """
    lead = (ev.num_steps, ev.batch_size) if time_first else (ev.batch_size, ev.num_steps)
    device = ev.step.device
    if out is None:
        shape = (*lead, ev.num_neurons)
        itemsize = torch.empty(0, dtype=dtype).element_size()
        check_fits(math.prod(shape) * itemsize, device,
                   f"a dense {dtype} raster of {ev.batch_size} images x {ev.num_steps:,} steps x {ev.num_neurons} neurons",
                   "use output='sparse' (or 'times'), smaller batches, or dtype=torch.bool")
        raster = _zeros(shape, dtype, device)
    else:
        _check_out(out, lead, ev.num_neurons, dtype, device)
        raster = out.zero_()
    first, second = (ev.step, ev.sample) if time_first else (ev.sample, ev.step)
    flat = (first * lead[1] + second) * ev.num_neurons + ev.neuron
    raster.view(-1).index_fill_(0, flat, True)
    return raster


def _zeros(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A zero tensor; on CPU in NumPy's memory (huge pages where Linux allows them)."""
    if device.type != "cpu":
        return torch.zeros(shape, dtype=dtype, device=device)
    nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
    return torch.from_numpy(np.zeros(nbytes, dtype=np.uint8)).view(dtype).view(shape)


def _check_out(out: object, lead: tuple[int, int], num_neurons: int, dtype: torch.dtype,
               device: torch.device) -> None:
    """Refuse an ``out`` the raster cannot be written into, naming what differs."""
    expected = f"({lead[0]}, {lead[1]}, {num_neurons})"
    if not isinstance(out, torch.Tensor) or out.layout != torch.strided:
        raise ValueError(f"out must be a dense torch.Tensor of shape {expected}, got "
                         + (f"layout {out.layout}" if isinstance(out, torch.Tensor) else type(out).__name__))
    if tuple(out.shape[:2]) != lead or math.prod(out.shape[2:]) != num_neurons or out.ndim < 3:
        raise ValueError(f"out has shape {tuple(out.shape)}, the raster is {expected} "
                         f"(or its last dimension as the image's (C, H, W))")
    if out.dtype != dtype:
        raise ValueError(f"out has dtype {out.dtype}, the raster is {dtype}")
    if out.device != device:
        raise ValueError(f"out is on {out.device}, the spikes are on {device}")
    if not out.is_contiguous():
        raise ValueError(f"out must be contiguous (strides {out.stride()}); pass a fresh buffer or out.contiguous()")
    if out.requires_grad:
        raise ValueError("out requires grad; a spike raster is written in place: pass a tensor without requires_grad")
