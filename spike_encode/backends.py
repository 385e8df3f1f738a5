"""Choosing an engine: ``"torch"``, ``"genn"`` or ``"auto"``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .engines import SpikeEvents, simulate_exact
from .params import EncoderParams

__all__ = ["BACKENDS", "BackendUnavailableError", "make_engine"]

BACKENDS = ("auto", "torch", "genn")

Engine = Callable[[torch.Tensor], SpikeEvents]


class BackendUnavailableError(RuntimeError):
    """A backend or device was asked for explicitly but cannot run here."""


def check_backend_name(backend: str) -> str:
    """Return ``backend`` if it is one of :data:`BACKENDS`, else raise ``ValueError``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    return backend


def make_engine(backend: str, params: EncoderParams) -> tuple[str, Engine]:
    """The backend's name and a function from ``(B, N)`` currents (nA) to spike events."""
    check_backend_name(backend)
    if backend == "genn":
        raise BackendUnavailableError("backend='genn' is not available yet")
    return "torch", lambda currents: simulate_exact(currents, params)
