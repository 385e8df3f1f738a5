"""One frozen, hashable description of the encoder's model.

The model is the GeNN mushroom-body tutorial's input layer: one leaky integrate-and-fire
"projection neuron" per pixel (GeNN's built-in ``LIF`` model), driven by a constant current
proportional to the pixel's share of the image, simulated for a presentation window.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

__all__ = ["LIFParams", "EncoderParams", "TUTORIAL_LIF_PARAMS", "ARITHMETICS", "MAX_STEPS"]

#: The tutorial's ``PN_PARAMS``: GeNN ``LIF`` parameters of the projection neurons.
TUTORIAL_LIF_PARAMS: dict[str, float] = {
    "C": 0.2,
    "TauM": 20.0,
    "Vrest": -60.0,
    "Vreset": -60.0,
    "Vthresh": -50.0,
    "Ioffset": 0.0,
    "TauRefrac": 100.0,
}


#: Ways of computing the LIF update: GeNN's CPU backend (``"ieee"``) and its default CUDA build (``"fma"``).
ARITHMETICS = ("ieee", "fma")


#: Most time steps a presentation window may have (100 s at the tutorial's 0.1 ms step).
MAX_STEPS = 1_000_000

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_TINY = float(np.finfo(np.float32).tiny)


def _f32(x: float) -> float:
    """Round a Python float to the nearest float32, as GeNN writes ``scalar`` literals."""
    with np.errstate(over="ignore"):
        return float(np.float32(x))


def _number(name: str, value: object) -> float:
    """``value`` as a float if it is a real number (Python or NumPy, not bool), else
    ``TypeError``; ``-0.0`` becomes ``0.0`` (the same spikes, so the same digest)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    result = float(value) + 0.0  # -0.0 + 0.0 is 0.0
    if not math.isfinite(result) or abs(result) > _FLOAT32_MAX:
        raise ValueError(f"{name} must be finite in float32 (GeNN's scalar type), got {value!r}")
    return result


