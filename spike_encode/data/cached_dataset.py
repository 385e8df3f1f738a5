"""Encode a dataset once to one file; read it back as a dataset of spikes.

The file is a safetensors container checked whole on open (:mod:`.spike_file`), published
whole or not at all (:mod:`.files`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from tqdm.auto import tqdm

from ..errors import SpecMismatchError
from ..events import SpikeEvents
from ..formats import sparse_to_events
from ..outputs import OutputFormat, output_format
from ..params import EncoderParams
from ..spec import EncodingSpec, NeuronSpec, spec_differences
from .collation import collate_images_and_targets
from .files import NewFile
from .loader import SpikeLoader
from .spike_file import SpikeFile, SpikeFileError, spike_file_bytes

__all__ = ["SpikeDataset", "SpikeFileError", "encode_dataset"]


def _unsigned_dtype(size: int) -> np.dtype:
    """The smallest unsigned dtype holding ``0 .. size - 1``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _encoder_spec(encoder: Any) -> EncodingSpec:
    spec = getattr(encoder, "spec", None)
    if not isinstance(spec, EncodingSpec):
        raise TypeError(
            f"encoder must carry its EncodingSpec as .spec (e.g. LatencyEncode), got {type(encoder).__name__}"
        )
    return spec


def _recorded(spec: EncodingSpec) -> dict[str, Any]:
    """``spec.as_dict()`` as a spike file records it (through JSON)."""
    return json.loads(json.dumps(spec.as_dict(), default=str))


def _sparse_encoder(encoder: Any) -> Any:
    """``encoder`` itself if it returns sparse batches, else a shallow copy that does."""
    if getattr(encoder, "output_format", None) in (None, output_format()):
        return encoder
    import copy

    sparse = copy.copy(encoder)  # shares the engine; only the output format differs
    sparse.output_format = output_format()
    return sparse


class _ShapeRecorder:
    """Calls ``encoder`` and remembers the shape of the images it was given, refusing a
    batch of another shape (the file records one shape for every sample)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.device = getattr(encoder, "device", None)
        self.image_shape: tuple[int, ...] | None = None

    def __call__(self, images: torch.Tensor) -> Any:
        shape = tuple(images.shape[1:])
        if self.image_shape is not None and shape != self.image_shape:
            raise ValueError(f"images change shape within the dataset: {self.image_shape} before, then {shape}; "
                             "resize them to one shape (e.g. torchvision's Resize) to store them in one file")
        self.image_shape = shape
        return self.encoder(images)


def _neuron_shape(encoder: Any, image_shape: tuple[int, ...] | None, num_neurons: int) -> list[int] | None:
    """``(C, H, W)`` of the encoder's neurons for images of ``image_shape`` (``None`` if unknown)."""
    if image_shape is None or not hasattr(encoder, "sensor_size"):
        return None
    width, height, channels = encoder.sensor_size(image_shape)
    return [channels, height, width] if channels * height * width == num_neurons else None


def _length(dataset: Dataset) -> int | None:
    """``len(dataset)``, or ``None`` for an iterable dataset without one."""
    try:
        return len(dataset)
    except TypeError:
        return None


def _targets_array(targets: Any, count: int) -> np.ndarray:
    array = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    if array.shape != (count,) or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            "encode_dataset stores integer class targets, one per image; a batch of "
            f"{count} images had targets of dtype {array.dtype} and shape {array.shape}"
        )
    return array.astype(np.int64)


