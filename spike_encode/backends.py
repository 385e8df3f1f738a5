"""Choosing an engine: ``"torch"``, ``"genn"`` or ``"auto"``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .engines import SpikeEvents, simulate_exact
from .engines.torch_engine import prepare
from .params import EncoderParams

__all__ = ["BACKENDS", "BackendUnavailableError", "genn_can_run", "make_engine"]

BACKENDS = ("auto", "torch", "genn")

Engine = Callable[[torch.Tensor], SpikeEvents]


class BackendUnavailableError(RuntimeError):
    """A backend or device was asked for explicitly but cannot run here."""


def check_backend_name(backend: str) -> str:
    """Return ``backend`` if it is one of :data:`BACKENDS`, else raise ``ValueError``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    return backend


def genn_can_run(device: torch.device | None, arithmetic: str = "ieee") -> bool:
    """True if PyGeNN is installed with the GeNN backend that ``device`` needs, and that
    backend computes ``arithmetic`` (``"fma"``: CUDA only)."""
    from .engines.genn_engine import genn_backends

    on_cuda = device is not None and device.type == "cuda"
    if arithmetic == "fma" and not on_cuda:
        return False
    return ("cuda" if on_cuda else "single_threaded_cpu") in genn_backends()


def make_engine(backend: str, params: EncoderParams, device: torch.device | None = None, *,
                precision: str = "float", cache_dir: str | Path | None = None,
                neuron: object | None = None) -> tuple[str, Engine]:
    """The engine's name (``"torch"`` or ``"genn"``) and a function from ``(B, N)`` currents
    (nA) to spike events.

    ``"auto"`` takes GeNN when PyGeNN is installed with a backend for ``device`` that
    computes ``params.arithmetic``, else the torch engine. Settings only GeNN can run
    (``precision="double"``, a custom neuron model) need GeNN.
    """
    check_backend_name(backend)
    genn_only = precision != "float" or neuron is not None
    if backend == "torch" and genn_only:
        raise ValueError(
            "backend='torch' computes GeNN's LIF model in float32 only; "
            f"precision={precision!r} and custom neuron models need backend='genn'")
    if backend == "genn" or (backend == "auto" and (genn_only or genn_can_run(device, params.arithmetic))):
        from .engines.genn_engine import GeNNEngine

        return "genn", GeNNEngine(params, device, neuron=neuron, precision=precision, cache_dir=cache_dir)
    prepare(params)
    return "torch", lambda currents: simulate_exact(currents, params)
