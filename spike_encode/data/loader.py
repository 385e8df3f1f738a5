"""``SpikeLoader``: a DataLoader whose workers load images and whose main process encodes them."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from ..inputs import ImageError
from .collation import _encoder_device, collate_images

__all__ = ["SpikeLoader"]


class SpikeLoader(DataLoader):
    """A ``DataLoader`` of ``(spikes, targets)``: images loaded by workers, encoded whole.

    Workers (CPU) load and decode the ``(image, target)`` items and stack them with
    ``collate_fn`` (default :func:`~spike_encode.data.collate_images`, which keeps uint8
    images uint8). The main process moves each image batch to the encoder's device
    (``non_blocking`` with ``pin_memory``) and calls ``encoder`` on the whole batch, while
    the workers already prefetch the next batches: loading overlaps encoding, and GPU work
    never happens inside a worker. Targets move to the same device.

    On the CPU, the encoding shares the cores with the workers, and PyTorch's intra-op
    threads fight the workers for them: on a 2-core machine with 2 workers, torch's default
    2 threads made an MNIST epoch markedly slower, many times slower while other jobs
    loaded the machine (``benchmarks/bench_loader.py --default-threads`` measures it).
    ``encode_threads="auto"`` (the default) therefore encodes with at most
    ``cpu_count - num_workers`` threads (at least 1) when the encoder computes on the CPU
    and ``num_workers > 0``, and restores torch's setting after each batch.

    Args:
        dataset: map-style or iterable dataset of ``(image, target)``; images are PIL images,
            ndarrays or tensors, ``(H, W)`` or ``(C, H, W)``.
        encoder: callable on a ``(B, C, H, W)`` batch, e.g. ``LatencyEncode``; its
            ``device`` attribute (if any, and not ``None``) is where batches go.
        batch_size, shuffle, sampler, batch_sampler, num_workers, collate_fn, pin_memory,
        drop_last, **kwargs: as for ``torch.utils.data.DataLoader``; ``batch_size=None``
            (no batching) is refused, since the encoder works on batches.
        encode_threads: torch intra-op threads while a batch is encoded: ``"auto"`` (see
            above), a positive int, or ``None`` to leave torch's setting alone.

    ``len()``, ``sampler.set_epoch()``, restarting iteration and ``persistent_workers``
    behave as for ``DataLoader``; every iteration re-encodes, so random augmentation in the
    dataset's transform gives new spikes each epoch.
    """

    def __init__(
        self,
        dataset: Dataset,
        encoder: Callable[[torch.Tensor], Any],
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Sampler | None = None,
        batch_sampler: Sampler | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], tuple[torch.Tensor, Any]] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        *,
        encode_threads: int | str | None = "auto",
        **kwargs: Any,
    ) -> None:
        if not callable(encoder):
            raise TypeError(f"encoder must be callable (e.g. LatencyEncode), got {type(encoder).__name__}")
        if batch_size is None:
            raise ValueError("batch_size=None (no batching) is not supported: SpikeLoader encodes whole batches")
        if not (encode_threads is None or encode_threads == "auto"
                or (isinstance(encode_threads, int) and not isinstance(encode_threads, bool) and encode_threads >= 1)):
            raise ValueError(f"encode_threads must be 'auto', None or an int >= 1, got {encode_threads!r}")
        self.encoder = encoder
        self._drawn: deque = deque()  # dataset indices of the batches drawn, oldest first
        self.device = _encoder_device(encoder)
        self.encode_threads = encode_threads
        super().__init__(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            collate_fn=collate_images if collate_fn is None else collate_fn,
            pin_memory=pin_memory,
            drop_last=drop_last,
            **kwargs,
        )

    @property
    def _index_sampler(self):  # DataLoader's iterators draw each batch's dataset indices here
        return _RecordedIndices(super()._index_sampler, self._drawn)

    def __iter__(self) -> "_EncodingIterator":
        batches = super().__iter__()
        in_order = getattr(self, "in_order", True) and not isinstance(self.dataset, IterableDataset)
        return _EncodingIterator(batches, self.encode_batch, self._drawn if in_order else None)

    def encode_batch(self, batch: tuple[torch.Tensor, Any], indices: list[int] | None = None) -> tuple[Any, Any]:
        """Encode one ``(images, targets)`` batch from the workers on the encoder's device.

        ``indices``: the batch's dataset indices, named in the error if an image is refused.
        """
        try:
            return self._encode(batch)
        except ImageError as err:
            if indices is None:
                raise
            raise ImageError(err.image, err.problem, where=f"dataset index {indices[err.image]}: the image") from err

    def _encode(self, batch: tuple[torch.Tensor, Any]) -> tuple[Any, Any]:
        images, targets = batch
        if self.device is not None:
            non_blocking = self.pin_memory and self.device.type != "cpu"
            images = images.to(self.device, non_blocking=non_blocking)
            if isinstance(targets, torch.Tensor):
                targets = targets.to(self.device, non_blocking=non_blocking)
        threads, previous = self._threads_for_encoding(), torch.get_num_threads()
        if threads is None or threads == previous:
            return self.encoder(images), targets
        torch.set_num_threads(threads)
        try:
            return self.encoder(images), targets
        finally:
            torch.set_num_threads(previous)

    def _threads_for_encoding(self) -> int | None:
        """Intra-op threads for this batch's encoding; ``None``: leave torch's setting."""
        if self.encode_threads != "auto":
            return self.encode_threads
        on_cpu = self.device is None or self.device.type == "cpu"
        if not on_cpu or self.num_workers == 0:
            return None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return min(torch.get_num_threads(), max(1, cores - self.num_workers))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(batch_size={self.batch_size}, num_workers={self.num_workers}, "
                f"device={self.device}, encoder={self.encoder!r})")


class _RecordedIndices:
    """A DataLoader's index sampler that also queues each batch's indices as it is drawn."""

    def __init__(self, sampler: Iterable[Any], drawn: deque) -> None:
        self._sampler, self._drawn = sampler, drawn

    def __iter__(self) -> Iterator[Any]:
        self._drawn.clear()
        for indices in self._sampler:
            self._drawn.append(indices)
            yield indices

    def __len__(self) -> int:
        return len(self._sampler)


class _EncodingIterator:
    """The DataLoader's iterator, with each batch encoded as it is taken. Batches come in the
    order their indices were drawn (``in_order``), so the oldest queued indices are theirs."""

    def __init__(self, batches: Iterator[Any], encode: Callable[..., tuple[Any, Any]],
                 drawn: deque | None) -> None:
        self._batches = batches
        self._encode = encode
        self._drawn = drawn

    def __iter__(self) -> "_EncodingIterator":
        return self

    def __next__(self) -> tuple[Any, Any]:
        try:
            batch = next(self._batches)
        except (ValueError, TypeError) as err:  # e.g. collate_images refusing an item, in a worker
            if not self._drawn:
                raise
            raise type(err)(f"{err}\n(in the batch of dataset indices {list(self._drawn[0])})") from err
        indices = self._drawn.popleft() if self._drawn else None
        return self._encode(batch, list(indices) if indices is not None else None)

    def __len__(self) -> int:
        return len(self._batches)
