"""``LatencyEncode``: the encoder as an ``nn.Module`` and torchvision v2 transform, a thin
module over :func:`spike_encode.functional.latency_encode`."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms.v2 import Transform

from .devices import resolve_device
from .engines.registry import Engine, check_backend_name
from .errors import BackendUnavailableError
from .functional import Spikes, encode_images, encoding_spec, engine_for
from .inputs import IMAGE_RULES
from .outputs import OutputFormat, output_format
from .outputs.dense import Dense
from .outputs.tonic import sensor_size
from .params import EncoderParams
from .spec import EncodingSpec, NeuronSpec

__all__ = ["LatencyEncode", "find_image"]


def _leaves(sample: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """``(path, leaf)`` of a sample of tuples, lists and dicts, depth first in order."""
    if isinstance(sample, (tuple, list)):
        return [leaf for i, item in enumerate(sample) for leaf in _leaves(item, (*path, i))]
    if isinstance(sample, Mapping):
        return [leaf for key, item in sample.items() for leaf in _leaves(item, (*path, key))]
    return [(path, sample)]


def find_image(sample: Any) -> tuple[Any, ...]:
    """The path (indices and keys) of a sample's image, by torchvision v2's rule: the first
    PIL image or ``tv_tensors.Image``, else the first plain tensor or ndarray. Other
    ``tv_tensors`` (masks, boxes, key points), labels, strings and numbers are not images.

    Raises:
        TypeError: the sample holds no image, naming the types it holds.
    """
    leaves = _leaves(sample)
    for test in IMAGE_RULES:
        for path, leaf in leaves:
            if test(leaf):
                return path
    raise TypeError(
        "images must be a torch.Tensor, a numpy array or a PIL image (alone or in a sample such as "
        f"(image, label)), got {', '.join(sorted({type(leaf).__name__ for _, leaf in leaves})) or 'an empty sample'}")


def _replace(sample: Any, path: tuple, value: Any) -> Any:
    """``sample`` with the leaf at ``path`` replaced: containers rebuilt with their type (a list
    or mutable mapping, e.g. a ``defaultdict``, shallow-copied), leaves shared."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    new = _replace(sample[head], rest, value)
    if isinstance(sample, (list, MutableMapping)):
        rebuilt = copy.copy(sample)
        rebuilt[head] = new
        return rebuilt
    if isinstance(sample, Mapping):
        return type(sample)({**sample, head: new})
    items = list(sample)
    items[head] = new
    return type(sample)(*items) if hasattr(sample, "_fields") else type(sample)(items)


