"""The GeNN engine: the tutorial's PyGeNN model, built once per setting, run on whole batches.

- CUDA backend: one LIF population of ``N`` neurons with ``model.batch_size = B``
  (B <= 1000: GeNN's CUDA code generator aborts the process from 1024 up). Input currents
  are written and spike words read through PyGeNN's ``__cuda_array_interface__``: no host
  round trip, and the recording bits are decoded on the GPU.
- Single-threaded CPU backend: GeNN allows batch size 1 only, so a batch of B images is one
  population of ``B * N`` independent neurons.
- Arithmetic: GeNN's CPU backend rounds every float32 operation (``arithmetic="ieee"``).
  nvcc fuses the LIF update's two multiply-adds by default (``fma.rn.f32`` in the PTX), which
  moves about 1 neuron in 100,000 by a step; with ``arithmetic="ieee"`` (the default) the CUDA
  model is compiled with ``--fmad=false`` and gives the CPU backend's spikes, and
  ``arithmetic="fma"`` keeps GeNN's default CUDA build.

Built models live in a per-user cache (see :mod:`spike_encode.build_cache`), keyed by
everything that changes the generated code, so a second process loads without compiling.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..build_cache import cached_build, discard
from ..cache_dir import default_cache_dir
from ..currents import InputCurrents, as_input_currents
from ..errors import BackendUnavailableError
from ..params import EncoderParams
from ..spec import NeuronSpec
from ..events import SpikeEvents

__all__ = ["GeNNEngine", "MAX_CUDA_BATCH", "genn_backends", "import_pygenn", "INSTALL_HINT",
           "cache_is_writable", "cache_not_writable"]

#: Largest ``model.batch_size`` used on GeNN's CUDA backend (1024 and up abort the process).
MAX_CUDA_BATCH = 1000
#: Default largest batch per model on the CPU backend (a population of 1000 * N neurons).
DEFAULT_CPU_BATCH = 1000
#: Most models an engine keeps loaded (one per batch capacity); the least recently used goes.
MAX_LOADED_MODELS = 4

INSTALL_HINT = (
    "PyGeNN is not on PyPI; install GeNN 5.4's Python package from GeNN's own release, "
    "e.g. `pip install https://github.com/genn-team/genn/archive/refs/tags/5.4.0.zip` "
    "(set CUDA_PATH first for the CUDA backend; see README, 'Installing PyGeNN')"
)


def import_pygenn():
    """Import PyGeNN or raise :class:`~spike_encode.backends.BackendUnavailableError`."""
    try:
        import pygenn
    except ImportError as err:
        raise BackendUnavailableError(f"backend='genn' needs PyGeNN, which is not installed. {INSTALL_HINT}") from err
    return pygenn


def cache_is_writable(cache_dir: Path) -> bool:
    """True if built models can be kept in ``cache_dir`` (created if missing)."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(cache_dir, os.W_OK | os.X_OK)


def cache_not_writable(cache_dir: Path, err: object = None):
    """The error for a GeNN cache folder that cannot hold built models."""
    from ..cache_dir import CACHE_ENV

    problem = "not writable"
    if os.path.lexists(cache_dir) and not cache_dir.is_dir():
        problem = "not a folder" + (" (a dangling link)" if not cache_dir.exists() else "")
    return BackendUnavailableError(
        f"backend='genn' keeps its built models in {cache_dir}, which is {problem}"
        + (f" ({err})" if err else "") + f"; make it a writable folder, or choose another with "
        f"cache_dir= or ${CACHE_ENV}")


def genn_backends() -> list[str]:
    """Names of the GeNN backends this PyGeNN build can use (empty without PyGeNN)."""
    try:
        from pygenn.genn_model import backend_modules
    except ImportError:
        return []
    return list(backend_modules)


