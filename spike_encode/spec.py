"""One frozen, hashable description of an encoding: everything that decides the spikes.

:class:`EncodingSpec` gathers the model and window parameters (:class:`EncoderParams`, with
the arithmetic), the channel policy, the input-current rule, GeNN's precision and the
neuron model. Its :meth:`~EncodingSpec.digest` names the encoding in spike files, file
names and engine caches; two specs with the same digest give the same spike trains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .params import EncoderParams

__all__ = [
    "CHANNEL_POLICIES",
    "INPUT_RULES",
    "PRECISIONS",
    "EncodingSpec",
    "NeuronSpec",
    "check_spec_dict",
    "spec_differences",
    "spec_digest",
]

#: How colour channels become neurons: ``"all"`` (one neuron per channel and pixel) or
#: ``"gray"`` (RGB converted to one luma channel first).
CHANNEL_POLICIES = ("all", "gray")

#: Rules that turn an image's pixels into input currents (nA); see :mod:`spike_encode.inputs`.
#: ``"contrast"`` (default): the pixels' excess over the image's background level (median plus
#: median absolute deviation), normalised, times ``input_scale * N / 784``; the tutorial's rule,
#: bit for bit, on every MNIST image, and MNIST-like spikes from photographs of any size.
#: ``"sum"``: the tutorial's rule, each image normalised to sum to 1, times ``input_scale``.
INPUT_RULES = ("contrast", "sum")

#: GeNN's ``scalar`` types: ``"float"`` (the torch engine's, bit-exact) or ``"double"`` (GeNN only).
PRECISIONS = ("float", "double")

SPEC_VERSION = 1


def _code_of(model: Any) -> dict[str, object]:
    """What identifies a neuron model's generated code (for digests and GeNN cache keys)."""
    if isinstance(model, str):
        return {"builtin": model}
    described: dict[str, object] = {"type": type(model).__qualname__}
    for getter in ("get_sim_code", "get_threshold_condition_code", "get_reset_code",
                   "get_params", "get_vars", "get_derived_params", "get_additional_input_vars"):
        fn = getattr(model, getter, None)
        if fn is not None:
            try:
                described[getter] = repr(fn())
            except Exception:  # noqa: BLE001 - best effort description of a foreign object
                described[getter] = "?"
    return described


@dataclass(frozen=True)
class NeuronSpec:
    """A GeNN neuron model for the projection neurons, reading its input as ``Isyn``.

    Attributes:
        model: a built-in model name (``"LIF"``) or a ``pygenn.create_neuron_model`` object.
        params: its parameter values.
        vars: initial values of its state variables, restored before every batch.
    """

    model: Any
    params: dict[str, float]
    vars: dict[str, float] = field(default_factory=dict)

    @classmethod
    def tutorial_lif(cls, params: EncoderParams) -> "NeuronSpec":
        """The tutorial's LIF projection neurons (``V = Vreset``, ``RefracTime = 0``)."""
        lif = params.lif
        return cls("LIF", lif.as_dict(), {"V": lif.Vreset, "RefracTime": 0.0})

    def describe(self) -> dict[str, object]:
        """A JSON-ready description: the model's code, its parameters and initial values."""
        return {"model": _code_of(self.model), "params": dict(self.params), "vars": dict(self.vars)}

    def __hash__(self) -> int:
        return hash(json.dumps(self.describe(), sort_keys=True, default=str))