def encode_dataset(
    dataset: Dataset,
    encoder: Any,
    path: str | os.PathLike[str],
    *,
    batch_size: int = 1000,
    num_workers: int = 0,
    progress: bool = True,
    image_key: Any = None,
    target_key: Any = "label",
    overwrite: bool = True,
) -> Path:
    """Encode every ``(image, target)`` of ``dataset`` with ``encoder`` into one file.

    The file (a safetensors container, :mod:`~spike_encode.data.spike_file`) holds each
    image's spikes in compact dtypes, the integer targets, the encoder's whole
    :class:`~spike_encode.EncodingSpec` and its digest, and checksums of every byte. It is
    written to a new temporary file beside ``path`` (made before encoding starts, so an
    unwritable destination fails at once; removed, with any folders made for it, on any
    failure) and published whole (:mod:`~spike_encode.data.files`): renamed onto ``path``
    (``overwrite=True``: of concurrent writers the last one wins) or linked there only if
    nothing is there by then (``overwrite=False``). Images go through a
    :class:`~spike_encode.data.SpikeLoader` (in order; ``num_workers`` load them), so
    :class:`SpikeDataset` ``(path)[i]`` is exactly ``encoder(dataset[i][0])``.

    Args:
        dataset: map-style dataset of ``(image, target)`` (or longer tuples: the target is the
            first element other than the image) or of dicts such as ``{"image": ..., "label":
            ...}``; targets integers. The image is found as :func:`~spike_encode.data.collate_images`
            finds it.
        encoder: a ``LatencyEncode`` (any output format; spikes are stored as events).
        path: file to write (parent folders are created).
        batch_size: images encoded at once.
        num_workers: DataLoader workers loading images.
        progress: show a tqdm progress bar (images).
        image_key: the items' image key (dicts) or position (tuples), if the rule does not find it.
        target_key: the dict items' target key.
        overwrite: replace a file at ``path`` (default); ``False`` refuses one that exists
            before encoding or appears while encoding, keeping it.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        FileExistsError: ``overwrite=False`` and ``path`` exists (before or after encoding).
        OSError: ``path`` is a folder or another non-regular file (a device, a FIFO), its
            folder is not writable (before any encoding), or the disk fills (naming ``path``).
    """
    spec = _encoder_spec(encoder)
    path = Path(path)
    with NewFile(path, overwrite=overwrite, what="the spike file") as out:  # before any work
        collate = functools.partial(collate_images_and_targets, image_key=image_key, target_key=target_key)
        header, arrays = _encode(dataset, encoder, spec, path, batch_size, num_workers, progress, collate)
        out.write(spike_file_bytes(arrays, header))
    return path


