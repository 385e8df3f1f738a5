"""The engines spike_encode can run, registered with what each can run.

An engine turns a batch's input currents (:class:`~spike_encode.currents.InputCurrents`,
or their ``(B, N)`` tensor, nA) into :class:`~spike_encode.events.SpikeEvents`.
Each :class:`EngineInfo` says which devices, precisions, neuron models and arithmetic it
computes, whether it is installed here, and how to make it; ``backend="auto"``, the CLI's
``--backend`` choices and :func:`make_engine` read :data:`ENGINES`. A new engine is one
module and one :func:`register_engine` call below.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..currents import InputCurrents
from ..errors import BackendUnavailableError
from ..events import SpikeEvents
from ..spec import EncodingSpec

__all__ = ["AUTO", "ENGINES", "Engine", "EngineInfo", "backend_names", "check_backend_name", "make_engine",
           "register_engine", "auto_engine_name"]

#: The backend name that lets spike_encode choose.
AUTO = "auto"

#: An engine: the spike events of a batch's input currents (or of their ``(B, N)`` tensor, nA).
Engine = Callable[[InputCurrents | torch.Tensor], SpikeEvents]


@dataclass(frozen=True)
class EngineInfo:
    """One engine and what it can run.

    Attributes:
        name: the ``backend=`` name.
        devices: device types it computes on (``"cpu"``, ``"cuda"``).
        precisions: GeNN ``scalar`` types it computes.
        arithmetic: for each device type, the float32 arithmetics (``"ieee"``, ``"fma"``) it computes.
        custom_neurons: whether it runs neuron models other than the tutorial's LIF.
        repeated_spikes: whether it runs windows in which a neuron fires more than once.
        unavailable: why it cannot run on a device here (``None``: it can); e.g. PyGeNN missing.
        make: ``make(spec, device, cache_dir)`` builds the engine.
        auto_devices: device types on which ``backend="auto"`` prefers it over the others.
    """

    name: str
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    arithmetic: dict[str, tuple[str, ...]]
    custom_neurons: bool
    repeated_spikes: bool
    unavailable: Callable[[torch.device, str | Path | None], str | None]
    make: Callable[[EncodingSpec, torch.device | None, str | Path | None], Engine]
    auto_devices: tuple[str, ...] = ()

    def refusal(self, spec: EncodingSpec, device: torch.device) -> str | None:
        """Why this engine cannot compute ``spec`` on ``device`` (``None``: it can)."""
        if device.type not in self.devices:
            return f"backend={self.name!r} runs on {', '.join(self.devices)}, not device={str(device)!r}"
        if spec.precision not in self.precisions:
            return (f"backend={self.name!r} computes precision {' or '.join(map(repr, self.precisions))} only, "
                    f"not precision={spec.precision!r}")
        if spec.neuron is not None and not self.custom_neurons:
            return f"backend={self.name!r} computes the tutorial's LIF model only, not a custom neuron model"
        arithmetic = spec.params.arithmetic
        if arithmetic not in self.arithmetic.get(device.type, ()):
            where = [kind for kind, kinds in self.arithmetic.items() if arithmetic in kinds]
            return (f"backend={self.name!r} computes arithmetic={arithmetic!r} on "
                    f"{' and '.join(where) or 'no device'} only, not on {device.type}")
        if not self.repeated_spikes and not spec.params.at_most_one_spike:
            return f"backend={self.name!r} runs windows with at most one spike per neuron only"
        return None


#: Every registered engine, by name, in order of registration.
ENGINES: dict[str, EngineInfo] = {}


def register_engine(info: EngineInfo) -> EngineInfo:
    """Add an engine to :data:`ENGINES` (its name becomes a ``backend=`` choice)."""
    if info.name == AUTO or info.name in ENGINES:
        raise ValueError(f"an engine named {info.name!r} is already registered")
    ENGINES[info.name] = info
    return info


def backend_names() -> tuple[str, ...]:
    """The ``backend=`` choices: ``"auto"`` and every registered engine."""
    return (AUTO, *ENGINES)


def check_backend_name(backend: str) -> str:
    """Return ``backend`` if it is one of :func:`backend_names`, else raise ``ValueError``."""
    if backend not in backend_names():
        raise ValueError(f"backend={backend!r} is not one of {backend_names()}")
    return backend


def auto_engine_name(spec: EncodingSpec, device: torch.device | None, cache_dir: str | Path | None = None) -> str:
    """The engine ``backend="auto"`` picks: the first that can compute ``spec`` on ``device``
    and is available here, trying those that prefer this device type first (the torch engine
    on a CPU and on CUDA, where it is the faster of the two), then the others in order of
    registration (GeNN, for what only GeNN runs).

    Raises:
        BackendUnavailableError: no engine can; the message says why each cannot.
    """
    device = device if device is not None else torch.device("cpu")
    engines = sorted(ENGINES.values(), key=lambda info: device.type not in info.auto_devices)  # stable
    reasons = []
    for info in engines:  # the first that fits: a preferred engine that cannot run is not waited for
        why = info.refusal(spec, device) or info.unavailable(device, cache_dir)
        if why is None:
            return info.name
        reasons.append(why)
    raise BackendUnavailableError("no engine can run this encoding here: " + "; ".join(reasons))


def make_engine(backend: str, spec: EncodingSpec, device: torch.device | None = None,
                cache_dir: str | Path | None = None) -> tuple[str, Engine]:
    """The engine's name and the engine for ``backend`` (or the one ``"auto"`` picks).

    Raises:
        ValueError: the named engine cannot compute ``spec`` on ``device``.
        BackendUnavailableError: the named engine is not available here (e.g. PyGeNN missing).
    """
    check_backend_name(backend)
    name = auto_engine_name(spec, device, cache_dir) if backend == AUTO else backend
    info = ENGINES[name]
    where = device if device is not None else torch.device("cpu")
    if backend != AUTO:
        why = info.refusal(spec, where)
        if why is not None:
            able = [other for other in ENGINES if ENGINES[other].refusal(spec, where) is None]
            raise ValueError(why + (f"; backend={' or '.join(map(repr, able))} can" if able else ""))
    return name, info.make(spec, device, cache_dir)


# --------------------------------------------------------------------------- the engines
def _torch_engine(spec: EncodingSpec, device: torch.device | None, cache_dir: str | Path | None) -> Engine:
    from .torch_engine import prepare, simulate_exact

    params = spec.params
    prepare(params)
    return lambda currents: simulate_exact(currents, params)


def _genn_unavailable(device: torch.device, cache_dir: str | Path | None) -> str | None:
    from ..cache_dir import default_cache_dir
    from .genn_engine import cache_is_writable, genn_backends

    needed = "cuda" if device.type == "cuda" else "single_threaded_cpu"
    if needed not in genn_backends():
        return f"backend='genn' on {device.type} needs PyGeNN with GeNN's {needed!r} backend"
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not cache_is_writable(folder):
        warnings.warn(f"backend='auto' does not use GeNN: its cache folder {folder} is not writable", stacklevel=4)
        return f"backend='genn' keeps built models in {folder}, which is not writable"
    return None


def _genn_engine(spec: EncodingSpec, device: torch.device | None, cache_dir: str | Path | None) -> Engine:
    from .genn_engine import GeNNEngine

    return GeNNEngine(spec.params, device, neuron=spec.neuron, precision=spec.precision, cache_dir=cache_dir)


register_engine(EngineInfo(
    name="torch", devices=("cpu", "cuda"), precisions=("float",),
    arithmetic={"cpu": ("ieee", "fma"), "cuda": ("ieee", "fma")},
    custom_neurons=False, repeated_spikes=True,
    unavailable=lambda device, cache_dir: None, make=_torch_engine, auto_devices=("cpu", "cuda")))

register_engine(EngineInfo(
    name="genn", devices=("cpu", "cuda"), precisions=("float", "double"),
    arithmetic={"cpu": ("ieee",), "cuda": ("ieee", "fma")},
    custom_neurons=True, repeated_spikes=True,
    unavailable=_genn_unavailable, make=_genn_engine))