@dataclass(frozen=True)
class EncodingSpec:
    """Everything that decides an encoder's spike trains.

    Attributes:
        params: time step and window (ms), input scale (nA), the LIF parameters and the
            float32 arithmetic (:class:`EncoderParams`).
        channels: one of :data:`CHANNEL_POLICIES`.
        input_rule: one of :data:`INPUT_RULES`, how pixels become currents.
        precision: one of :data:`PRECISIONS`, GeNN's ``scalar`` type.
        neuron: a custom GeNN neuron model (GeNN engine only), or ``None`` for the tutorial's
            LIF with ``params.lif``.
    """

    params: EncoderParams = field(default_factory=EncoderParams)
    channels: str = "all"
    input_rule: str = "contrast"
    precision: str = "float"
    neuron: NeuronSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.params, EncoderParams):
            raise TypeError(f"params must be EncoderParams, got {self.params!r}")
        for name, allowed in (("channels", CHANNEL_POLICIES), ("input_rule", INPUT_RULES),
                              ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}")
        if self.neuron is not None and not isinstance(self.neuron, NeuronSpec):
            raise TypeError(f"neuron must be a NeuronSpec or None, got {self.neuron!r}")

    @property
    def num_steps(self) -> int:
        """Steps in the presentation window."""
        return self.params.num_steps

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (what spike files record)."""
        return {
            "version": SPEC_VERSION,
            "params": {**self.params.as_dict(), "arithmetic": self.params.arithmetic},
            "channels": self.channels,
            "input_rule": self.input_rule,
            "precision": self.precision,
            "neuron": None if self.neuron is None else self.neuron.describe(),
        }

    def digest(self) -> str:
        """A stable SHA-256 hex digest of :meth:`as_dict`."""
        return self._digest

    @cached_property
    def _digest(self) -> str:  # computed once per (immutable) spec: engines are looked up by it
        return spec_digest(self.as_dict())

    def __hash__(self) -> int:
        return hash(self.digest())

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "EncodingSpec":
        """Inverse of :meth:`as_dict`. A custom neuron model's code is recorded, not
        rebuilt: such a dict raises ``ValueError`` (compare it with :func:`spec_differences`)."""
        if not isinstance(values, Mapping):
            raise TypeError(f"an encoding spec must be a dict, got {type(values).__name__}")
        if values.get("version") != SPEC_VERSION:
            raise ValueError(f"encoding spec version {values.get('version')!r} is not {SPEC_VERSION}")
        neuron = values.get("neuron")
        if neuron is not None:
            if not (isinstance(neuron, Mapping) and isinstance(neuron.get("model"), Mapping)
                    and set(neuron["model"]) == {"builtin"}):
                raise ValueError("a custom neuron model cannot be rebuilt from its recorded description")
            neuron = NeuronSpec(str(neuron["model"]["builtin"]), dict(neuron.get("params", {})),
                                dict(neuron.get("vars", {})))
        return cls(EncoderParams.from_dict(values["params"]), channels=values["channels"],
                   input_rule=values["input_rule"], precision=values["precision"], neuron=neuron)


_SPEC_KEYS = ("version", "params", "channels", "input_rule", "precision", "neuron")
_NEURON_KEYS = ("model", "params", "vars")


def check_spec_dict(values: Any) -> None:
    """Check that ``values`` is an :meth:`EncodingSpec.as_dict` (as spike files record it),
    a custom neuron model's description included, which :meth:`EncodingSpec.from_dict`
    does not rebuild.

    Raises:
        TypeError, ValueError, KeyError: a missing, extra or invalid entry.
    """
    if not isinstance(values, Mapping) or sorted(map(str, values)) != sorted(_SPEC_KEYS):
        raise ValueError(f"an encoding spec has the entries {list(_SPEC_KEYS)}, got "
                         f"{list(values)[:12] if isinstance(values, Mapping) else type(values).__name__}")
    EncodingSpec.from_dict({**values, "neuron": None})  # version, params, channels, input_rule, precision
    neuron = values["neuron"]
    if neuron is None:
        return
    if not (isinstance(neuron, Mapping) and sorted(map(str, neuron)) == sorted(_NEURON_KEYS)
            and isinstance(neuron["model"], Mapping) and neuron["model"]
            and all(isinstance(k, str) and isinstance(v, str) for k, v in neuron["model"].items())
            and all(isinstance(neuron[part], Mapping) and all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                for k, v in neuron[part].items()) for part in ("params", "vars"))):
        raise ValueError(f"neuron is {str(neuron)[:200]}, not a model's description with its params and vars")


def spec_digest(values: Mapping[str, Any]) -> str:
    """:meth:`EncodingSpec.digest` of a spec's :meth:`~EncodingSpec.as_dict` (also of one
    that cannot be rebuilt, such as a recorded custom neuron model's)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, Mapping):
        flat: dict[str, Any] = {}
        for key in sorted(values, key=str):
            flat.update(_flatten(values[key], f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: values}


def spec_differences(a: EncodingSpec | Mapping[str, Any], b: EncodingSpec | Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """The fields where two specs (or their :meth:`~EncodingSpec.as_dict`) differ, as
    ``(dotted name, value in a, value in b)``, in field order; empty when they are equal."""
    fa = _flatten(a.as_dict() if isinstance(a, EncodingSpec) else a)
    fb = _flatten(b.as_dict() if isinstance(b, EncodingSpec) else b)
    names = list(fa) + [n for n in fb if n not in fa]
    return [(n, fa.get(n, "<absent>"), fb.get(n, "<absent>")) for n in names
            if fa.get(n, "<absent>") != fb.get(n, "<absent>")]
