"""Refuse an allocation larger than the device's available memory before making it.

A dense ``(B, T, N)`` raster of a long window is easy to ask for by accident (1000 images
of a 1,000,000-step window are 784 GB); allocating it would fail deep inside torch, or
worse, be granted lazily by the operating system and end in the out-of-memory killer.
"""

from __future__ import annotations

import os

import torch

__all__ = ["available_memory_bytes", "check_fits"]


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory (bytes) that ``device`` can still give: a CUDA GPU's free memory, or the
    machine's available memory for the CPU (Linux ``MemAvailable``, else free pages);
    ``None`` where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        available = _meminfo_available()
        if available is not None:
            return available
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):  # not a POSIX system
            return None
    return None


def check_fits(nbytes: int, device: torch.device, what: str, hint: str = "") -> None:
    """Raise ``MemoryError`` naming ``what``, its size and the device's available memory if
    ``nbytes`` exceed it; ``hint`` says what to do instead."""
    available = available_memory_bytes(device)
    if available is not None and nbytes > available:
        raise MemoryError(f"{what} needs {nbytes / 1e9:,.1f} GB, more than the {available / 1e9:,.1f} GB "
                          f"of memory available on {device}" + (f"; {hint}" if hint else ""))
