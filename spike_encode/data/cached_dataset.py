"""Encode a dataset once to one file; read it back, memory-mapped, as a dataset of spikes.

The file is a safetensors container checked whole on open (:mod:`.spike_file`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from tqdm.auto import tqdm

from ..events import SpikeEvents
from ..formats import sparse_to_events
from ..outputs import OutputFormat, output_format
from ..params import EncoderParams
from .collation import collate_images_and_targets
from .loader import SpikeLoader
from .spike_file import SpikeFileError, read_spike_file, spike_file_bytes

__all__ = ["SpikeDataset", "SpikeFileError", "encode_dataset"]


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
    if getattr(encoder, "output_format", None) in (None, output_format()):
        return encoder
    import copy

    sparse = copy.copy(encoder)  # shares the engine; only the output format differs
    sparse.output_format = output_format()
    return sparse


class _ShapeRecorder:
    """Calls ``encoder`` and remembers the shape of the images it was given."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.device = getattr(encoder, "device", None)
        self.image_shape: tuple[int, ...] | None = None

    def __call__(self, images: torch.Tensor) -> Any:
        self.image_shape = tuple(images.shape[1:])
        return self.encoder(images)


def _neuron_shape(encoder: Any, image_shape: tuple[int, ...] | None, num_neurons: int) -> list[int] | None:
    """``(C, H, W)`` of the encoder's neurons for images of ``image_shape`` (``None`` if unknown)."""
    if image_shape is None or not hasattr(encoder, "sensor_size"):
        return None
    width, height, channels = encoder.sensor_size(image_shape)
    return [channels, height, width] if channels * height * width == num_neurons else None


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
) -> Path:
    """Encode every ``(image, target)`` of ``dataset`` with ``encoder`` into one file.

    The file (a safetensors container, :mod:`~spike_encode.data.spike_file`) holds each
    image's spikes in compact dtypes, the integer targets, the encoder's parameters, their
    :meth:`~spike_encode.EncoderParams.digest` and a checksum. It is written to a new,
    exclusively created temporary file beside ``path`` (made before encoding starts, so an
    unwritable destination fails at once; removed on any failure) and renamed onto ``path``
    when complete: concurrent writers of one path each publish a whole file, the last one
    wins. Images go through a
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

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OSError: ``path`` is a folder or its folder is not writable (before any encoding).
    """
    params = _encoder_params(encoder)
    path = Path(path)
    with _NewFile(path) as out:  # made before any work: an unwritable destination fails now
        collate = functools.partial(collate_images_and_targets, image_key=image_key, target_key=target_key)
        header, arrays = _encode(dataset, encoder, params, path, batch_size, num_workers, progress, collate)
        out.write(spike_file_bytes(arrays, header))
    return path


