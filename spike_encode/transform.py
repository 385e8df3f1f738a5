"""``LatencyEncode``: the torchvision-style transform, over the plain function ``latency_encode``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .backends import check_backend_name, make_engine
from .devices import resolve_device
from .formats import OUTPUT_FORMATS, EventList, events_to_output
from .inputs import as_pixel_batch, normalised_currents
from .params import EncoderParams, LIFParams

__all__ = ["LatencyEncode", "latency_encode"]

Spikes = torch.Tensor | EventList


class LatencyEncode:
    """Encode images as latency-coded spike trains of GeNN LIF projection neurons.

    Each image's pixels are normalised to sum to 1, scaled by ``input_scale`` (nA) and
    injected as constant currents into one LIF neuron per pixel, simulated for
    ``present_time_ms``: strong pixels fire early. Spikes are exactly those GeNN's tutorial
    model produces (float32, single-threaded CPU backend).

    Args:
        dt: simulation time step (ms).
        present_time_ms: presentation window (ms); ``round(present_time_ms / dt)`` steps.
        input_scale: current (nA) injected by a whole normalised image.
        lif_params: GeNN ``LIF`` parameters (``C`` nF, ``TauM`` ms, ``Vrest``/``Vreset``/
            ``Vthresh`` mV, ``Ioffset`` nA, ``TauRefrac`` ms); a partial dict overrides only
            the names it gives; defaults are the tutorial's ``PN_PARAMS``.
        backend: ``"auto"``, ``"torch"`` or ``"genn"``.
        device: where to compute and return spikes (``None``: the input's device).
        output: ``"sparse"`` (default), ``"dense"``, ``"times"`` or ``"events"``
            (see :mod:`spike_encode.formats`).
        time_first: with ``output="dense"``, return ``(T, B, N)`` instead of ``(B, T, N)``.
        precision: GeNN's ``scalar`` type, ``"float"`` (bit-exact with the torch engine) or
            ``"double"`` (GeNN only).
        arithmetic: ``"ieee"`` (default): GeNN's CPU backend arithmetic, one rounding per
            float32 operation, as in the golden files; the GeNN backend on CUDA is compiled
            to match. ``"fma"``: the LIF update's multiply-adds fused, as nvcc compiles GeNN's
            CUDA code by default (about 1 neuron in 100,000 fires a step apart); torch
            engine, or GeNN on CUDA.
        cache_dir: where the GeNN backend keeps built models (default
            ``$SPIKE_ENCODE_CACHE`` or ``~/.cache/spike_encode``).
        neuron_model: GeNN only: another neuron model for the projection neurons, a
            built-in name or a ``pygenn.create_neuron_model`` object that reads its input
            as ``Isyn``; with ``neuron_params`` and initial ``neuron_vars`` (restored before
            every batch). ``lif_params`` then does not apply.

    Call it on a PIL image, an ``(H, W)`` / ``(1, H, W)`` image (result ``(T, N)``) or a batch
    ``(B, H, W)`` / ``(B, C, H, W)`` (result ``(B, T, N)``), as a tensor or numpy array.
    """

    def __init__(
        self,
        dt: float = 0.1,
        present_time_ms: float = 20.0,
        input_scale: float = 80.0,
        lif_params: Mapping[str, float] | None = None,
        backend: str = "auto",
        device: torch.device | str | None = None,
        output: str = "sparse",
        time_first: bool = False,
        precision: str = "float",
        arithmetic: str = "ieee",
        cache_dir: str | Path | None = None,
        neuron_model: Any = None,
        neuron_params: Mapping[str, float] | None = None,
        neuron_vars: Mapping[str, float] | None = None,
    ) -> None:
        self.params = EncoderParams(dt, present_time_ms, input_scale, LIFParams.from_mapping(lif_params), arithmetic)
        self.backend = check_backend_name(backend)
        self.device = resolve_device(device)
        if output not in OUTPUT_FORMATS:
            raise ValueError(f"output={output!r} is not one of {OUTPUT_FORMATS}")
        if output == "times" and not self.params.at_most_one_spike:
            raise ValueError(
                f"output='times' needs at most one spike per neuron, but TauRefrac="
                f"{self.params.lif.TauRefrac} ms lets a neuron fire again within the "
                f"{self.params.present_time_ms} ms window; use output='sparse' or 'events'"
            )
        self.output = output
        self.time_first = bool(time_first)
        self.precision = precision
        self.cache_dir = cache_dir
        self.neuron = _neuron_spec(neuron_model, neuron_params, neuron_vars, lif_params)
        self.engine_name, self._engine = self._make_engine()

    def _make_engine(self):
        return make_engine(self.backend, self.params, self.device, precision=self.precision,
                           cache_dir=self.cache_dir, neuron=self.neuron)

    @property
    def num_steps(self) -> int:
        """Steps per presentation window."""
        return self.params.num_steps

    def __call__(self, images: Any) -> Spikes:
        """Encode one image or a batch; see the class docstring for shapes."""
        pixels, batched = as_pixel_batch(images)
        if self.device is not None:
            pixels = pixels.to(self.device)
        currents = normalised_currents(pixels, self.params.input_scale)
        events = self._engine(currents)
        return events_to_output(events, self.output, self.params.dt, self.time_first, batched)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_engine")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.engine_name, self._engine = self._make_engine()

    def __repr__(self) -> str:
        p = self.params
        return (
            f"{type(self).__name__}(dt={p.dt}, present_time_ms={p.present_time_ms}, "
            f"input_scale={p.input_scale}, lif_params={p.lif.as_dict()}, "
            f"backend={self.backend!r} [{self.engine_name}], device={self.device}, "
            f"output={self.output!r}" + (", time_first=True" if self.time_first else "")
            + (f", precision={self.precision!r}" if self.precision != "float" else "")
            + (f", arithmetic={p.arithmetic!r}" if p.arithmetic != "ieee" else "")
            + (f", neuron_model={self.neuron.model!r}" if self.neuron is not None else "") + ")"
        )


def _neuron_spec(model: Any, params: Mapping[str, float] | None, vars: Mapping[str, float] | None,
                 lif_params: Mapping[str, float] | None):
    if model is None:
        if params is not None or vars is not None:
            raise ValueError("neuron_params/neuron_vars need neuron_model (the LIF takes lif_params)")
        return None
    if lif_params is not None:
        raise ValueError("lif_params applies to the tutorial's LIF; with neuron_model give neuron_params")
    from .engines.genn_engine import NeuronSpec

    return NeuronSpec(model, dict(params or {}), dict(vars or {}))


def latency_encode(images: Any, **kwargs: Any) -> Spikes:
    """Functional form: ``LatencyEncode(**kwargs)(images)``."""
    return LatencyEncode(**kwargs)(images)