#: nvcc flag that keeps GeNN's CUDA code from fusing multiply-adds (PyGeNN 5.4 exposes no
#: nvcc flags of its own; nvcc reads NVCC_APPEND_FLAGS when GeNN's Makefile runs it)
_NO_FMAD = "--fmad=false"


@contextlib.contextmanager
def _nvcc_flags(flags: str) -> Iterator[None]:
    """Append ``flags`` to every nvcc call made meanwhile (through ``NVCC_APPEND_FLAGS``)."""
    if not flags:
        yield
        return
    before = os.environ.get("NVCC_APPEND_FLAGS")
    os.environ["NVCC_APPEND_FLAGS"] = f"{before} {flags}" if before else flags
    try:
        yield
    finally:
        if before is None:
            del os.environ["NVCC_APPEND_FLAGS"]
        else:
            os.environ["NVCC_APPEND_FLAGS"] = before


_log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet(what: str) -> Iterator[None]:
    """Keep GeNN's code generator, ``make`` and compiler output (written to the process's
    file descriptors 1 and 2) off the user's terminal. It goes to the ``logging`` logger of
    this module at DEBUG level, and into the error message if ``what`` fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        failed = None
        try:
            yield
        except Exception as err:  # noqa: BLE001 - re-raised below with the output
            failed = err
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        sink.seek(0)
        output = sink.read().decode(errors="replace")
    if output:
        _log.debug("%s:\n%s", what, output)
    if failed is not None:
        tail = "\n".join(output.strip().splitlines()[-20:])
        raise RuntimeError(f"{what} failed: {failed}" + (f"\nGeNN's output ended:\n{tail}" if tail else "")) from failed


def decode_recording(words: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(T, batch, W)`` 32-bit spike words (bit i of word w = neuron 32*w + i) to
    ``(step, sample, neuron)`` index tensors, on the words' device."""
    T, batch, W = words.shape
    flat = words.reshape(-1)
    where = flat.nonzero(as_tuple=True)[0]
    values = flat[where].to(torch.int64) & 0xFFFFFFFF
    bits = (values[:, None] >> torch.arange(32, device=words.device)) & 1
    row, bit = bits.nonzero(as_tuple=True)
    position = where[row]
    word = position % W
    sample = (position // W) % batch
    step = position // (W * batch)
    return step, sample, word * 32 + bit


class GeNNEngine:
    """Runs batches of input currents through a cached, batched PyGeNN model.

    Args:
        params: timing and input scaling (and the LIF parameters for the default neuron).
        device: ``cuda`` devices use GeNN's CUDA backend, anything else the CPU backend.
        neuron: the projection neurons' model; default the tutorial's LIF.
        precision: GeNN's ``scalar`` type, ``"float"`` or ``"double"``.
        cache_dir: where built models are kept (default :func:`default_cache_dir`).
        max_batch: most images per model run (default 1000; at most 1000 on CUDA).
    """

    def __init__(self, params: EncoderParams, device: torch.device | None = None, *,
                 neuron: NeuronSpec | None = None, precision: str = "float",
                 cache_dir: str | Path | None = None, max_batch: int | None = None) -> None:
        self.pygenn = import_pygenn()
        self.params = params
        self.device = device if device is not None else torch.device("cpu")
        self.backend = "cuda" if self.device.type == "cuda" else "single_threaded_cpu"
        available = genn_backends()
        if self.backend not in available:
            raise BackendUnavailableError(
                f"backend='genn' on device={str(self.device)!r} needs GeNN's {self.backend!r} backend, "
                f"but this PyGeNN has {available}. {INSTALL_HINT}")
        if precision not in ("float", "double"):
            raise ValueError(f"precision={precision!r} is not 'float' or 'double'")
        if params.arithmetic == "fma" and self.backend != "cuda":
            raise ValueError("arithmetic='fma' (GeNN's default CUDA build) needs backend='genn' on a CUDA "
                             "device; GeNN's CPU backend computes arithmetic='ieee'")
        limit = MAX_CUDA_BATCH if self.backend == "cuda" else None
        if max_batch is None:
            max_batch = MAX_CUDA_BATCH if limit else DEFAULT_CPU_BATCH
        if max_batch < 1 or (limit and max_batch > limit):
            raise ValueError(f"max_batch={max_batch!r} must be in 1..{limit or 'any'} for GeNN's {self.backend} backend")
        self.neuron = neuron or NeuronSpec.tutorial_lif(params)
        self.precision = precision
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        if not cache_is_writable(self.cache_dir):
            raise cache_not_writable(self.cache_dir)
        self.max_batch = max_batch
        self._loaded: dict[tuple[int, int], dict[str, Any]] = {}  # (capacity, N) -> model, oldest use first
        self.last_build: tuple[Path, bool] | None = None  # (entry, compiled now) of the last load

    # ------------------------------------------------------------------ model
    def _define(self, batch: int, num_neurons: int):
        genn = self.pygenn
        model = genn.GeNNModel(self.precision, "spike_encode", backend=self.backend)
        model.dt = self.params.dt
        on_cuda = self.backend == "cuda"
        if on_cuda:
            model.batch_size = batch
        size = num_neurons if on_cuda else batch * num_neurons
        pn = model.add_neuron_population("pn", size, self.neuron.model, self.neuron.params, self.neuron.vars)
        pn.spike_recording_enabled = True
        cs_model = genn.create_current_source_model(
            "cs_model", vars=[("magnitude", "scalar")], injection_code="injectCurrent(magnitude);")
        cs = model.add_current_source("pn_input", cs_model, pn, {}, {"magnitude": 0.0})
        return model, pn, cs

    def description(self, batch: int, num_neurons: int) -> dict[str, object]:
        """Everything that changes the generated code: the build cache key."""
        return {
            "pygenn": importlib.metadata.version("pygenn"),
            "backend": self.backend,
            "precision": self.precision,
            "dt": self.params.dt,
            "num_neurons": num_neurons,
            "batch": batch,
            "neuron": self.neuron.describe(),
            "layout": "batch" if self.backend == "cuda" else "population",
            "arithmetic": self.params.arithmetic,
        }

    def _load(self, batch: int, num_neurons: int) -> dict[str, Any]:
        def build(path: Path) -> None:
            model = self._define(batch, num_neurons)[0]
            with _nvcc_flags(_NO_FMAD if self.backend == "cuda" and self.params.arithmetic == "ieee" else ""), \
                    _quiet(f"building GeNN model in {path}"):
                model.build(path_to_model=str(path))

        description = self.description(batch, num_neurons)
        try:
            entry, built_now = cached_build(self.cache_dir, description, build)
        except OSError as err:
            raise cache_not_writable(self.cache_dir, err) from err
        try:
            model, pn, cs = self._load_entry(entry, batch, num_neurons)
        except RuntimeError as first:
            if built_now:
                raise RuntimeError(f"the GeNN model just built in {entry} does not load: {first}") from first
            _log.warning("GeNN cache entry %s does not load (%s); rebuilding it", entry, first)
            discard(entry)  # missing or damaged library: build it once more
            entry, built_now = cached_build(self.cache_dir, description, build)
            try:
                model, pn, cs = self._load_entry(entry, batch, num_neurons)
            except RuntimeError as second:
                raise RuntimeError(f"GeNN cache entry {entry} was rebuilt and still does not load: {second}; "
                                   f"remove it (or the cache folder {self.cache_dir}) and retry") from second
        self.last_build = (entry, built_now)
        state = {"model": model, "pn": pn, "cs": cs, "batch": batch, "num_neurons": num_neurons,
                 "record": pn._get_array("recordSpk", self.pygenn.types.Uint32)}
        if self.backend == "cuda":
            state["cuda"] = {
                "magnitude": torch.as_tensor(cs.vars["magnitude"], device=self.device),
                "vars": {name: torch.as_tensor(pn.vars[name], device=self.device) for name in self.neuron.vars},
                "record": torch.as_tensor(state["record"], device=self.device),
            }
        return state

    def _load_entry(self, entry: Path, batch: int, num_neurons: int) -> tuple[Any, Any, Any]:
        """Define the model again and load the compiled one from ``entry``; ``RuntimeError``
        (with GeNN's output) if its library is missing or damaged."""
        model, pn, cs = self._define(batch, num_neurons)
        with _quiet(f"loading GeNN model from {entry}"):
            model.build(path_to_model=str(entry), never_rebuild=True)
            model.load(num_recording_timesteps=self.params.num_steps)
        return model, pn, cs

    # ------------------------------------------------------------------- runs
    def _run(self, state: dict[str, Any], currents: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Simulate one chunk of at most ``state['batch']`` images; (step, sample, neuron)."""
        batch, n = state["batch"], state["num_neurons"]
        used = currents.shape[0]
        padded = torch.zeros((batch, n), dtype=currents.dtype, device=currents.device)
        padded[:used] = currents
        model, T = state["model"], self.params.num_steps
        if "cuda" in state:
            dev = state["cuda"]
            dev["magnitude"].view(-1).copy_(padded.reshape(-1).to(dev["magnitude"].dtype))
            for name, value in self.neuron.vars.items():
                dev["vars"][name].fill_(value)
        else:
            cs, pn = state["cs"], state["pn"]
            cs.vars["magnitude"].view[:] = padded.reshape(-1).cpu().numpy()
            cs.vars["magnitude"].push_to_device()
            for name, value in self.neuron.vars.items():
                pn.vars[name].view[:] = value
                pn.vars[name].push_to_device()
        model.timestep = 0
        for _ in range(T):
            model.step_time()
        on_cuda = "cuda" in state
        if on_cuda:
            words = state["cuda"]["record"]
        else:
            model.pull_recording_buffers_from_device()
            words = torch.from_numpy(state["record"].view.view(np.int32))
        step, sample, neuron = decode_recording(words.view(torch.int32).reshape(T, batch if on_cuda else 1, -1))
        if not on_cuda:  # one population of batch * n neurons
            sample, neuron = neuron // n, neuron % n
        keep = (sample < used) & (neuron < n)
        return step[keep], sample[keep], neuron[keep]

    def _model_for(self, images: int, num_neurons: int) -> dict[str, Any]:
        """A loaded model for a chunk of ``images``: one already loaded if it is at most twice
        that size, else one of the next power-of-two capacity (at most ``max_batch``), so
        a small batch never runs padded in a much larger model, and few models get built."""
        fits = [key for key in self._loaded if key[1] == num_neurons and images <= key[0] <= 2 * images]
        if fits:
            key = min(fits)
        else:
            key = (min(self.max_batch, 1 << (images - 1).bit_length()), num_neurons)
            self._loaded[key] = self._load(*key)
            while len(self._loaded) > MAX_LOADED_MODELS:
                self._loaded.pop(next(iter(self._loaded)))["model"].unload()
        self._loaded[key] = self._loaded.pop(key)  # most recently used last
        return self._loaded[key]

    def __call__(self, currents: InputCurrents | torch.Tensor) -> SpikeEvents:
        """Spikes of ``(B, N)`` neurons driven by constant ``currents`` (nA)."""
        currents = as_input_currents(currents).dense()
        total, n = currents.shape
        steps, samples, neurons = [], [], []
        for start in range(0, total, self.max_batch):
            chunk = currents[start : start + self.max_batch]
            step, sample, neuron = self._run(self._model_for(chunk.shape[0], n), chunk.to(self.device))
            steps.append(step)
            samples.append(sample + start)
            neurons.append(neuron)
        out = [torch.cat(x).to(self.device).to(torch.int64) for x in (samples, steps, neurons)]
        return SpikeEvents.from_unsorted(*out, total, self.params.num_steps, n)