class _NewFile:
    """A file that appears at ``path`` whole when the ``with`` block succeeds, or not at all.

    On Linux it is an unnamed file (``O_TMPFILE``) until then, so even a killed process
    leaves nothing behind; elsewhere it is a hidden, exclusively created file beside ``path``
    (no link followed), removed on any failure. Publishing renames it onto ``path`` in one
    atomic step: of concurrent writers, each publishes a whole file and the last one wins.

    Raises:
        OSError: ``path`` is a folder, or no file can be made beside it (naming ``path``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            raise IsADirectoryError(f"cannot write the spike file {path}: it is a folder")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fd, self.name = self._open()
        except OSError as err:
            raise type(err)(err.errno, f"cannot write the spike file {path}: {err.strerror} "
                            f"(in {path.parent})") from err

    def _open(self) -> tuple[int, str | None]:
        if hasattr(os, "O_TMPFILE"):
            try:
                return os.open(self.path.parent, os.O_TMPFILE | os.O_WRONLY, 0o666), None
            except OSError as err:
                if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        return fd, name

    def write(self, data: bytes) -> None:
        """Write all of ``data``."""
        with memoryview(data) as view:
            while view:
                view = view[os.write(self.fd, view):]

    def __enter__(self) -> "_NewFile":
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                os.fsync(self.fd)
                if self.name is None:  # give the unnamed file a hidden name, then rename it
                    self.name = self._link()
                os.replace(self.name, self.path)
                self.name = None
        finally:
            os.close(self.fd)
            if self.name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.name)

    def _link(self) -> str:
        folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(100):
                name = f".{self.path.name}.{secrets.token_hex(6)}.partial"
                try:  # linkat(..., AT_SYMLINK_FOLLOW): the file behind the descriptor, not the link
                    os.link(f"/proc/self/fd/{self.fd}", name, dst_dir_fd=folder, follow_symlinks=True)
                    return str(self.path.with_name(name))
                except FileExistsError:
                    continue
        finally:
            os.close(folder)
        raise FileExistsError(f"no free temporary name beside {self.path}")


def _encode(dataset: Dataset, encoder: Any, params: EncoderParams, path: Path, batch_size: int,
            num_workers: int, progress: bool, collate: Callable[[list[Any]], tuple[torch.Tensor, Any]],
            ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every image's spikes in compact dtypes, and the file's JSON header; ``collate`` makes
    each batch ``(images, targets)``."""
    recorder = _ShapeRecorder(_sparse_encoder(encoder))
    loader = SpikeLoader(dataset, recorder, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                         collate_fn=collate)
    step_dtype = _unsigned_dtype(params.num_steps)
    counts, steps, neurons, targets = [], [], [], []
    num_neurons = None
    with tqdm(total=len(dataset), unit="img", desc=f"encoding {path.name}", disable=not progress) as bar:
        for spikes, batch_targets in loader:
            ev = sparse_to_events(spikes.cpu())
            if num_neurons is None:
                num_neurons, neuron_dtype = ev.num_neurons, _unsigned_dtype(ev.num_neurons)
            elif ev.num_neurons != num_neurons:
                raise ValueError(f"images change size within the dataset: {num_neurons} then {ev.num_neurons} pixels")
            counts.append(torch.bincount(ev.sample, minlength=ev.batch_size).numpy())
            steps.append(ev.step.numpy().astype(step_dtype))
            neurons.append(ev.neuron.numpy().astype(neuron_dtype))
            targets.append(_targets_array(batch_targets, ev.batch_size))
            bar.update(ev.batch_size)
    if num_neurons is None:
        raise ValueError("dataset is empty: nothing to encode")
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    arrays = {"offsets": offsets, "step": np.concatenate(steps), "neuron": np.concatenate(neurons),
              "targets": np.concatenate(targets)}
    from .. import __version__

    header = {
        "spike_encode": __version__,
        "params": params.as_dict(),
        "digest": params.digest(),
        "engine": getattr(encoder, "engine_name", None),
        "num_samples": len(offsets) - 1,
        "num_steps": params.num_steps,
        "num_neurons": num_neurons,
        "image_shape": _neuron_shape(encoder, recorder.image_shape, num_neurons),
    }
    return header, arrays


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
        encoder: if given, its parameters must match the file's, and its ``output``,
            ``time_first``, ``dtype`` and ``flatten`` decide the items' format.
        params: parameters the file must have been encoded with (``EncoderParams`` or its
            ``as_dict()``), when no encoder is given.
        output, time_first, dtype, flatten: the items' format, as ``LatencyEncode``'s, when no
            encoder is given (a format object, or a name and its options; an option that does
            not apply to the format is refused; ``flatten=False`` and ``output="tonic"`` use the
            image shape recorded in the file).
        mmap: memory-map the arrays (default) rather than read them into memory.
        verify: check the arrays' checksum on open (reads the file once); ``False`` skips
            it for files you trust. Sizes, dtypes, index ranges and order are always checked.

    Raises:
        SpikeFileError: (a ``ValueError``) the file is not a spike file, is damaged or
            truncated, or is an old version-1 file; nothing is returned from it.
        ValueError: the file's parameters differ from ``encoder``'s or ``params`` (naming
            both digests and the differing values).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        encoder: Any = None,
        *,
        params: EncoderParams | Mapping[str, float] | None = None,
        output: str | OutputFormat = "sparse",
        time_first: bool | None = None,
        dtype: torch.dtype | None = None,
        flatten: bool | None = None,
        mmap: bool = True,
        verify: bool = True,
    ) -> None:
        if encoder is not None:
            if params is not None:
                raise ValueError("give encoder or params, not both")
            params = _encoder_params(encoder)
            if output != "sparse" or (time_first, dtype, flatten) != (None, None, None):
                raise ValueError("the encoder decides the items' output format; give encoder or output options, not both")
            self.output_format = getattr(encoder, "output_format", output_format())
        else:
            self.output_format = output_format(output, time_first=time_first, dtype=dtype, flatten=flatten)
        if params is not None and not isinstance(params, EncoderParams):
            params = EncoderParams.from_dict(params)
        self.path = Path(path)
        self.mmap = bool(mmap)
        self.verify = bool(verify)
        self._expected = params
        self._open()

    def _open(self) -> None:
        self.header, self.params, self._arrays = read_spike_file(self.path, mmap=self.mmap, verify=self.verify)
        self.digest = self.header["digest"]
        expected = self._expected
        if expected is not None and expected.digest() != self.digest:
            raise ValueError(
                f"{self.path} was encoded with parameters of digest {self.digest}, but the encoder's "
                f"have digest {expected.digest()} ({_param_differences(self.params.as_dict(), expected.as_dict())}); "
                "encode the dataset again with encode_dataset for these parameters"
            )
        self.num_steps = int(self.header["num_steps"])
        self.num_neurons = int(self.header["num_neurons"])
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