@dataclass(frozen=True)
class LIFParams:
    """Parameters of GeNN's ``LIF`` neuron model, with GeNN's own names.

    Attributes:
        C: membrane capacitance (nF).
        TauM: membrane time constant (ms).
        Vrest: resting potential (mV).
        Vreset: potential after a spike, and the initial potential (mV).
        Vthresh: spike threshold (mV).
        Ioffset: constant offset current added to the input (nA).
        TauRefrac: refractory period after a spike (ms); ``V`` is frozen meanwhile.
    """

    C: float = TUTORIAL_LIF_PARAMS["C"]
    TauM: float = TUTORIAL_LIF_PARAMS["TauM"]
    Vrest: float = TUTORIAL_LIF_PARAMS["Vrest"]
    Vreset: float = TUTORIAL_LIF_PARAMS["Vreset"]
    Vthresh: float = TUTORIAL_LIF_PARAMS["Vthresh"]
    Ioffset: float = TUTORIAL_LIF_PARAMS["Ioffset"]
    TauRefrac: float = TUTORIAL_LIF_PARAMS["TauRefrac"]

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            object.__setattr__(self, name, _number(f"lif_params[{name!r}]", value))
        for name in ("C", "TauM"):
            if getattr(self, name) <= 0:
                raise ValueError(f"lif_params[{name!r}] must be > 0, got {getattr(self, name)!r}")
        if self.TauRefrac < 0:
            raise ValueError(f"lif_params['TauRefrac'] must be >= 0 ms, got {self.TauRefrac!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, float] | None) -> "LIFParams":
        """Build from a (possibly partial) dict; names not given keep the tutorial's values.

        Raises:
            ValueError: for a name that is not one of GeNN's LIF parameters.
        """
        if values is None:
            return cls()
        if isinstance(values, LIFParams):
            return values
        if not isinstance(values, Mapping):
            raise TypeError(f"lif_params must be a dict of GeNN LIF parameters, got {values!r}")
        unknown = sorted(set(values) - set(TUTORIAL_LIF_PARAMS))
        if unknown:
            raise ValueError(
                f"lif_params has unknown name(s) {unknown}; GeNN's LIF model takes "
                f"{sorted(TUTORIAL_LIF_PARAMS)}"
            )
        return cls(**dict(values))

    def as_dict(self) -> dict[str, float]:
        """The parameters as a plain dict, as GeNN's ``add_neuron_population`` takes them."""
        return asdict(self)


@dataclass(frozen=True)
class EncoderParams:
    """Everything that decides the spike trains: timing, input scaling and the LIF model.

    Attributes:
        dt: simulation time step (ms).
        present_time_ms: presentation window per image (ms); simulated for
            ``num_steps = round(present_time_ms / dt)`` steps, as the tutorial does.
        input_scale: current (nA) that a whole 784-pixel image injects once its pixels are
            normalised to sum to 1 (the ``"contrast"`` input rule scales it by ``N / 784``
            for ``N`` neurons; see :mod:`spike_encode.inputs`).
        lif: the projection neurons' LIF parameters.
        arithmetic: how GeNN's float32 LIF update is computed: ``"ieee"`` (default), one
            rounding per operation as GeNN's CPU backend does (the golden files);
            ``"fma"``, with the two multiply-adds fused as nvcc compiles GeNN's CUDA code by
            default (about 1 neuron in 100,000 fires a step apart on MNIST).
    """

    dt: float = 0.1
    present_time_ms: float = 20.0
    input_scale: float = 80.0
    lif: LIFParams = field(default_factory=LIFParams)
    arithmetic: str = "ieee"

    def __post_init__(self) -> None:
        for name in ("dt", "present_time_ms", "input_scale"):
            value = _number(name, getattr(self, name))
            if value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if self.dt < _FLOAT32_TINY:
            raise ValueError(f"dt={self.dt!r} ms is below float32's smallest normal number "
                             f"({_FLOAT32_TINY:.3g}); GeNN's float32 time step cannot hold it")
        if self.present_time_ms < self.dt:
            raise ValueError(
                f"present_time_ms={self.present_time_ms!r} is shorter than one time step "
                f"dt={self.dt!r} ms"
            )
        steps = self.present_time_ms / self.dt
        if steps > MAX_STEPS:
            raise ValueError(
                f"present_time_ms={self.present_time_ms!r} with dt={self.dt!r} ms is a window of "
                f"{steps:.4g} time steps, more than the {MAX_STEPS:,} this package simulates; "
                "use a larger dt or a shorter window")
        if not isinstance(self.lif, LIFParams):
            raise TypeError(f"lif must be LIFParams, got {self.lif!r}")
        if self.arithmetic not in ARITHMETICS:
            raise ValueError(f"arithmetic={self.arithmetic!r} is not one of {ARITHMETICS}")
        self.check_drive(self.input_scale, f"input_scale={self.input_scale!r} nA")

    def check_drive(self, current: float, source: str) -> None:
        """Refuse a largest input ``current`` (nA; a whole image's current on one pixel) that
        drives a neuron beyond float32's range, where its potential would be inf and it would
        never spike; ``source`` names where the current comes from.

        Raises:
            ValueError: naming ``source`` and the drive (mV).
        """
        drive = (current + abs(self.lif.Ioffset)) * self.r_membrane + abs(self.lif.Vrest)
        if not drive <= _FLOAT32_MAX:
            raise ValueError(
                f"{source} drives a neuron towards {drive:.3g} mV (current * Rmembrane), beyond float32's "
                "range: its potential would be inf and it would never spike; use a smaller input_scale")

    @property
    def num_steps(self) -> int:
        """Steps in the presentation window, ``round(present_time_ms / dt)`` as in the tutorial."""
        return int(round(self.present_time_ms / self.dt))

    @cached_property
    def refractory_steps(self) -> int:
        """Steps a neuron stays frozen after a spike, capped at ``num_steps + 1``.

        GeNN counts ``RefracTime -= dt`` down in float32 from ``TauRefrac`` and resumes
        integrating on the step after it reaches ``<= 0``; this replays that countdown.
        """
        dt = np.float32(self.dt)
        remaining = np.float32(self.lif.TauRefrac)
        steps = 0
        while remaining > 0 and steps <= self.num_steps:
            remaining = np.float32(remaining - dt)
            steps += 1
        return steps

    @property
    def at_most_one_spike(self) -> bool:
        """True when no neuron can fire twice within the window (a pure latency code)."""
        m = self.refractory_steps
        fires_on_release = self.lif.Vreset >= self.lif.Vthresh
        return m >= self.num_steps if fires_on_release else m + 1 >= self.num_steps

    @property
    def exp_tc(self) -> float:
        """GeNN's derived ``ExpTC = exp(-dt / TauM)``, rounded to float32 as in its code."""
        return _f32(math.exp(-self.dt / self.lif.TauM))

    @property
    def r_membrane(self) -> float:
        """GeNN's derived ``Rmembrane = TauM / C`` (MOhm), rounded to float32."""
        return _f32(self.lif.TauM / self.lif.C)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict of every parameter (the golden files' ``params`` layout, plus
        ``arithmetic`` where it is not the default ``"ieee"``)."""
        values: dict[str, object] = {
            "dt": self.dt,
            "present_time_ms": self.present_time_ms,
            "input_scale": self.input_scale,
            **self.lif.as_dict(),
        }
        if self.arithmetic != "ieee":
            values["arithmetic"] = self.arithmetic
        return values

    def digest(self) -> str:
        """A stable SHA-256 hex digest of the parameters, for cache keys and file headers."""
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> "EncoderParams":
        """Inverse of :meth:`as_dict` (also reads the golden files' ``params`` JSON)."""
        values = dict(values)
        own = {k: values.pop(k) for k in ("dt", "present_time_ms", "input_scale", "arithmetic") if k in values}
        return cls(**own, lif=LIFParams.from_mapping(values))
