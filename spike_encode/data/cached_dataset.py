"""Encode a dataset once to one file; read it back, memory-mapped, as a dataset of spikes.

File layout (little-endian), version 1::

    8 bytes   magic b"SPKENC01"
    8 bytes   uint64 length L of the JSON header
    L bytes   JSON header: format version, encoder parameters and their digest, T, N,
              sample count, engine, and each array's dtype, shape and byte offset
    padding   to a multiple of 64 bytes; the arrays follow, each 64-byte aligned:
              offsets (n + 1,) int64   spikes of sample i are [offsets[i], offsets[i + 1])
              step    (S,)     uint8/uint16/...  time step of each spike
              neuron  (S,)     uint16/uint32     neuron of each spike
              targets (n,)     int64

Spikes of each sample are sorted by (step, neuron), as a coalesced sparse raster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from tqdm.auto import tqdm

from ..engines.events import SpikeEvents
from ..formats import OUTPUT_FORMATS, events_to_output, sparse_to_events
from ..params import EncoderParams
from .loader import SpikeLoader

__all__ = ["SpikeDataset", "encode_dataset"]

_MAGIC = b"SPKENC01"
_VERSION = 1
_ALIGN = 64


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _unsigned_dtype(size: int) -> np.dtype:
    """The smallest unsigned dtype holding ``0 .. size - 1``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _encoder_params(encoder: Any) -> EncoderParams:
    params = getattr(encoder, "params", None)
    if not isinstance(params, EncoderParams):
        raise TypeError(
            f"encoder must carry its EncoderParams as .params (e.g. LatencyEncode), got {type(encoder).__name__}"
        )
    return params


def _sparse_encoder(encoder: Any) -> Any:
    """``encoder`` itself if it returns sparse batches, else a shallow copy that does."""
    if getattr(encoder, "output", "sparse") == "sparse":
        return encoder
    import copy

    sparse = copy.copy(encoder)  # shares the engine; only the output format differs
    sparse.output = "sparse"
    return sparse


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
) -> Path:
    """Encode every ``(image, target)`` of ``dataset`` with ``encoder`` into one file.

    The file holds each image's spikes in compact dtypes, the integer targets, the
    encoder's parameters and their :meth:`~spike_encode.EncoderParams.digest`. It is written
    to a temporary name and renamed when complete. Images go through a
    :class:`~spike_encode.data.SpikeLoader` (in order; ``num_workers`` load them), so
    :class:`SpikeDataset` ``(path)[i]`` is exactly ``encoder(dataset[i][0])``.

    Args:
        dataset: map-style dataset of ``(image, target)``, targets integers.
        encoder: a ``LatencyEncode`` (any output format; spikes are stored as events).
        path: file to write (parent folders are created).
        batch_size: images encoded at once.
        num_workers: DataLoader workers loading images.
        progress: show a tqdm progress bar (images).

    Returns:
        ``path`` as a ``Path``.
    """
    params = _encoder_params(encoder)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    loader = SpikeLoader(dataset, _sparse_encoder(encoder), batch_size=batch_size, shuffle=False,
                         num_workers=num_workers)
    step_dtype = _unsigned_dtype(params.num_steps)
    counts, steps, neurons, targets = [], [], [], []
    num_neurons = None
    with tqdm(total=len(dataset), unit="img", desc=f"encoding {path.name}", disable=not progress) as bar:
        for spikes, batch_targets in loader:
            ev = sparse_to_events(spikes.cpu())
            if num_neurons is None:
                num_neurons = ev.num_neurons
            elif ev.num_neurons != num_neurons:
                raise ValueError(f"images change size within the dataset: {num_neurons} then {ev.num_neurons} pixels")
            counts.append(torch.bincount(ev.sample, minlength=ev.batch_size).numpy())
            steps.append(ev.step.numpy().astype(step_dtype))
            neurons.append(ev.neuron.numpy())
            targets.append(_targets_array(batch_targets, ev.batch_size))
            bar.update(ev.batch_size)
    if num_neurons is None:
        raise ValueError("dataset is empty: nothing to encode")
    neuron_dtype = _unsigned_dtype(num_neurons)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    chunks = {
        "offsets": [offsets],
        "step": steps,
        "neuron": [n.astype(neuron_dtype) for n in neurons],
        "targets": [np.concatenate(targets)],
    }
    arrays, position = {}, 0
    for name, parts in chunks.items():
        length = sum(len(p) for p in parts)
        arrays[name] = {"dtype": parts[0].dtype.str, "shape": [length], "offset": position}
        position = _align(position + length * parts[0].dtype.itemsize)
    from .. import __version__

    header = {
        "format": "spike_encode.SpikeDataset",
        "version": _VERSION,
        "spike_encode": __version__,
        "params": params.as_dict(),
        "digest": params.digest(),
        "engine": getattr(encoder, "engine_name", None),
        "num_samples": len(offsets) - 1,
        "num_steps": params.num_steps,
        "num_neurons": num_neurons,
        "arrays": arrays,
    }
    text = json.dumps(header).encode()
    data_start = _align(16 + len(text))
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(_MAGIC + len(text).to_bytes(8, "little") + text)
        for name, parts in chunks.items():
            f.seek(data_start + arrays[name]["offset"])
            for part in parts:
                f.write(np.ascontiguousarray(part).tobytes())
        f.truncate(data_start + position)
    os.replace(tmp, path)
    return path


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    with open(path, "rb") as f:
        magic = f.read(8)
        if magic != _MAGIC:
            raise ValueError(f"{path} is not a spike_encode dataset file (magic {magic!r}, expected {_MAGIC!r})")
        length = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(length))
    if header.get("version") != _VERSION:
        raise ValueError(f"{path} has file version {header.get('version')!r}; this spike_encode reads version {_VERSION}")
    return header, _align(16 + length)