def _encode(dataset: Dataset, encoder: Any, spec: EncodingSpec, path: Path, batch_size: int,
            num_workers: int, progress: bool, collate: Callable[[list[Any]], tuple[torch.Tensor, Any]],
            ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every image's spikes in compact dtypes, and the file's JSON header; ``collate`` makes
    each batch ``(images, targets)``."""
    recorder = _ShapeRecorder(_sparse_encoder(encoder))
    loader = SpikeLoader(dataset, recorder, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                         collate_fn=collate)
    step_dtype = _unsigned_dtype(spec.num_steps)
    counts, steps, neurons, targets = [], [], [], []
    num_neurons = None
    # no tqdm at all without progress: even a disabled bar takes tqdm's lock, shared across
    # fork, which a writer killed while holding it would keep from its parent forever
    bar = tqdm(total=_length(dataset), unit="img", desc=f"encoding {path.name}") if progress else None
    with bar if bar is not None else contextlib.nullcontext():
        for spikes, batch_targets in loader:
            ev = sparse_to_events(spikes.cpu())
            if num_neurons is None:  # every batch has the first one's shape (_ShapeRecorder)
                num_neurons, neuron_dtype = ev.num_neurons, _unsigned_dtype(ev.num_neurons)
            counts.append(torch.bincount(ev.sample, minlength=ev.batch_size).numpy())
            steps.append(ev.step.numpy().astype(step_dtype))
            neurons.append(ev.neuron.numpy().astype(neuron_dtype))
            targets.append(_targets_array(batch_targets, ev.batch_size))
            if bar is not None:
                bar.update(ev.batch_size)
    if num_neurons is None:
        raise ValueError("dataset is empty: nothing to encode")
    encoded, expected = sum(len(c) for c in counts), _length(dataset)
    if expected is not None and encoded != expected:
        raise ValueError(f"the dataset gave {encoded} items, but its len() is {expected}: nothing written")
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    arrays = {"offsets": offsets, "step": np.concatenate(steps), "neuron": np.concatenate(neurons),
              "targets": np.concatenate(targets)}
    from .. import __version__

    header = {
        "spike_encode": __version__,
        "spec": _recorded(spec),
        "digest": spec.digest(),
        "engine": getattr(encoder, "engine_name", None),
        "num_samples": len(offsets) - 1,
        "num_steps": spec.num_steps,
        "num_neurons": num_neurons,
        "image_shape": _neuron_shape(encoder, recorder.image_shape, num_neurons),
    }
    return header, arrays


def _recorded_spec(recorded: Mapping[str, Any]) -> EncodingSpec:
    """The :class:`EncodingSpec` a file records (checked when it was opened), for output
    formats to check; a custom neuron model stays its recorded description."""
    spec = EncodingSpec.from_dict({**recorded, "neuron": None})
    neuron = recorded["neuron"]
    if neuron is None:
        return spec
    return dataclasses.replace(spec, neuron=NeuronSpec(neuron["model"], dict(neuron["params"]), dict(neuron["vars"])))


class SpikeDataset(Dataset):
    """The spikes written by :func:`encode_dataset`, as a dataset of ``(spikes, target)``.

    ``dataset[i]`` is ``(spikes, target)`` with ``spikes`` exactly what the encoder returns
    for image ``i`` in its output format (default: a ``(T, N)`` sparse tensor) and
    ``target`` an ``int``. For ``(B, T, N)`` sparse batches, :meth:`loader` reads each batch
    in one vectorised step (:meth:`get_batch`); ``DataLoader(ds, batch_size,
    collate_fn=collate_spikes)`` also works, item by item.

    The file is opened once and read only through that descriptor: replacing it (as
    :func:`encode_dataset` does) leaves this dataset reading the file it opened; changing or
    truncating it in place makes reads raise :class:`SpikeFileError`. DataLoader workers
    started by fork share the descriptor; spawned ones reopen the path and refuse a file
    that is not the one opened here.

    Args:
        path: file written by :func:`encode_dataset`.
        encoder: if given, its whole ``spec`` must match the file's, and its output format
            decides the items' format.
        spec: the :class:`~spike_encode.EncodingSpec` (or its ``as_dict()``) the file must
            have been encoded with, when no encoder is given.
        params: the ``EncoderParams`` (or its ``as_dict()``) the file must have been encoded
            with; only the spec's parameters are compared (spike_encode 0.2's argument).
        output, time_first, dtype, flatten: the items' format, as ``LatencyEncode``'s, when no
            encoder is given (a format object, or a name and its options; an option that does
            not apply to the format is refused; ``flatten=False`` and ``output="tonic"`` use the
            image shape recorded in the file).
        mmap: read spikes from the file when asked (default) rather than all into memory on
            open. (The name is 0.2's: reads use ``pread`` on the open file, not a memory map,
            so a file truncated underneath raises rather than killing the process.)
        verify: check the whole file's checksum on open (reads it once); ``False`` skips
            it for files you trust. The header's checksum, sizes, index ranges and order are
            always checked, and every item read is checked again.

    Attributes:
        spec_dict: the recorded ``EncodingSpec.as_dict()``.
        digest: its digest.
        params: its ``EncoderParams``.
        header: the file's whole JSON header.

    Raises:
        SpikeFileError: (a ``ValueError``) the file is not a regular spike file, is damaged,
            truncated or an old version; nothing is returned from it.
        SpecMismatchError: (a ``ValueError``) the file's spec differs from ``encoder``'s,
            ``spec`` or ``params``, naming the first differing field and both values.
        ValueError: an output format that cannot represent the file's encoding, as
            ``LatencyEncode`` refuses it (e.g. ``"tonic"`` for a step that is not whole µs).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        encoder: Any = None,
        *,
        spec: EncodingSpec | Mapping[str, Any] | None = None,
        params: EncoderParams | Mapping[str, float] | None = None,
        output: str | OutputFormat = "sparse",
        time_first: bool | None = None,
        dtype: torch.dtype | None = None,
        flatten: bool | None = None,
        mmap: bool = True,
        verify: bool = True,
    ) -> None:
        if sum(x is not None for x in (encoder, spec, params)) > 1:
            raise ValueError("give one of encoder, spec or params, not several")
        self._params_only = params is not None
        source = "the encoder" if encoder is not None else "params=" if params is not None else "spec="
        if encoder is not None:
            spec = _encoder_spec(encoder)
            if output != "sparse" or (time_first, dtype, flatten) != (None, None, None):
                raise ValueError("the encoder decides the items' output format; give encoder or output options, not both")
            self.output_format = getattr(encoder, "output_format", output_format())
        else:
            self.output_format = output_format(output, time_first=time_first, dtype=dtype, flatten=flatten)
            if params is not None:
                spec = EncodingSpec(params if isinstance(params, EncoderParams) else EncoderParams.from_dict(params))
        if spec is not None and not isinstance(spec, (EncodingSpec, Mapping)):
            raise TypeError(f"spec must be an EncodingSpec or its as_dict(), got {type(spec).__name__}")
        self._expected = (_recorded(spec) if isinstance(spec, EncodingSpec)
                          else None if spec is None else json.loads(json.dumps(dict(spec), default=str)))
        self.path = Path(path)
        self.mmap = bool(mmap)
        self.verify = bool(verify)
        self._file: SpikeFile | None = None
        self._identity: tuple | None = None
        try:
            self._check_spec(self._spikes, source)
            self.output_format.check_spec(_recorded_spec(self._spikes.spec))
        except ValueError:  # SpecMismatchError included
            self._spikes.close()
            raise

    @property
    def _spikes(self) -> SpikeFile:
        """The open file (reopened on first use in a spawned worker, which must find the same file)."""
        if self._file is None:
            self._file = SpikeFile(self.path, in_memory=not self.mmap, verify=self.verify, expect=self._identity)
            self._identity = self._file.identity
            self._targets = torch.from_numpy(self._file.targets.copy())
        return self._file

    def _check_spec(self, file: SpikeFile, source: str) -> None:
        if self._expected is None:
            return
        stored, expected = file.spec, self._expected
        if self._params_only:
            stored, expected = {"params": stored["params"]}, {"params": expected["params"]}
        differences = spec_differences(stored, expected)
        if differences:
            field, there, here = differences[0]
            more = f" (also different: {', '.join(d[0] for d in differences[1:])})" if len(differences) > 1 else ""
            raise SpecMismatchError(
                f"{self.path} was encoded with {field}={there!r}, but {source} has {field}={here!r}{more} "
                f"(the file's spec digest is {file.header['digest'][:12]}); encode the dataset again with "
                "encode_dataset for this encoding")

    @property
    def header(self) -> dict[str, Any]:
        """The file's JSON header (``spec``, ``digest``, ``num_samples``, ``num_steps``,
        ``num_neurons``, ``image_shape``, ``engine``, ``spike_encode``)."""
        return self._spikes.header

    @property
    def spec_dict(self) -> dict[str, Any]:
        """The :class:`~spike_encode.EncodingSpec` the file was encoded with, as ``as_dict()``."""
        return self._spikes.spec

    @property
    def digest(self) -> str:
        """The recorded spec's :meth:`~spike_encode.EncodingSpec.digest`."""
        return self._spikes.header["digest"]

    @property
    def params(self) -> EncoderParams:
        """The recorded spec's parameters (time step and window in ms, input scale in nA, LIF)."""
        return self._spikes.params

    @property
    def num_steps(self) -> int:
        """Time steps per sample."""
        return self._spikes.num_steps

    @property
    def num_neurons(self) -> int:
        """Neurons per sample."""
        return self._spikes.num_neurons

    @property
    def targets(self) -> torch.Tensor:
        """Every sample's target, ``(n,)`` int64."""
        return self._targets if self._file is not None else (self._spikes, self._targets)[1]

    def __len__(self) -> int:
        return len(self._spikes.offsets) - 1

    def _index(self, i: int) -> int:
        if isinstance(i, torch.Tensor):
            if i.dim() != 0 or i.dtype.is_floating_point or i.dtype.is_complex or i.dtype == torch.bool:
                raise TypeError(f"SpikeDataset indices are integers, got a tensor of {i.dtype} and shape {tuple(i.shape)}")
            i = int(i)
        elif isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"SpikeDataset indices are integers, got {i!r} ({type(i).__name__})")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a SpikeDataset of {n} samples")
        return int(i) % n

    @property
    def output(self) -> str:
        """The items' output format's name."""
        return self.output_format.name

    def _render(self, ev: SpikeEvents, batched: bool) -> Any:
        """Spikes in the items' format (the encoder's, or the one given)."""
        shape = self.header.get("image_shape")
        try:
            return self.output_format.render(ev, dt=self.params.dt, batched=batched,
                                              image_shape=None if shape is None else tuple(shape))
        except ValueError as err:
            if shape is not None:
                raise
            raise ValueError(f"{self.path} records no image shape, which {self.output_format!r} needs") from err

    def _events(self, indices: np.ndarray) -> SpikeEvents:
        step, neuron, counts = self._spikes.spikes(indices)
        sample = torch.from_numpy(np.repeat(np.arange(len(indices), dtype=np.int64), counts))  # numpy's is faster
        return SpikeEvents(sample, torch.from_numpy(step), torch.from_numpy(neuron), len(indices),
                           self.num_steps, self.num_neurons)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        i = self._index(i)
        ev = self._events(np.array([i]))
        spikes = self._render(ev, batched=False)
        return spikes, int(self.targets[i])

    def get_batch(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> tuple[Any, torch.Tensor]:
        """Samples ``indices`` at once: the batched output (``(B, T, N)`` sparse by default)
        and their targets ``(B,)`` int64, in one vectorised read."""
        if isinstance(indices, torch.Tensor):
            indices = indices.cpu().numpy()
        idx = np.asarray(indices).reshape(-1)
        if len(idx) == 0:
            raise ValueError("indices is empty")
        if not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
        n = len(self)
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"index {int(idx[bad][0])} is out of range for a SpikeDataset of {n} samples")
        idx = idx.astype(np.int64) % n
        spikes = self._render(self._events(idx), batched=True)
        return spikes, self.targets[torch.from_numpy(idx)]

    def loader(
        self,
        batch_size: int = 1,
        shuffle: bool = False,
        sampler: Sampler[int] | None = None,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> DataLoader:
        """A ``DataLoader`` of ``(spikes, targets)`` batches, each read by :meth:`get_batch`.

        ``sampler`` (e.g. a ``DistributedSampler``) or ``shuffle`` picks the samples, as for
        a ``DataLoader``; ``kwargs`` go to the ``DataLoader`` (reading is fast enough that
        workers rarely pay).
        """
        if sampler is None:
            sampler = RandomSampler(self, generator=generator) if shuffle else SequentialSampler(self)
        elif shuffle:
            raise ValueError("give sampler or shuffle=True, not both (as DataLoader)")
        batches = BatchSampler(sampler, batch_size, drop_last)
        return DataLoader(_Batches(self), sampler=batches, batch_size=None, **kwargs)

    @property
    def num_spikes(self) -> int:
        """Spikes stored, all samples together."""
        return int(self._spikes.offsets[-1])

    def __getstate__(self) -> dict[str, Any]:
        # reopened where unpickled (a spawned worker) rather than copying the arrays through
        # the pipe; it must find the same file (device, inode, size, time, checksum)
        state = {**self.__dict__, "_identity": self._spikes.identity}
        state.pop("_targets", None)
        state["_file"] = None
        return state

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, samples={len(self)}, T={self.num_steps}, "
                f"N={self.num_neurons}, output={self.output!r}, digest={self.digest[:12]})")


class _Batches(Dataset):
    """A SpikeDataset indexed by lists of indices (what a BatchSampler yields)."""

    def __init__(self, dataset: SpikeDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> tuple[Any, torch.Tensor]:
        return self.dataset.get_batch(indices)
