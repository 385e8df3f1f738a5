"""Engines turn ``(B, N)`` input currents into :class:`SpikeEvents`.

- ``torch``: :mod:`.torch_engine`, exact float32 GeNN arithmetic in PyTorch, CPU or GPU.
- ``stepper``: :mod:`.stepper`, the straightforward step-by-step loop (reference, fallback).
"""

from __future__ import annotations

from ..events import SpikeEvents
from .stepper import simulate_steps
from .torch_engine import simulate_exact

__all__ = ["SpikeEvents", "simulate_exact", "simulate_steps"]
