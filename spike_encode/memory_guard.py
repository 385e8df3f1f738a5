"""Refuse an allocation larger than the device's whole memory before making it.

A dense ``(B, T, N)`` raster of a long window is easy to ask for by accident (1000 images
of a 1,000,000-step window are 784 GB); allocating it would fail deep inside torch, or
worse, be granted lazily by the operating system and end in the out-of-memory killer.
"""

from __future__ import annotations

import os

import torch

__all__ = ["device_memory_bytes", "check_fits"]


def device_memory_bytes(device: torch.device) -> int | None:
    """Total memory (bytes) of ``device``: a CUDA GPU's, or the machine's physical memory
    for the CPU; ``None`` where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[1])
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):  # not a POSIX system
            return None
    return None


def check_fits(nbytes: int, device: torch.device, what: str, hint: str = "") -> None:
    """Raise ``MemoryError`` naming ``what``, its size and the device's memory if ``nbytes``
    exceed all of ``device``'s memory; ``hint`` says what to do instead."""
    total = device_memory_bytes(device)
    if total is not None and nbytes > total:
        raise MemoryError(f"{what} needs {nbytes / 1e9:,.1f} GB, more than all {total / 1e9:,.1f} GB "
                          f"of memory on {device}" + (f"; {hint}" if hint else ""))
