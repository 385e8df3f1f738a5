"""The spike file: a safetensors container of one dataset's spikes, checked whole on open.

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

The safetensors metadata holds the format name and version, a JSON header (encoder
parameters and their digest, ``num_samples``, ``num_steps``, ``num_neurons``, the neurons'
``image_shape`` ``[C, H, W]`` (or null), engine, spike_encode version) and a BLAKE2b checksum of the arrays. safetensors parses the container
(a JSON header and raw little-endian arrays: nothing is executed or unpickled); this module
checks everything else before any spike is returned: dtypes against an allow-list, sizes
against the header, index ranges and order, the parameters' digest and, unless told the file
is trusted, the checksum. Any problem raises :class:`SpikeFileError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpikeFileError
from ..params import EncoderParams

__all__ = ["FORMAT", "VERSION", "SpikeFileError", "read_spike_file", "spike_file_bytes"]

FORMAT = "spike_encode.SpikeDataset"
VERSION = 2
_OLD_MAGIC = b"SPKENC01"  # version 1: a hand-written container, no longer read
_ALLOWED = {  # name -> safetensors dtypes it may have
    "offsets": {"I64"},
    "step": {"U8", "U16", "U32"},
    "neuron": {"U8", "U16", "U32"},
    "targets": {"I64"},
}
_NUMPY = {"U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "I64": np.int64}


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.blake2b(digest_size=32)
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return "blake2b:" + digest.hexdigest()


def spike_file_bytes(arrays: Mapping[str, np.ndarray], header: Mapping[str, Any]) -> bytes:
    """The whole file for ``arrays`` (the four above) and ``header`` (JSON-ready)."""
    from safetensors.numpy import save

    arrays = {name: np.ascontiguousarray(arrays[name]) for name in _ALLOWED}
    metadata = {"format": FORMAT, "version": str(VERSION), "header": json.dumps(dict(header)),
                "checksum": _checksum(arrays)}
    return save(arrays, metadata=metadata)


def read_spike_file(path: str | os.PathLike[str], *, mmap: bool = True,
                    verify: bool = True) -> tuple[dict[str, Any], EncoderParams, dict[str, np.ndarray]]:
    """Open and check a spike file: its JSON header, parameters and the four arrays.

    Args:
        path: the file.
        mmap: memory-map the arrays (read-only) instead of reading them into memory.
        verify: check the arrays' checksum (reads the whole file once); skip only for
            files you trust. Sizes, dtypes, index ranges and order are checked either way.

    Raises:
        SpikeFileError: naming the file and what is wrong with it.
        OSError: the file cannot be read at all (missing, a folder, no permission).
    """
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(len(_OLD_MAGIC)) == _OLD_MAGIC:
            raise SpikeFileError(f"{path} is a version-1 spike file, which this spike_encode no longer "
                                 "reads; encode the dataset again with encode_dataset")
    try:
        metadata, arrays = _open_container(path, mmap)
    except SpikeFileError:
        raise
    except Exception as err:  # safetensors raises its own error type for a damaged container
        raise SpikeFileError(f"{path} is not a valid spike file ({type(err).__name__}: {err})") from err
    if metadata.get("format") != FORMAT:
        raise SpikeFileError(f"{path} is not a spike_encode spike file (format {metadata.get('format')!r})")
    if metadata.get("version") != str(VERSION):
        raise SpikeFileError(f"{path} has spike file version {metadata.get('version')!r}; "
                             f"this spike_encode reads version {VERSION}")
    header, params = _header(path, metadata)
    _check_arrays(path, header, arrays)
    if verify and _checksum(arrays) != metadata.get("checksum"):
        raise SpikeFileError(f"{path} is damaged: its arrays do not match their checksum")
    return header, params, arrays


def _open_container(path: Path, mmap: bool):
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:  # parses and checks the container
        metadata = f.metadata() or {}
        names = set(f.keys())
        if names != set(_ALLOWED):
            raise SpikeFileError(f"{path} holds arrays {sorted(names)}, expected {sorted(_ALLOWED)}")
        copies = None if mmap else {name: f.get_tensor(name) for name in _ALLOWED}
    with open(path, "rb") as raw:  # the same header safetensors has just checked: offsets for memmap
        length = int.from_bytes(raw.read(8), "little")
        specs = json.loads(raw.read(length))
    start = 8 + length
    arrays = {}
    for name in _ALLOWED:
        spec = specs[name]
        if spec["dtype"] not in _ALLOWED[name] or len(spec["shape"]) != 1:
            raise SpikeFileError(f"{path}: array {name!r} has dtype {spec['dtype']} and shape {spec['shape']}; "
                                 f"expected one of {sorted(_ALLOWED[name])}, 1-d")
        dtype, (count,) = np.dtype(_NUMPY[spec["dtype"]]).newbyteorder("<"), spec["shape"]
        if copies is not None:
            arrays[name] = np.asarray(copies[name], dtype=dtype)
        elif count == 0:
            arrays[name] = np.empty(0, dtype)
        else:
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=start + spec["data_offsets"][0], shape=(count,))
    return metadata, arrays


def _header(path: Path, metadata: Mapping[str, str]) -> tuple[dict[str, Any], EncoderParams]:
    try:
        header = json.loads(metadata["header"])
        params = EncoderParams.from_dict(header["params"])
        for key in ("num_samples", "num_steps", "num_neurons"):
            value = header[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "num_samples" else 1):
                raise ValueError(f"{key} is {value!r}")
        shape = header.get("image_shape")
        if shape is not None and not (isinstance(shape, list) and len(shape) == 3
                                      and all(type(x) is int and x > 0 for x in shape)
                                      and shape[0] * shape[1] * shape[2] == header["num_neurons"]):
            raise ValueError(f"image_shape is {shape!r} for {header['num_neurons']} neurons")
    except (KeyError, TypeError, ValueError) as err:
        raise SpikeFileError(f"{path} has a damaged header ({type(err).__name__}: {err})") from err
    if params.digest() != header.get("digest"):
        raise SpikeFileError(f"{path}: stored digest {header.get('digest')} does not match its stored "
                             f"parameters (digest {params.digest()}); the file is damaged")
    if header["num_steps"] != params.num_steps:
        raise SpikeFileError(f"{path}: header says {header['num_steps']} steps, its parameters give "
                             f"{params.num_steps}; the file is damaged")
    return header, params


def _check_arrays(path: Path, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    n, T, N = header["num_samples"], header["num_steps"], header["num_neurons"]
    offsets, step, neuron, targets = (arrays[k] for k in ("offsets", "step", "neuron", "targets"))

    def fail(what: str) -> None:
        raise SpikeFileError(f"{path} is damaged: {what}")

    if len(offsets) != n + 1 or len(targets) != n:
        fail(f"{len(offsets)} offsets and {len(targets)} targets for {n} samples")
    if len(step) != len(neuron) or offsets[0] != 0 or offsets[-1] != len(step):
        fail(f"offsets run from {offsets[0]} to {offsets[-1]} over {len(step)} steps and {len(neuron)} neurons")
    if n and bool((np.diff(offsets) < 0).any()):
        fail("offsets decrease")
    if len(step) and int(step.max()) >= T:
        fail(f"a spike at step {int(step.max())} of a {T}-step window")
    if len(neuron) and int(neuron.max()) >= N:
        fail(f"a spike of neuron {int(neuron.max())} of {N}")
    key = step.astype(np.int64) * N + neuron.astype(np.int64)
    rising = np.diff(key) > 0
    rising[offsets[1:-1][(offsets[1:-1] > 0) & (offsets[1:-1] < len(key))] - 1] = True  # sample boundaries
    if not bool(rising.all()):
        fail("a sample's spikes are not sorted by (step, neuron) or repeat")
