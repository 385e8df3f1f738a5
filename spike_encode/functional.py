"""``latency_encode``: the function that encodes images, as torchvision's ``functional`` is to
its transforms. :class:`~spike_encode.LatencyEncode` is a thin module over it.

Images become currents (:mod:`spike_encode.inputs`), an engine (:mod:`spike_encode.engines`)
turns the currents into spike events, an output format (:mod:`spike_encode.outputs`) renders
them. Engines are made once per (backend, encoding, device, cache folder) and process and
kept (a GeNN model loads once, a crossing table is made once).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .devices import resolve_device
from .engines.registry import Engine, check_backend_name, make_engine
from .currents import InputCurrents
from .inputs import as_image_batch
from .outputs import OutputFormat, output_format
from .outputs.dense import Dense
from .outputs.events import EventList
from .params import EncoderParams, LIFParams
from .spec import EncodingSpec, NeuronSpec

__all__ = ["Spikes", "clear_engine_cache", "encode_images", "encoding_spec", "engine_for", "latency_encode"]

#: What an encoding returns: a tensor (sparse, dense, times) or per-image lists (events, tonic).
Spikes = torch.Tensor | EventList | list[np.ndarray] | np.ndarray


def encoding_spec(dt: float = 0.1, present_time_ms: float = 20.0, input_scale: float = 80.0, *,
                  lif_params: Mapping[str, float] | None = None, arithmetic: str = "ieee",
                  channels: str = "all", input_rule: str | None = None, precision: str = "float",
                  neuron_model: Any = None, neuron_params: Mapping[str, float] | None = None,
                  neuron_vars: Mapping[str, float] | None = None) -> EncodingSpec:
    """The :class:`~spike_encode.EncodingSpec` of :func:`latency_encode`'s keyword arguments
    (``input_rule=None``: the spec's default rule)."""
    params = EncoderParams(dt, present_time_ms, input_scale, LIFParams.from_mapping(lif_params), arithmetic)
    neuron = _neuron_spec(neuron_model, neuron_params, neuron_vars, lif_params)
    rule = {} if input_rule is None else {"input_rule": input_rule}
    return EncodingSpec(params, channels=channels, precision=precision, neuron=neuron, **rule)


def _neuron_spec(model: Any, params: Mapping[str, float] | None, vars: Mapping[str, float] | None,
                 lif_params: Mapping[str, float] | None) -> NeuronSpec | None:
    if model is None:
        if params is not None or vars is not None:
            raise ValueError("neuron_params/neuron_vars need neuron_model (the LIF takes lif_params)")
        return None
    if lif_params is not None:
        raise ValueError("lif_params applies to the tutorial's LIF; with neuron_model give neuron_params")
    return NeuronSpec(model, dict(params or {}), dict(vars or {}))


@functools.lru_cache(maxsize=16)
def _cached_engine(backend: str, spec: EncodingSpec, device: torch.device | None,
                   cache_dir: str | None) -> tuple[str, Engine]:
    return make_engine(backend, spec, device, cache_dir)


def engine_for(backend: str, spec: EncodingSpec, device: torch.device | None = None,
               cache_dir: str | Path | None = None) -> tuple[str, Engine]:
    """The engine's name and the (cached) engine computing ``spec`` on ``device``.

    Raises:
        ValueError: an unknown backend, or one that cannot compute ``spec`` on ``device``.
        BackendUnavailableError: the backend asked for is not available here.
    """
    check_backend_name(backend)
    return _cached_engine(backend, spec, device, None if cache_dir is None else str(cache_dir))


def clear_engine_cache() -> None:
    """Forget every cached engine (GeNN models are unloaded once no encoder holds them)."""
    _cached_engine.cache_clear()


def encode_images(images: Any, spec: EncodingSpec, output: OutputFormat, *, backend: str = "auto",
                  device: torch.device | None = None, cache_dir: str | Path | None = None,
                  out: torch.Tensor | None = None) -> Spikes:
    """Encode one image or a batch under ``spec`` and render the spikes as ``output``.

    ``device``: where to compute (``None``: where the images are). See :func:`latency_encode`.
    """
    if out is not None and not isinstance(output, Dense):
        raise ValueError(f"out= is a buffer for output='dense', not output={output.name!r}")
    batch, batched = as_image_batch(images)
    if device is not None:
        batch = batch.to(device)
    currents = InputCurrents(batch, spec)
    _, engine = engine_for(backend, spec, device, cache_dir)
    events = engine(currents)
    height, width = batch.shape[-2:]
    image_shape = (currents.shape[1] // (height * width), height, width)
    if out is not None:
        return output.render(events, dt=spec.params.dt, image_shape=image_shape, batched=batched, out=out)
    return output.render(events, dt=spec.params.dt, image_shape=image_shape, batched=batched)


def latency_encode(
    images: Any,
    dt: float = 0.1,
    present_time_ms: float = 20.0,
    input_scale: float = 80.0,
    *,
    lif_params: Mapping[str, float] | None = None,
    backend: str = "auto",
    device: torch.device | str | None = None,
    output: str | OutputFormat = "sparse",
    time_first: bool | None = None,
    dtype: torch.dtype | None = None,
    flatten: bool | None = None,
    precision: str = "float",
    arithmetic: str = "ieee",
    cache_dir: str | Path | None = None,
    neuron_model: Any = None,
    neuron_params: Mapping[str, float] | None = None,
    neuron_vars: Mapping[str, float] | None = None,
    channels: str = "all",
    input_rule: str | None = None,
    out: torch.Tensor | None = None,
) -> Spikes:
    """Encode images as latency-coded spike trains of GeNN LIF projection neurons.

    The arguments are :class:`~spike_encode.LatencyEncode`'s (see there), plus ``out``: with
    ``output="dense"``, a tensor to write the batch's raster into (no allocation; zeroed first).
    Engines are cached, so calling this in a loop builds nothing twice.
    """
    spec = encoding_spec(dt, present_time_ms, input_scale, lif_params=lif_params, arithmetic=arithmetic,
                         channels=channels, input_rule=input_rule, precision=precision,
                         neuron_model=neuron_model, neuron_params=neuron_params, neuron_vars=neuron_vars)
    fmt = output_format(output, time_first=time_first, dtype=dtype, flatten=flatten)
    fmt.check_spec(spec)
    return encode_images(images, spec, fmt, backend=check_backend_name(backend), device=resolve_device(device),
                         cache_dir=cache_dir, out=out)