def _param_differences(stored: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    names = sorted(set(stored) | set(expected))
    return ", ".join(f"{n}: {stored.get(n)!r} in the file, {expected.get(n)!r} expected"
                     for n in names if stored.get(n) != expected.get(n))


class SpikeDataset(Dataset):
    """The spikes written by :func:`encode_dataset`, as a dataset of ``(spikes, target)``.

    ``dataset[i]`` is ``(spikes, target)`` with ``spikes`` exactly what the encoder returns
    for image ``i`` in its output format (default: a ``(T, N)`` sparse tensor) and
    ``target`` an ``int``. For ``(B, T, N)`` sparse batches, :meth:`loader` reads each batch
    in one vectorised step (:meth:`get_batch`); ``DataLoader(ds, batch_size,
    collate_fn=collate_spikes)`` also works, item by item.

    Args:
        path: file written by :func:`encode_dataset`.
        encoder: if given, its parameters must match the file's, and its ``output`` and
            ``time_first`` decide the items' format.
        params: parameters the file must have been encoded with (``EncoderParams`` or its
            ``as_dict()``), when no encoder is given.
        output: ``"sparse"``, ``"dense"``, ``"times"`` or ``"events"``, when no encoder is given.
        time_first: with ``output="dense"``, as ``LatencyEncode``'s.
        mmap: memory-map the arrays (default) rather than read them into memory.

    Raises:
        ValueError: the file's parameters differ from ``encoder``'s or ``params`` (naming
            both digests and the differing values), or the file is not a valid cache.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        encoder: Any = None,
        *,
        params: EncoderParams | Mapping[str, float] | None = None,
        output: str = "sparse",
        time_first: bool = False,
        mmap: bool = True,
    ) -> None:
        if encoder is not None:
            if params is not None:
                raise ValueError("give encoder or params, not both")
            params = _encoder_params(encoder)
            output = getattr(encoder, "output", output)
            time_first = getattr(encoder, "time_first", time_first)
        if output not in OUTPUT_FORMATS:
            raise ValueError(f"output={output!r} is not one of {OUTPUT_FORMATS}")
        if params is not None and not isinstance(params, EncoderParams):
            params = EncoderParams.from_dict(params)
        self.path = Path(path)
        self.output = output
        self.time_first = bool(time_first)
        self.mmap = bool(mmap)
        self._expected = params
        self._open()

    def _open(self) -> None:
        header, data_start = _read_header(self.path)
        self.header = header
        self.params = EncoderParams.from_dict(header["params"])
        self.digest = header["digest"]
        if self.params.digest() != self.digest:
            raise ValueError(
                f"{self.path}: stored digest {self.digest} does not match its stored parameters "
                f"(digest {self.params.digest()}); the file is damaged or from another digest scheme"
            )
        expected = self._expected
        if expected is not None and expected.digest() != self.digest:
            raise ValueError(
                f"{self.path} was encoded with parameters of digest {self.digest}, but the encoder's "
                f"have digest {expected.digest()} ({_param_differences(self.params.as_dict(), expected.as_dict())}); "
                "encode the dataset again with encode_dataset for these parameters"
            )
        self.num_steps = int(header["num_steps"])
        self.num_neurons = int(header["num_neurons"])
        self._arrays = {}
        for name, spec in header["arrays"].items():
            dtype, (count,), offset = np.dtype(spec["dtype"]), spec["shape"], data_start + spec["offset"]
            if count == 0:
                array = np.empty(0, dtype)
            elif self.mmap:
                array = np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=(count,))
            else:
                array = np.fromfile(self.path, dtype=dtype, count=count, offset=offset)
            self._arrays[name] = array
        self._offsets = np.asarray(self._arrays["offsets"])  # small: always in memory
        self.targets = torch.from_numpy(np.array(self._arrays["targets"]))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def _index(self, i: int) -> int:
        n = len(self)
        if isinstance(i, torch.Tensor):
            i = int(i)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a SpikeDataset of {n} samples")
        return i % n

    def _events(self, indices: np.ndarray) -> SpikeEvents:
        starts, stops = self._offsets[indices], self._offsets[indices + 1]
        counts = stops - starts
        # positions of every wanted spike: each sample's range [start, stop), concatenated
        firsts = np.cumsum(counts) - counts
        pos = np.repeat(starts - firsts, counts) + np.arange(int(counts.sum()))
        step = torch.from_numpy(self._arrays["step"][pos].astype(np.int64))
        neuron = torch.from_numpy(self._arrays["neuron"][pos].astype(np.int64))
        sample = torch.from_numpy(np.repeat(np.arange(len(indices), dtype=np.int64), counts))  # numpy's is faster
        return SpikeEvents(sample, step, neuron, len(indices), self.num_steps, self.num_neurons)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        i = self._index(i)
        ev = self._events(np.array([i]))
        spikes = events_to_output(ev, self.output, self.params.dt, self.time_first, batched=False)
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
        spikes = events_to_output(self._events(idx), self.output, self.params.dt, self.time_first)
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
        return int(self._offsets[-1])

    def __getstate__(self) -> dict[str, Any]:
        # reopened in each worker rather than copying the arrays through the pipe
        state = self.__dict__.copy()
        for name in ("_arrays", "_offsets", "targets", "header", "params", "digest"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

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
