"""Collate functions for DataLoaders of images and of spikes.

- :func:`collate_images`: ``(image, target)`` items to a ``(B, C, H, W)`` image batch, dtype
  kept (uint8 stays uint8, so the encoder's currents and spikes stay exact).
- :class:`EncodeCollate`: the same, then the whole batch through an encoder, for users who
  keep a plain ``DataLoader``.
- :class:`CompactSpikes`, :class:`ToCompact`, :func:`collate_spikes`: when ``LatencyEncode``
  runs inside a dataset's ``transform``, each item becomes dense (step, neuron) index
  tensors that any collate and pipe handle (PyTorch's default collate refuses sparse items,
  pytorch/pytorch#20248 and #106837), and :func:`collate_spikes` rebuilds one ``(B, T, N)``
  sparse batch from them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info

from ..events import SpikeEvents
from ..formats import spike_events_to_sparse
from ..inputs import to_tensor

__all__ = ["CompactSpikes", "EncodeCollate", "ToCompact", "collate_images", "collate_spikes"]


def _split_items(batch: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    if len(batch) == 0:
        raise ValueError("cannot collate an empty batch")
    firsts, targets = [], []
    for i, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(
                f"dataset items must be (data, target) pairs; item {i} of the batch is "
                f"{type(item).__name__}" + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
            )
        firsts.append(item[0])
        targets.append(item[1])
    return firsts, targets


def _image_tensor(image: Any, index: int) -> torch.Tensor:
    tensor = to_tensor(image)  # PIL: (H, W) or (C, H, W); dtype kept
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3:
        raise ValueError(
            f"image {index} of the batch has shape {tuple(tensor.shape)}; items must be one "
            "image, (H, W) or (C, H, W)"
        )
    return tensor


def collate_images(batch: Sequence[tuple[Any, Any]]) -> tuple[torch.Tensor, Any]:
    """Stack ``(image, target)`` items into ``(images, targets)``.

    Images may be PIL images, ndarrays or tensors of shape ``(H, W)`` or ``(C, H, W)``;
    the batch is ``(B, C, H, W)`` (always 4-D, so a last batch of one image is still a
    batch) in the items' dtype. Targets are collated by ``default_collate`` (ints give an
    int64 tensor). Inside a worker the batch is built in shared memory, as PyTorch's own
    collate does.

    Raises:
        TypeError: an item that is not a pair, or an unsupported image type.
        ValueError: an empty batch, or images whose shapes or dtypes differ.
    """
    images, targets = _split_items(batch)
    tensors = [_image_tensor(image, i) for i, image in enumerate(images)]
    first = tensors[0]
    for i, tensor in enumerate(tensors):
        if tensor.shape != first.shape:
            fix = ("resize them first, e.g. transforms.v2.Resize((H, W)) (image_dataset(size=...), "
                   "spike-encode --size H W)" if tensor.shape[1:] != first.shape[1:] else
                   "convert them to one mode first, e.g. PIL's image.convert('RGB')")
            raise ValueError(f"images of one batch must share one shape: image 0 is {tuple(first.shape)}, "
                             f"image {i} is {tuple(tensor.shape)} (C, H, W); {fix}")
        if tensor.dtype != first.dtype:
            raise ValueError(
                f"images of one batch must share shape and dtype: image 0 is "
                f"{tuple(first.shape)} {first.dtype}, image {i} is {tuple(tensor.shape)} {tensor.dtype}"
            )
    return default_collate(tensors), default_collate(targets)


def _encoder_device(encoder: Any) -> torch.device | None:
    device = getattr(encoder, "device", None)
    return None if device is None else torch.device(device)


class EncodeCollate:
    """``collate_fn`` for a plain ``DataLoader``: :func:`collate_images`, then ``encoder`` on
    the whole image batch; yields ``(spikes, targets)``.

    With ``num_workers > 0`` the encoding runs in the worker processes, so it must be a CPU
    encoder; to encode on a GPU use :class:`~spike_encode.data.SpikeLoader`, which encodes
    in the main process.
    """

    def __init__(self, encoder: Callable[[torch.Tensor], Any]) -> None:
        if not callable(encoder):
            raise TypeError(f"encoder must be callable (e.g. LatencyEncode), got {type(encoder).__name__}")
        self.encoder = encoder

    def __call__(self, batch: Sequence[tuple[Any, Any]]) -> tuple[Any, Any]:
        device = _encoder_device(self.encoder)
        if get_worker_info() is not None and device is not None and device.type != "cpu":
            raise RuntimeError(
                f"EncodeCollate runs in DataLoader worker processes here, but the encoder's "
                f"device is {device}; GPU work does not belong in workers: use "
                "spike_encode.data.SpikeLoader (encodes in the main process) or num_workers=0"
            )
        images, targets = collate_images(batch)
        return self.encoder(images), targets

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.encoder!r})"


def _index_dtype(size: int) -> torch.dtype:
    """The smallest signed integer dtype holding indices ``0 .. size - 1``."""
    for dtype in (torch.int16, torch.int32):
        if size <= torch.iinfo(dtype).max + 1:
            return dtype
    return torch.int64


class CompactSpikes(NamedTuple):
    """One image's spikes as dense index tensors: safe to pickle, pipe and collate.

    Attributes:
        step: ``(S,)`` time step of each spike (int16, or int32 for windows over 32,768 steps).
        neuron: ``(S,)`` neuron of each spike (int16, or int32 for more than 32,768 neurons).
        num_steps: ``T``, steps in the window.
        num_neurons: ``N``, neurons per image.

    Spikes are sorted by (step, neuron), the order of a coalesced sparse raster.
    """

    step: torch.Tensor
    neuron: torch.Tensor
    num_steps: int
    num_neurons: int

    @classmethod
    def from_sparse(cls, spikes: torch.Tensor) -> "CompactSpikes":
        """From one image's ``(T, N)`` sparse raster (``LatencyEncode`` with ``output="sparse"``)."""
        if not isinstance(spikes, torch.Tensor) or not spikes.is_sparse:
            raise TypeError(
                "CompactSpikes needs one image's sparse (T, N) spikes (LatencyEncode with "
                f"output='sparse'), got {type(spikes).__name__}"
                + (f" with layout {spikes.layout}" if isinstance(spikes, torch.Tensor) else "")
            )
        if spikes.ndim != 2:
            raise ValueError(
                f"CompactSpikes holds one image's (T, N) spikes, got shape {tuple(spikes.shape)}; "
                "apply it per image (in a dataset transform), not to a batch"
            )
        num_steps, num_neurons = spikes.shape
        step, neuron = spikes.coalesce().indices().cpu()
        return cls(step.to(_index_dtype(num_steps)), neuron.to(_index_dtype(num_neurons)), num_steps, num_neurons)

    def to_sparse(self) -> torch.Tensor:
        """The ``(T, N)`` sparse raster again, exactly as ``LatencyEncode`` returned it."""
        return spike_events_to_sparse(_batch_events([self]), batched=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(num_steps, num_neurons)``."""
        return (self.num_steps, self.num_neurons)


class ToCompact:
    """Transform: ``LatencyEncode``'s ``(T, N)`` sparse output to :class:`CompactSpikes`.

    Put it right after ``LatencyEncode`` in a dataset's ``transform`` and load with
    ``collate_fn=collate_spikes``; this works with any ``num_workers``::

        transform = Compose([LatencyEncode(), ToCompact()])
    """

    def __call__(self, spikes: torch.Tensor) -> CompactSpikes:
        return CompactSpikes.from_sparse(spikes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def collate_spikes(batch: Sequence[tuple[Any, Any]]) -> tuple[torch.Tensor, Any]:
    """``(spikes, target)`` items to ``(spikes, targets)`` with one ``(B, T, N)`` sparse batch.

    Each item's spikes are :class:`CompactSpikes` or a ``(T, N)`` sparse tensor (as
    :class:`~spike_encode.data.SpikeDataset` gives); targets are collated by
    ``default_collate``. The batch is coalesced: its indices are sorted (sample, step, neuron).
    Run in a worker, the finished batch crosses the pipe through PyTorch's own pickling of
    sparse tensors (tested with torch 2.14; older releases without it cannot send it).

    Raises:
        TypeError: an item whose spikes are neither form.
        ValueError: items whose ``(T, N)`` differ.
    """
    spikes, targets = _split_items(batch)
    compact = []
    for i, item in enumerate(spikes):
        if not isinstance(item, CompactSpikes):
            if not (isinstance(item, torch.Tensor) and item.is_sparse):
                raise TypeError(
                    f"collate_spikes needs CompactSpikes or sparse (T, N) tensors; item {i} of "
                    f"the batch holds {type(item).__name__}"
                    + (f" with layout {item.layout}" if isinstance(item, torch.Tensor) else "")
                    + " (for images use collate_images)"
                )
            item = CompactSpikes.from_sparse(item)
        if compact and item.shape != compact[0].shape:
            raise ValueError(
                f"spikes of one batch must share (T, N): item 0 is {compact[0].shape}, item {i} is {item.shape}"
            )
        compact.append(item)
    return spike_events_to_sparse(_batch_events(compact)), default_collate(targets)


def _batch_events(compact: Sequence[CompactSpikes]) -> SpikeEvents:
    """Concatenate same-shape images' spikes; sorted (sample, step, neuron) as each item is."""
    counts = [len(c.step) for c in compact]
    sample = torch.from_numpy(np.repeat(np.arange(len(compact), dtype=np.int64), counts))  # numpy's is faster
    step = torch.cat([c.step for c in compact]).to(torch.int64)
    neuron = torch.cat([c.neuron for c in compact]).to(torch.int64)
    return SpikeEvents(sample, step, neuron, len(compact), compact[0].num_steps, compact[0].num_neurons)
