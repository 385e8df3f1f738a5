"""The spike file (format version 3): a safetensors container of one dataset's spikes,
read from one descriptor and checked whole on open.

Arrays (all 1-d; spikes of sample ``i`` are ``[offsets[i], offsets[i + 1])``, sorted by
(step, neuron) within each sample):

=========  ======================  ============================================
name       dtype                   meaning
=========  ======================  ============================================
offsets    int64, ``n + 1``        where each sample's spikes start and end
step       uint8/uint16/uint32     time step of each spike (``< num_steps``)
neuron     uint8/uint16/uint32     neuron of each spike (``< num_neurons``)
targets    int64, ``n``            class target of each sample
=========  ======================  ============================================

The safetensors metadata holds the format name and version, a JSON header (the encoder's
whole :class:`~spike_encode.EncodingSpec` as ``spec`` and its ``digest``, ``num_samples``,
``num_steps``, ``num_neurons``, the neurons' ``image_shape`` ``[C, H, W]`` (or null),
engine, spike_encode version) and two BLAKE2b checksums, each computed with both checksums
written as zeros: ``header_checksum`` of every byte before the arrays, ``checksum`` of
every byte of the file. Nothing is executed or unpickled.

:class:`SpikeFile` opens the path once, refuses anything but a regular file (a FIFO would
block, a device never ends), and reads only from that descriptor, with ``pread`` (no memory
map: a file truncated under a reader raises :class:`SpikeFileError`, never ``SIGBUS``).
It parses the container header itself, strictly: duplicate keys, NaN, nesting deeper
than Python parses, arrays that overlap, leave gaps or do not fit the file's real size
are refused before anything is allocated. The header checksum is always checked, the whole
file's unless the file is trusted (``verify=False``); dtypes, sizes, index ranges and order
are always checked, a bounded chunk at a time. After opening, every read checks the spikes
it returns (step ``< num_steps``, neuron ``< num_neurons``, sorted within each sample) and
that the file's size and modification time are still those it was opened with.

What a reader cannot notice: a rewrite of the open file in place that keeps its size and
leaves its modification time as it was when last checked (a file system or kernel whose
timestamps are coarser than the interval between two writes; Linux 6.13+ gives every change
after a check a new time), or one ``write`` already under way when the file was opened.
Items then pass every check but may hold the other file's spikes. :func:`encode_dataset`
never writes in place (it publishes a new file atomically), and a file replaced that way
leaves open readers reading the file they opened.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpikeFileError
from ..params import EncoderParams
from ..spec import check_spec_dict, spec_digest
from .files import file_kind

__all__ = ["FORMAT", "VERSION", "SpikeFile", "SpikeFileError", "spike_file_bytes"]

FORMAT = "spike_encode.SpikeDataset"
VERSION = 3
_OLD_MAGIC = b"SPKENC01"  # version 1: a hand-written container
_ALLOWED = {  # name -> safetensors dtypes it may have; 8-byte arrays first, so all are aligned
    "offsets": ("I64",),
    "targets": ("I64",),
    "step": ("U8", "U16", "U32"),
    "neuron": ("U8", "U16", "U32"),
}
_NUMPY = {"U8": np.dtype("<u1"), "U16": np.dtype("<u2"), "U32": np.dtype("<u4"), "I64": np.dtype("<i8")}
_METADATA = ("format", "version", "header", "header_checksum", "checksum")
_HEADER = ("spike_encode", "spec", "digest", "engine", "num_samples", "num_steps", "num_neurons", "image_shape")
_ZERO = "blake2b:" + "0" * 64
_CHECKSUM = re.compile(r"blake2b:[0-9a-f]{64}")
_MAX_HEADER = 1 << 24  # bytes of container header read at most
_MAX_INDEX = 1 << 32  # steps and neurons are stored as uint32 at most
_CHUNK = 1 << 18  # spikes checked at a time on open
_HASH_READ = 1 << 23  # bytes hashed at a time


def _hasher() -> Any:
    return hashlib.blake2b(digest_size=32)


def spike_file_bytes(arrays: Mapping[str, np.ndarray], header: Mapping[str, Any]) -> bytes:
    """The whole file for ``arrays`` (the four above) and ``header`` (JSON-ready)."""
    codes = {dtype: code for code, dtype in _NUMPY.items()}
    table: dict[str, Any] = {"__metadata__": {"format": FORMAT, "version": str(VERSION),
                                              "header": json.dumps(dict(header), sort_keys=True),
                                              "header_checksum": _ZERO, "checksum": _ZERO}}
    data, begin = [], 0
    for name, allowed in _ALLOWED.items():
        array = np.ascontiguousarray(arrays[name]).reshape(-1)
        code = codes.get(array.dtype.newbyteorder("<"))
        if code not in allowed:
            raise TypeError(f"array {name!r} has dtype {array.dtype}; a spike file stores {allowed}")
        data.append(array.astype(_NUMPY[code], copy=False).tobytes())
        table[name] = {"dtype": code, "shape": [len(array)], "data_offsets": [begin, begin + len(data[-1])]}
        begin += len(data[-1])
    text = json.dumps(table, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # arrays start 8-byte aligned, as safetensors writes them
    head = len(text).to_bytes(8, "little") + text
    hasher = _hasher()
    hasher.update(head)
    header_sum = hasher.hexdigest()
    for part in data:
        hasher.update(part)
    for key, value in (("header_checksum", header_sum), ("checksum", hasher.hexdigest())):
        head = head.replace(f'"{key}":"{_ZERO}"'.encode(), f'"{key}":"blake2b:{value}"'.encode())
    return head + b"".join(data)


@dataclass(frozen=True)
class _Array:
    dtype: np.dtype
    start: int  # byte offset in the file
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count * self.dtype.itemsize


class SpikeFile:
    """One spike file, open and checked: its header, offsets and targets in memory, its
    spikes read when asked from the one descriptor it opened (or all read on open).

    Args:
        path: the file.
        in_memory: read every array into memory on open (no later reads of the file).
        verify: check the whole file's checksum (reads it once); skip only for files you
            trust. The header's checksum, sizes, dtypes, index ranges and order are checked either way.
        expect: :attr:`identity` the file must have (a dataset reopened in a worker); the
            file is then not checked whole again.

    Raises:
        SpikeFileError: naming the file and what is wrong with it.
        OSError: it cannot be opened at all (missing, no permission; ``IsADirectoryError``
            for a folder).
    """

    def __init__(self, path: str | os.PathLike[str], *, in_memory: bool = False, verify: bool = True,
                 expect: tuple | None = None) -> None:
        self.path = Path(path)
        self._fd = _open_regular(self.path)
        self._close = weakref.finalize(self, os.close, self._fd)
        try:
            self._opened = os.fstat(self._fd)
            if expect is not None and self._stat_identity() != tuple(expect[:-1]):
                raise self._replaced()
            self._load(in_memory, verify and expect is None, check_spikes=in_memory or expect is None)
            self._unchanged("while it was being opened")
            if expect is not None and self.identity != tuple(expect):
                raise self._replaced()
        except BaseException:
            self.close()
            raise

    def _replaced(self) -> SpikeFileError:
        return SpikeFileError(f"{self.path} is no longer the file this dataset was opened with (it was replaced "
                              "or changed since); open it again")

    def close(self) -> None:
        """Close the file (reads then fail)."""
        self._close()

    def _stat_identity(self) -> tuple:
        st = self._opened
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    @property
    def identity(self) -> tuple:
        """What names this file's version: device, inode, size, modification time, checksum."""
        return (*self._stat_identity(), self.checksum)

    # -- reading --------------------------------------------------------------------------

    def _read_into(self, buffer: np.ndarray, offset: int) -> None:
        view = memoryview(buffer).cast("B")
        while view:
            try:
                got = os.preadv(self._fd, [view], offset)
            except OSError as err:
                raise SpikeFileError(f"{self.path} cannot be read ({err.strerror})") from err
            if got == 0:
                self._unchanged()
                raise SpikeFileError(f"{self.path} is truncated: shorter than its header says")
            view, offset = view[got:], offset + got

    def _read(self, array: _Array, begin: int = 0, end: int | None = None) -> np.ndarray:
        """Elements ``[begin, end)`` of ``array``."""
        end = array.count if end is None else end
        out = np.empty(end - begin, array.dtype)
        self._read_into(out, array.start + begin * array.dtype.itemsize)
        return out

    def _unchanged(self, when: str = "since it was opened") -> None:
        now, then = os.fstat(self._fd), self._opened
        if (now.st_size, now.st_mtime_ns) != (then.st_size, then.st_mtime_ns):
            raise SpikeFileError(f"{self.path} changed {when} (now {now.st_size} bytes, opened with "
                                 f"{then.st_size}, modified since); open it again")

    # -- opening --------------------------------------------------------------------------

    def _load(self, in_memory: bool, verify: bool, check_spikes: bool) -> None:
        path, size = self.path, self._opened.st_size
        prefix = bytearray(min(size, 8))
        self._read_into(np.frombuffer(prefix, np.uint8), 0)
        if bytes(prefix) == _OLD_MAGIC:
            raise SpikeFileError(f"{path} is a version-1 spike file, which this spike_encode no longer reads; "
                                 "encode the dataset again with encode_dataset")
        length = int.from_bytes(prefix, "little")
        if size < 8 or length > min(size - 8, _MAX_HEADER):
            raise SpikeFileError(f"{path} is not a valid spike file (a header of {length} bytes "
                                 f"in a file of {size})")
        raw = bytearray(length)
        self._read_into(np.frombuffer(raw, np.uint8), 8)
        table = _json(bytes(raw), path, "container header")
        metadata = _metadata(path, table)
        hasher = _hasher()
        hasher.update(_zeroed(path, bytes(prefix + raw), (metadata["header_checksum"], metadata["checksum"])))
        if "blake2b:" + hasher.hexdigest() != metadata["header_checksum"]:
            raise SpikeFileError(f"{path} is damaged: its header does not match its checksum")
        layout = _layout(path, table, 8 + length, size)
        self.header, self.spec, self.params = _header(path, metadata["header"])
        self.checksum = metadata["checksum"]
        _check_sizes(path, self.header, layout)
        self.num_steps, self.num_neurons = self.header["num_steps"], self.header["num_neurons"]
        if in_memory:
            blob = np.empty(size - 8 - length, np.uint8)
            self._read_into(blob, 8 + length)
            arrays = {name: blob[a.start - 8 - length : a.end - 8 - length].view(a.dtype) for name, a in layout.items()}
            chunks = [blob]
        else:
            arrays = {name: self._read(layout[name]) for name in ("offsets", "targets")}
            chunks = (self._read(_Array(np.dtype(np.uint8), at, min(_HASH_READ, size - at)))
                      for at in range(8 + length, size, _HASH_READ))
        for array in arrays.values():
            array.flags.writeable = False
        self.offsets, self.targets = arrays["offsets"], arrays["targets"]
        _check_offsets(path, self.header, self.offsets, layout["step"].count)
        if verify:
            for chunk in chunks:
                hasher.update(chunk)
            if "blake2b:" + hasher.hexdigest() != self.checksum:
                raise SpikeFileError(f"{path} is damaged: its contents do not match their checksum")
        self._step, self._neuron = arrays.get("step"), arrays.get("neuron")
        self._layout = layout
        if check_spikes:
            read = ((lambda a, b: (self._step[a:b], self._neuron[a:b])) if in_memory else
                    (lambda a, b: (self._read(layout["step"], a, b), self._read(layout["neuron"], a, b))))
            _check_spikes(path, self.header, self.offsets, layout["step"].count, read)

    # -- spikes ---------------------------------------------------------------------------

    def spikes(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps and neurons (int64) of samples ``indices`` (in range), concatenated in that
        order, and each sample's spike count.

        Raises:
            SpikeFileError: the file changed or was damaged since it was opened.
        """
        starts = self.offsets[indices]
        counts = self.offsets[indices + 1] - starts
        firsts = np.cumsum(counts) - counts
        if self._step is not None:  # in memory, checked on open
            pos = np.repeat(starts - firsts, counts) + np.arange(int(counts.sum()))
            return self._step[pos].astype(np.int64), self._neuron[pos].astype(np.int64), counts
        step, neuron, where = self._read_samples(indices)
        pos = np.repeat(where - firsts, counts) + np.arange(int(counts.sum()))
        step, neuron = step[pos].astype(np.int64), neuron[pos].astype(np.int64)
        problem = _spike_problem(step, neuron, firsts, self.num_steps, self.num_neurons)
        if problem:
            raise SpikeFileError(f"{self.path} is damaged or changed since it was opened: {problem}; open it again")
        return step, neuron, counts

    def _read_samples(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The spikes of each distinct sample of ``indices``, read one run of consecutive
        samples at a time, and where each of ``indices`` starts in them."""
        samples, inverse = np.unique(indices, return_inverse=True)
        heads = np.flatnonzero(np.diff(samples, prepend=-2) != 1)  # first sample of each run
        tails = np.append(heads[1:], len(samples)) - 1
        begin, end = self.offsets[samples[heads]], self.offsets[samples[tails] + 1]
        base = np.cumsum(end - begin) - (end - begin)  # where each run goes in the buffer
        step = np.empty(int((end - begin).sum()), self._layout["step"].dtype)
        neuron = np.empty(len(step), self._layout["neuron"].dtype)
        for out, array in ((step, self._layout["step"]), (neuron, self._layout["neuron"])):
            size, view = array.dtype.itemsize, memoryview(out).cast("B")
            for b, e, at in zip(begin.tolist(), end.tolist(), base.tolist()):  # one pread a run
                if e > b and os.preadv(self._fd, [view[at * size : e * size - b * size + at * size]],
                                       array.start + b * size) != (e - b) * size:
                    self._read_into(out[at : at + e - b], array.start + b * size)  # a short read
        self._unchanged()
        run = np.repeat(np.arange(len(heads)), tails - heads + 1)
        where = base[run] + self.offsets[samples] - begin[run]
        return step, neuron, where[inverse.reshape(-1)]


def _open_regular(path: Path) -> int:
    """A descriptor of ``path`` if it is a regular file (a FIFO is not waited on)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, f"{path} is a folder, not a spike file")
        if not stat.S_ISREG(mode):
            raise SpikeFileError(f"{path} is {file_kind(mode)}, not a spike file (spike files are regular files)")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:40]!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _json(data: bytes | str, path: Path, what: str) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN or infinities, no nesting Python cannot parse."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise SpikeFileError(f"{path} is not a valid spike file: its {what} is not valid JSON "
                             f"({type(err).__name__}: {str(err)[:200]})") from None


def _metadata(path: Path, table: Any) -> dict[str, str]:
    metadata = table.get("__metadata__") if isinstance(table, dict) else None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SpikeFileError(f"{path} is not a valid spike file (no safetensors metadata of strings)")
    if metadata.get("format") != FORMAT:
        raise SpikeFileError(f"{path} is not a spike_encode spike file (format {str(metadata.get('format'))[:80]!r})")
    version = metadata.get("version")
    if version in ("1", "2"):
        raise SpikeFileError(f"{path} is a version-{version} spike file, which this spike_encode no longer "
                             "reads; encode the dataset again with encode_dataset")
    if version != str(VERSION):
        raise SpikeFileError(f"{path} has spike file version {str(version)[:20]!r}; this spike_encode reads "
                             f"version {VERSION}")
    if sorted(metadata) != sorted(_METADATA) or not all(
            _CHECKSUM.fullmatch(metadata[k]) for k in ("header_checksum", "checksum")):
        raise SpikeFileError(f"{path} is damaged: its metadata has entries {sorted(metadata)[:10]}, expected "
                             f"{list(_METADATA)} with blake2b checksums")
    return metadata


def _zeroed(path: Path, head: bytes, checksums: tuple[str, str]) -> bytes:
    """``head`` with each checksum written as zeros (each must appear in it once, as written)."""
    for checksum in checksums:
        if head.count(checksum.encode()) != 1:
            raise SpikeFileError(f"{path} is damaged: its header does not match its checksum")
        head = head.replace(checksum.encode(), _ZERO.encode())
    return head


def _counts(value: Any, length: int) -> bool:
    return (isinstance(value, list) and len(value) == length
            and all(type(x) is int and x >= 0 for x in value))


def _layout(path: Path, table: dict[str, Any], start: int, size: int) -> dict[str, _Array]:
    """Where each array lies in the file, checked against the file's real size."""
    names = set(table) - {"__metadata__"}
    if names != set(_ALLOWED):
        raise SpikeFileError(f"{path} holds arrays {sorted(names)[:10]}, expected {sorted(_ALLOWED)}")
    layout, spans = {}, []
    for name, allowed in _ALLOWED.items():
        entry = table[name]
        if not (isinstance(entry, dict) and sorted(entry) == ["data_offsets", "dtype", "shape"]
                and entry["dtype"] in allowed and _counts(entry["shape"], 1) and _counts(entry["data_offsets"], 2)):
            raise SpikeFileError(f"{path}: array {name!r} is described as {str(entry)[:200]}; expected a 1-d "
                                 f"array of dtype {' or '.join(allowed)}")
        dtype, (count,), (begin, end) = _NUMPY[entry["dtype"]], entry["shape"], entry["data_offsets"]
        if end - begin != count * dtype.itemsize:
            raise SpikeFileError(f"{path} is damaged: array {name!r} of {count} elements spans {end - begin} bytes")
        layout[name] = _Array(dtype, start + begin, count)
        spans.append((begin, end))
    spans.sort()
    if [b for b, _ in spans] != [0] + [e for _, e in spans[:-1]] or start + spans[-1][1] != size:
        raise SpikeFileError(f"{path} is damaged or truncated: its arrays span {spans[-1][1]} bytes, "
                             f"the file holds {size - start} after its header")
    return layout


def _header(path: Path, text: str) -> tuple[dict[str, Any], dict[str, Any], EncoderParams]:
    """The JSON header, the encoding spec it records and that spec's parameters, checked."""
    header = _json(text, path, "header")
    try:
        if not isinstance(header, dict) or sorted(header) != sorted(_HEADER):
            raise ValueError(f"entries {sorted(header)[:12] if isinstance(header, dict) else header!r}")
        spec = header["spec"]
        check_spec_dict(spec)
        params = EncoderParams.from_dict(spec["params"])
        for key, low in (("num_samples", 0), ("num_steps", 1), ("num_neurons", 1)):
            value = header[key]
            if type(value) is not int or not low <= value <= (1 << 62 if key == "num_samples" else _MAX_INDEX):
                raise ValueError(f"{key} is {str(value)[:40]}")
        shape = header["image_shape"]
        if shape is not None and not (_counts(shape, 3) and 0 not in shape
                                      and shape[0] * shape[1] * shape[2] == header["num_neurons"]):
            raise ValueError(f"image_shape is {str(shape)[:80]} for {header['num_neurons']} neurons")
        for key in ("spike_encode", "engine"):
            if not isinstance(header[key], str) and not (key == "engine" and header[key] is None):
                raise ValueError(f"{key} is {str(header[key])[:80]}")
    except (KeyError, TypeError, ValueError, ArithmeticError, RecursionError) as err:
        raise SpikeFileError(f"{path} has a damaged header ({type(err).__name__}: {str(err)[:300]})") from None
    if spec_digest(spec) != header["digest"]:
        raise SpikeFileError(f"{path}: stored digest {str(header['digest'])[:64]} does not match its stored "
                             f"encoding spec (digest {spec_digest(spec)}); the file is damaged")
    if header["num_steps"] != params.num_steps:
        raise SpikeFileError(f"{path}: header says {header['num_steps']} steps, its parameters give "
                             f"{params.num_steps}; the file is damaged")
    if max(header["num_samples"], 1) * header["num_steps"] * header["num_neurons"] >= 1 << 63:
        raise SpikeFileError(f"{path}: {header['num_samples']} samples of {header['num_steps']} steps and "
                             f"{header['num_neurons']} neurons do not fit a tensor; the file is damaged")
    return header, spec, params


def _check_sizes(path: Path, header: Mapping[str, Any], layout: Mapping[str, _Array]) -> None:
    n = header["num_samples"]
    if layout["offsets"].count != n + 1 or layout["targets"].count != n:
        raise SpikeFileError(f"{path} is damaged: {layout['offsets'].count} offsets and "
                             f"{layout['targets'].count} targets for {n} samples")
    if layout["step"].count != layout["neuron"].count:
        raise SpikeFileError(f"{path} is damaged: {layout['step'].count} steps and "
                             f"{layout['neuron'].count} neurons")


def _check_offsets(path: Path, header: Mapping[str, Any], offsets: np.ndarray, spikes: int) -> None:
    if offsets[0] != 0 or offsets[-1] != spikes:
        raise SpikeFileError(f"{path} is damaged: offsets run from {offsets[0]} to {offsets[-1]} over "
                             f"{spikes} spikes")
    if header["num_samples"] and bool((np.diff(offsets) < 0).any()):
        raise SpikeFileError(f"{path} is damaged: offsets decrease")


def _spike_problem(step: np.ndarray, neuron: np.ndarray, firsts: np.ndarray, num_steps: int,
                   num_neurons: int, previous: int = -1) -> str | None:
    """What is wrong with spikes ``step``, ``neuron`` whose samples start at ``firsts``
    (``previous``: the key of the spike before them, in the same sample), or ``None``."""
    if not len(step):
        return None
    if int(step.max()) >= num_steps:
        return f"a spike at step {int(step.max())} of a {num_steps}-step window"
    if int(neuron.max()) >= num_neurons:
        return f"a spike of neuron {int(neuron.max())} of {num_neurons}"
    key = step.astype(np.int64) * num_neurons + neuron.astype(np.int64)
    rising = np.diff(key, prepend=previous) > 0
    rising[firsts[firsts < len(key)]] = True  # sample boundaries
    if not bool(rising.all()):
        return "a sample's spikes are not sorted by (step, neuron) or repeat"
    return None


def _check_spikes(path: Path, header: Mapping[str, Any], offsets: np.ndarray, count: int,
                  read: Callable[[int, int], tuple[np.ndarray, np.ndarray]]) -> None:
    """Ranges and order of every spike, ``_CHUNK`` spikes at a time."""
    previous = -1
    for begin in range(0, count, _CHUNK):
        end = min(begin + _CHUNK, count)
        step, neuron = read(begin, end)
        starts = offsets[np.searchsorted(offsets, begin) : np.searchsorted(offsets, end)] - begin
        problem = _spike_problem(step, neuron, starts, header["num_steps"], header["num_neurons"], previous)
        if problem:
            raise SpikeFileError(f"{path} is damaged: {problem}")
        previous = int(step[-1]) * header["num_neurons"] + int(neuron[-1])