def _moves(fn: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Whether an ``nn.Module._apply`` function moves tensors to a device (``.cpu()``,
    ``.to("cpu")``), not only casts them: a cast keeps a ``meta`` tensor, a move needs its data."""
    try:
        return fn(torch.zeros(0, device="meta")).device.type != "meta"
    except NotImplementedError:  # "Cannot copy out of meta tensor"
        return True
    except RuntimeError:  # needs a real tensor, moves nothing (share_memory_)
        return False


class LatencyEncode(Transform):
    """Encode images as latency-coded spike trains of GeNN LIF projection neurons.

    Each image's pixels become constant input currents (the input rule; the tutorial's:
    normalised to sum to 1, times ``input_scale`` nA; the default ``"contrast"`` rule first
    takes away the image's background level) into one LIF neuron per pixel and
    channel, simulated for ``present_time_ms``: strong pixels fire early. Spikes are exactly
    those GeNN's tutorial model produces (float32, single-threaded CPU backend).

    An ``nn.Module`` and a torchvision v2 transform: it goes in ``nn.Sequential`` and
    ``v2.Compose``; ``.to(device)``, ``.cpu()``, ``.cuda()`` (its own or a containing module's)
    set where it computes, or raise :class:`~spike_encode.BackendUnavailableError` for a device
    it cannot use; ``.double()``, ``.half()`` or ``.to(dtype)`` set the dense output's dtype.
    Called on a sample (tuple, dict, nested) it encodes only the image, found as torchvision v2
    finds it (:func:`find_image`), and passes the rest (labels, masks, boxes, strings) through.
    The encoding is not differentiable: an image that requires grad is encoded detached.

    Args:
        dt: simulation time step (ms).
        present_time_ms: presentation window (ms); ``round(present_time_ms / dt)`` steps.
        input_scale: current (nA) of a whole normalised 784-pixel image (the ``"contrast"``
            rule gives an image of ``N`` neurons ``N / 784`` times it; ``"sum"``: every image
            exactly it).
        lif_params: GeNN ``LIF`` parameters (``C`` nF, ``TauM`` ms, ``Vrest``/``Vreset``/
            ``Vthresh`` mV, ``Ioffset`` nA, ``TauRefrac`` ms); a partial dict overrides only
            the names it gives; defaults are the tutorial's ``PN_PARAMS``.
        backend: ``"auto"`` or a registered engine, ``"torch"`` or ``"genn"``
            (:mod:`spike_encode.engines.registry`).
        device: where to compute and return spikes (``None``: the input's device).
        output: ``"sparse"`` (default), ``"dense"``, ``"times"``, ``"events"``, ``"tonic"``, or
            an output-format object (:mod:`spike_encode.outputs`).
        time_first: dense only: ``(T, B, ...)`` instead of ``(B, T, ...)``.
        dtype: dense only: element type (values 0/1), float32 by default, as ``nn.Linear``,
            snnTorch and Norse take; ``torch.bool`` uses a quarter of the memory.
        flatten: sparse, dense and times: ``True`` (default) neurons along one axis ``N``;
            ``False`` keeps the image's shape, ``(B, T, C, H, W)`` (time-first dense
            ``(T, B, C, H, W)``), times ``(B, C, H, W)``, for convolutional SNNs.
        precision: GeNN's ``scalar`` type, ``"float"`` (bit-exact with the torch engine) or
            ``"double"`` (GeNN only).
        arithmetic: ``"ieee"`` (default): GeNN's CPU backend arithmetic, one rounding per
            float32 operation, as in the golden files; ``"fma"``: the LIF update's
            multiply-adds fused, as nvcc compiles GeNN's CUDA code by default.
        cache_dir: where the GeNN backend keeps built models (default ``$SPIKE_ENCODE_CACHE``
            or the user cache folder).
        neuron_model: GeNN only: another neuron model for the projection neurons, a built-in
            name or a ``pygenn.create_neuron_model`` object reading its input as ``Isyn``; with
            ``neuron_params`` and initial ``neuron_vars`` (restored before every batch).
        channels: ``"all"`` (default): one neuron per channel and pixel, ``N = C * H * W``
            (neuron ``(c * H + h) * W + w``); ``"gray"``: RGB images converted to one luma
            channel first, exactly as PIL's ``convert("L")``.
        input_rule: how pixels become currents (:data:`spike_encode.spec.INPUT_RULES`):
            ``"contrast"`` (the default; MNIST's currents bit for bit, photographs spike as
            MNIST does) or ``"sum"`` (the tutorial's, for any image); ``None``: the default.

    An option that does not apply to the chosen output (``time_first`` with sparse output,
    say) is refused. Everything that decides the spikes is :attr:`spec`.

    Input follows torchvision's rank rule: ``(H, W)`` or ``(C, H, W)`` is one image (result
    without batch dimension, e.g. ``(T, N)``), ``(B, C, H, W)`` a batch (``(B, T, N)``);
    ndarrays are channels-last, as ``v2.ToImage`` reads them (``(H, W, C)``, ``(B, H, W, C)``).
    """

    def __init__(
        self,
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
    ) -> None:
        super().__init__()
        spec = encoding_spec(dt, present_time_ms, input_scale, lif_params=lif_params, arithmetic=arithmetic,
                             channels=channels, input_rule=input_rule, precision=precision,
                             neuron_model=neuron_model, neuron_params=neuron_params, neuron_vars=neuron_vars)
        self._setup(spec, output_format(output, time_first=time_first, dtype=dtype, flatten=flatten),
                    backend, device, cache_dir)

    @classmethod
    def from_spec(cls, spec: EncodingSpec, *, output: str | OutputFormat = "sparse", backend: str = "auto",
                  device: torch.device | str | None = None, cache_dir: str | Path | None = None,
                  **options: Any) -> "LatencyEncode":
        """An encoder for a recorded :class:`~spike_encode.EncodingSpec` (e.g. a spike file's);
        ``options`` are the output's (``time_first``, ``dtype``, ``flatten``)."""
        if not isinstance(spec, EncodingSpec):
            raise TypeError(f"spec must be an EncodingSpec, got {type(spec).__name__}")
        encoder = cls.__new__(cls)
        Transform.__init__(encoder)
        encoder._setup(spec, output_format(output, **options), backend, device, cache_dir)
        return encoder

    def _setup(self, spec: EncodingSpec, fmt: OutputFormat, backend: str, device: Any,
               cache_dir: str | Path | None) -> None:
        fmt.check_spec(spec)
        self.spec = spec
        self.output_format = fmt
        self.backend = check_backend_name(backend)
        self.device = resolve_device(device)
        self.cache_dir = cache_dir
        self.engine_name = self._engine()[0]  # made (or found) now: a missing backend fails here

    def _engine(self) -> tuple[str, Engine]:
        return engine_for(self.backend, self.spec, self.device, self.cache_dir)

    @property
    def engine(self) -> Engine:
        """The engine computing this encoder's spikes (shared by encoders with the same
        backend, spec, device and cache folder)."""
        return self._engine()[1]

    # the spec's and the output's fields, as 0.2.0 had them
    @property
    def params(self) -> EncoderParams:
        """Time step, window, input scale, LIF parameters and arithmetic (part of :attr:`spec`)."""
        return self.spec.params

    @property
    def channels(self) -> str:
        """The channel policy (part of :attr:`spec`)."""
        return self.spec.channels

    @property
    def precision(self) -> str:
        """GeNN's ``scalar`` type (part of :attr:`spec`)."""
        return self.spec.precision

    @property
    def neuron(self) -> NeuronSpec | None:
        """A custom GeNN neuron model, or ``None`` (part of :attr:`spec`)."""
        return self.spec.neuron

    @property
    def output(self) -> str:
        """The output format's name."""
        return self.output_format.name

    @property
    def time_first(self) -> bool:
        """Dense output is ``(T, B, ...)``."""
        return bool(getattr(self.output_format, "time_first", False))

    @property
    def dtype(self) -> torch.dtype:
        """Dense output's element type."""
        return getattr(self.output_format, "dtype", torch.float32)

    @property
    def flatten(self) -> bool:
        """Neurons along one axis (``False``: the image's shape)."""
        return bool(getattr(self.output_format, "flatten", True))

    @property
    def num_steps(self) -> int:
        """Steps per presentation window."""
        return self.spec.num_steps

    def sensor_size(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        """Tonic's ``sensor_size`` ``(W, H, C)`` of this encoder's ``output="tonic"`` events
        for images of ``image_shape`` ``(H, W)`` or ``(C, H, W)`` (``C = 1`` with ``channels="gray"``)."""
        width, height, channels = sensor_size(image_shape)
        return (width, height, 1 if self.channels == "gray" else channels)

    def encode(self, images: Any, *, out: torch.Tensor | None = None) -> Spikes:
        """Encode one image or a batch (no sample handling); see the class docstring for
        shapes. ``out``: dense output only, a buffer to write the raster into."""
        return encode_images(images, self.spec, self.output_format, backend=self.backend, device=self.device,
                             cache_dir=self.cache_dir, out=out)

    def forward(self, *inputs: Any) -> Any:
        """Encode the image of a sample (or an image, or a batch); the rest passes through."""
        sample = inputs if len(inputs) > 1 else inputs[0]
        path = find_image(sample)
        leaf = sample
        for key in path:
            leaf = leaf[key]
        return _replace(sample, path, self.encode(leaf))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "LatencyEncode":
        # every move (.to(), .cpu(), .cuda(), .double(), a containing module's) comes here, as
        # for any nn.Module: a probe tensor shows the device and floating-point dtype asked for;
        # all is checked before anything changes
        fmt = self.output_format
        dense_float = isinstance(fmt, Dense) and fmt.dtype.is_floating_point
        probe = torch.zeros(0, device=self.device, dtype=fmt.dtype if dense_float else torch.float32)
        try:
            moved = fn(probe)
        except (AssertionError, RuntimeError) as err:
            raise BackendUnavailableError(f"{type(self).__name__} cannot move to the device asked for: {err}") from err
        device, engine_name = self.device, self.engine_name
        if moved.device != probe.device or (device is None and _moves(fn)):
            device = resolve_device(str(moved.device))
            engine_name = engine_for(self.backend, self.spec, device, self.cache_dir)[0]
        if dense_float and moved.dtype != probe.dtype:
            fmt = dataclasses.replace(fmt, dtype=moved.dtype)
        super()._apply(fn, recurse)
        self.device, self.engine_name, self.output_format = device, engine_name, fmt
        return self

    def extra_repr(self) -> str:
        p = self.spec.params
        defaults = EncodingSpec()
        return (
            f"dt={p.dt}, present_time_ms={p.present_time_ms}, "
            f"input_scale={p.input_scale}, lif_params={p.lif.as_dict()}, "
            f"backend={self.backend!r} [{self.engine_name}], device={self.device}, "
            f"output={self.output_format!r}"
            + (f", channels={self.channels!r}" if self.channels != defaults.channels else "")
            + (f", input_rule={self.spec.input_rule!r}" if self.spec.input_rule != defaults.input_rule else "")
            + (f", precision={self.precision!r}" if self.precision != "float" else "")
            + (f", arithmetic={p.arithmetic!r}" if p.arithmetic != "ieee" else "")
            + (f", neuron_model={self.neuron.model!r}" if self.neuron is not None else "")
        )
