"""Small synthetic datasets and their spike files, for the spike file tests (no MNIST)."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from spike_encode import LatencyEncode
from spike_encode.data import encode_dataset


def images(count: int, shape: tuple[int, ...] = (1, 8, 8), seed: int = 0) -> list[tuple[torch.Tensor, int]]:
    """``count`` random uint8 images of ``shape`` with integer labels, as ``(image, label)``."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(1, 256, (count, *shape), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (count,), generator=g)
    return [(pixels[i], int(labels[i])) for i in range(count)]


def encoded(path: Path, items: list, encoder: LatencyEncode | None = None, **kwargs: Any) -> Path:
    """``items`` encoded to ``path`` (torch engine unless ``encoder`` is given)."""
    encoder = encoder or LatencyEncode(backend="torch")
    return encode_dataset(items, encoder, path, progress=False, batch_size=kwargs.pop("batch_size", 7), **kwargs)


def container(data: bytes) -> tuple[dict, bytes]:
    """A spike file's container header (parsed) and the bytes after it."""
    length = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def rebuilt(table: dict, rest: bytes) -> bytes:
    """A container with header ``table`` and data ``rest``; checksums are left as they were."""
    text = json.dumps(table, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + rest


def edit_header(data: bytes, edit: Callable[[dict], None]) -> bytes:
    """The file with its JSON header changed by ``edit`` (in place), checksums untouched."""
    table, rest = container(data)
    header = json.loads(table["__metadata__"]["header"])
    edit(header)
    table["__metadata__"]["header"] = json.dumps(header, sort_keys=True)
    return rebuilt(table, rest)


def sealed(table: dict, rest: bytes) -> bytes:
    """A container with header ``table`` and data ``rest`` whose two checksums are computed
    as the format says (BLAKE2b-256 of the bytes before the arrays, then of the whole file,
    both with each checksum written as zeros): a forged file that passes them."""
    metadata = table["__metadata__"]
    metadata["header_checksum"] = metadata["checksum"] = "blake2b:" + "0" * 64
    hasher = hashlib.blake2b(rebuilt(table, b""), digest_size=32)
    metadata["header_checksum"] = "blake2b:" + hasher.hexdigest()
    hasher.update(rest)
    metadata["checksum"] = "blake2b:" + hasher.hexdigest()
    return rebuilt(table, rest)


def forged(data: bytes, edit: Callable[[dict], None]) -> bytes:
    """The file with its JSON header changed by ``edit`` and its checksums recomputed."""
    table, rest = container(edit_header(data, edit))
    return sealed(table, rest)
