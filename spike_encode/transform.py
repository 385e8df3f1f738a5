"""``LatencyEncode``: the encoder as an ``nn.Module`` and torchvision v2 transform, over the
plain function ``latency_encode``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from torchvision.transforms.v2 import Transform
from torchvision.transforms.v2._utils import check_type

from .backends import check_backend_name, make_engine
from .devices import resolve_device
from .formats import OUTPUT_FORMATS, EventList, events_to_output
from .inputs import as_image_batch, input_currents
from .params import EncoderParams, LIFParams
from .spec import EncodingSpec, NeuronSpec
from .tonic_format import sensor_size, time_step_us

__all__ = ["LatencyEncode", "latency_encode"]

Spikes = torch.Tensor | EventList | list[np.ndarray] | np.ndarray


class LatencyEncode(Transform):
    """Encode images as latency-coded spike trains of GeNN LIF projection neurons.

    Each image's pixels are normalised to sum to 1, scaled by ``input_scale`` (nA) and
    injected as constant currents into one LIF neuron per pixel and channel, simulated for
    ``present_time_ms``: strong pixels fire early. Spikes are exactly those GeNN's tutorial
    model produces (float32, single-threaded CPU backend).

    An ``nn.Module`` and a torchvision v2 transform: it goes in ``nn.Sequential`` and
    ``v2.Compose``, ``.to(device)`` moves where it computes, and called on a sample such as
    ``(image, label)`` it encodes the image and passes the rest through (torchvision v2's
    rule: a PIL image, ``tv_tensors.Image`` or the first plain tensor is the image).

    Args:
        dt: simulation time step (ms).
        present_time_ms: presentation window (ms); ``round(present_time_ms / dt)`` steps.
        input_scale: current (nA) injected by a whole normalised image.
        lif_params: GeNN ``LIF`` parameters (``C`` nF, ``TauM`` ms, ``Vrest``/``Vreset``/
            ``Vthresh`` mV, ``Ioffset`` nA, ``TauRefrac`` ms); a partial dict overrides only
            the names it gives; defaults are the tutorial's ``PN_PARAMS``.
        backend: ``"auto"``, ``"torch"`` or ``"genn"``.
        device: where to compute and return spikes (``None``: the input's device).
        output: ``"sparse"`` (default), ``"dense"``, ``"times"``, ``"events"`` or ``"tonic"``
            (see :mod:`spike_encode.formats`).
        time_first: with ``output="dense"``, return ``(T, B, ...)`` instead of ``(B, T, ...)``.
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
        channels: ``"all"`` (default): one neuron per channel and pixel, ``N = C * H * W``
            (neuron ``(c * H + h) * W + w``), the whole image normalised to sum to 1;
            ``"gray"``: RGB images converted to one channel by torchvision's
            ``rgb_to_grayscale`` first (1-channel images are unchanged).
        dtype: element type of ``output="dense"`` (values 0/1): float32 by default, as
            ``nn.Linear``, snnTorch and Norse take; ``torch.bool`` uses a quarter of the memory.
        flatten: ``True`` (default): neurons along one axis ``N``; ``False``: the image's
            shape is kept, sparse and dense ``(B, T, C, H, W)`` (time-first dense
            ``(T, B, C, H, W)``), times ``(B, C, H, W)``, for convolutional SNNs.

    Input follows torchvision's rank rule: ``(H, W)`` or ``(C, H, W)`` is one image (result
    without batch dimension, e.g. ``(T, N)``), ``(B, C, H, W)`` a batch (``(B, T, N)``); a
    ``(B, H, W)`` stack is one ``(C, H, W)`` image, so give batches as ``(B, 1, H, W)``.
    Tensors and arrays of uint8, uint16, other integers or floats, and PIL images in any
    mode (see :func:`spike_encode.inputs.to_tensor`), are accepted.
    """

    _transformed_types = (torch.Tensor, PIL.Image.Image, np.ndarray)

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
        *,
        channels: str = "all",
        dtype: torch.dtype = torch.float32,
        flatten: bool = True,
    ) -> None:
        super().__init__()
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
        if output == "tonic":
            time_step_us(self.params.dt)
        if not flatten and output in ("events", "tonic"):
            raise ValueError(f"flatten=False keeps the image shape of sparse, dense and times output; "
                             f"output={output!r} has its own layout")
        if not isinstance(dtype, torch.dtype) or dtype.is_complex:
            raise ValueError(f"dtype must be a real torch.dtype such as torch.float32 or torch.bool, got {dtype!r}")
        self.output = output
        self.time_first = bool(time_first)
        self.channels = channels
        self.dtype = dtype
        self.flatten = bool(flatten)
        self.precision = precision
        self.cache_dir = cache_dir
        self.neuron = _neuron_spec(neuron_model, neuron_params, neuron_vars, lif_params)
        self.spec = EncodingSpec(self.params, channels=channels, precision=precision, neuron=self.neuron)
        self.engine_name, self._engine = self._make_engine()

    def _make_engine(self):
        return make_engine(self.backend, self.params, self.device, precision=self.precision,
                           cache_dir=self.cache_dir, neuron=self.neuron)

    @property
    def num_steps(self) -> int:
        """Steps per presentation window."""
        return self.params.num_steps

    def sensor_size(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        """Tonic's ``sensor_size`` ``(W, H, C)`` of this encoder's ``output="tonic"`` events
        for images of ``image_shape`` ``(H, W)`` or ``(C, H, W)`` (``C = 1`` with ``channels="gray"``)."""
        width, height, channels = sensor_size(image_shape)
        return (width, height, 1 if self.channels == "gray" else channels)

    def encode(self, images: Any) -> Spikes:
        """Encode one image or a batch (no sample handling); see the class docstring for shapes."""
        batch, batched = as_image_batch(images)
        if self.device is not None:
            batch = batch.to(self.device)
        currents = input_currents(batch, self.spec)
        events = self._engine(currents)
        keep_shape = self.output == "tonic" or not self.flatten
        image_shape = (1 if self.channels == "gray" else batch.shape[1], *batch.shape[2:])
        return events_to_output(events, self.output, self.params.dt, self.time_first, batched,
                                dtype=self.dtype, image_shape=image_shape if keep_shape else None)

    def check_inputs(self, flat_inputs: list[Any]) -> None:
        """Refuse a sample without an image (torchvision would pass it through unchanged)."""
        if not any(check_type(inpt, self._transformed_types) for inpt in flat_inputs):
            raise TypeError(
                "images must be a torch.Tensor, a numpy array or a PIL image (alone or in a "
                f"sample such as (image, label)), got {', '.join(sorted({type(i).__name__ for i in flat_inputs}))}"
            )

    def transform(self, inpt: Any, params: dict[str, Any]) -> Spikes:
        """torchvision v2's hook: encode the sample's image."""
        return self.encode(inpt)

    def _set_device(self, device: torch.device) -> None:
        if device != self.device:
            self.device = device
            self.engine_name, self._engine = self._make_engine()

    def to(self, *args: Any, **kwargs: Any) -> "LatencyEncode":
        """Compute (and return spikes) on another device, as ``nn.Module.to``; a dtype is ignored.

        Raises:
            RuntimeError: when a CUDA device is asked for and PyTorch sees no such GPU.
        """
        device = torch._C._nn._parse_to(*args, **kwargs)[0]  # nn.Module.to's own parsing
        if device is not None:
            self._set_device(resolve_device(device))
        return super().to(*args, **kwargs)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "LatencyEncode":
        # .cuda(), .cpu() and moves of a container (nn.Sequential(...).to(device)) come here:
        # the device a probe tensor lands on is where the encoder computes.
        probe = torch.zeros(0, device=self.device)
        try:
            moved = fn(probe)
        except (AssertionError, RuntimeError) as err:
            raise RuntimeError(f"{type(self).__name__} cannot move to the device asked for: {err}") from err
        if moved.device != probe.device:
            self._set_device(resolve_device(moved.device))
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_engine")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.engine_name, self._engine = self._make_engine()

    def extra_repr(self) -> str:
        p = self.params
        return (
            f"dt={p.dt}, present_time_ms={p.present_time_ms}, "
            f"input_scale={p.input_scale}, lif_params={p.lif.as_dict()}, "
            f"backend={self.backend!r} [{self.engine_name}], device={self.device}, "
            f"output={self.output!r}" + (", time_first=True" if self.time_first else "")
            + (f", channels={self.channels!r}" if self.channels != "all" else "")
            + (f", dtype={self.dtype}" if self.output == "dense" else "")
            + (", flatten=False" if not self.flatten else "")
            + (f", precision={self.precision!r}" if self.precision != "float" else "")
            + (f", arithmetic={p.arithmetic!r}" if p.arithmetic != "ieee" else "")
            + (f", neuron_model={self.neuron.model!r}" if self.neuron is not None else "")
        )


def _neuron_spec(model: Any, params: Mapping[str, float] | None, vars: Mapping[str, float] | None,
                 lif_params: Mapping[str, float] | None):
    if model is None:
        if params is not None or vars is not None:
            raise ValueError("neuron_params/neuron_vars need neuron_model (the LIF takes lif_params)")
        return None
    if lif_params is not None:
        raise ValueError("lif_params applies to the tutorial's LIF; with neuron_model give neuron_params")
    return NeuronSpec(model, dict(params or {}), dict(vars or {}))


def latency_encode(images: Any, **kwargs: Any) -> Spikes:
    """Functional form: ``LatencyEncode(**kwargs)(images)``."""
    return LatencyEncode(**kwargs)(images)
