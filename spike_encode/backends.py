"""Choosing an engine: ``"torch"``, ``"genn"`` or ``"auto"``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from .engines import SpikeEvents, simulate_exact
from .engines.torch_engine import prepare
from .errors import BackendUnavailableError
from .params import EncoderParams

__all__ = ["BACKENDS", "BackendUnavailableError", "auto_uses_genn", "genn_can_run", "make_engine"]

BACKENDS = ("auto", "torch", "genn")

Engine = Callable[[torch.Tensor], SpikeEvents]


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


def auto_uses_genn(device: torch.device | None, arithmetic: str = "ieee",
                   cache_dir: str | Path | None = None) -> bool:
    """Whether ``backend="auto"`` picks GeNN for the tutorial's model: on a CUDA device where
    PyGeNN's CUDA backend is installed and its cache folder is writable; never on a CPU,
    where the torch engine gives the same spikes many times faster than GeNN's
    single-threaded CPU backend."""
    if device is None or device.type != "cuda" or not genn_can_run(device, arithmetic):
        return False
    from .cache_dir import default_cache_dir
    from .engines.genn_engine import cache_is_writable

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if cache_is_writable(folder):
        return True
    warnings.warn(f"backend='auto' uses the torch engine: GeNN's cache folder {folder} is not writable",
                  stacklevel=3)
    return False


def make_engine(backend: str, params: EncoderParams, device: torch.device | None = None, *,
                precision: str = "float", cache_dir: str | Path | None = None,
                neuron: object | None = None) -> tuple[str, Engine]:
    """The engine's name (``"torch"`` or ``"genn"``) and a function from ``(B, N)`` currents
    (nA) to spike events.

    ``"auto"`` takes the torch engine, except on a CUDA device with PyGeNN's CUDA backend
    installed (:func:`auto_uses_genn`) and for settings only GeNN can run
    (``precision="double"``, a custom neuron model).
    """
    check_backend_name(backend)
    genn_only = precision != "float" or neuron is not None
    if backend == "torch" and genn_only:
        raise ValueError(
            "backend='torch' computes GeNN's LIF model in float32 only; "
            f"precision={precision!r} and custom neuron models need backend='genn'")
    if backend == "genn" or (backend == "auto" and (genn_only or auto_uses_genn(device, params.arithmetic, cache_dir))):
        from .engines.genn_engine import GeNNEngine

        return "genn", GeNNEngine(params, device, neuron=neuron, precision=precision, cache_dir=cache_dir)
    prepare(params)
    return "torch", lambda currents: simulate_exact(currents, params)
