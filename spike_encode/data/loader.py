"""``SpikeLoader``: a DataLoader whose workers load images and whose main process encodes them."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from ..errors import ImageError
from .collation import Key, _encoder_device, collate_images, image_key_of, replace_field

__all__ = ["CPU_PREFETCH_FACTOR", "SpikeLoader"]

CPU_PREFETCH_FACTOR = 4
"""Batches each worker loads ahead by default while the main process encodes on the CPU."""


class SpikeLoader(DataLoader):
    """A ``DataLoader`` of spike batches: images loaded by workers, encoded whole.

    Workers (CPU) load and decode the items, such as ``(image, target)``, ``(image, label,
    mask)`` or ``{"image": ..., "label": ...}``, and stack them with ``collate_fn`` (default
    :func:`~spike_encode.data.collate_images`, which keeps uint8 images uint8 and finds the
    image as torchvision v2 does, or by ``image_key``). The main process moves each image
    batch to the encoder's device (``non_blocking`` with ``pin_memory``) and calls
    ``encoder`` on the whole batch, while the workers already prefetch the next batches:
    loading overlaps encoding, and GPU work never happens inside a worker. The batch comes
    out in the items' shape with spikes in place of the images, e.g. ``(spikes, targets)``;
    its other tensors move to the same device.

    Each batch carries its dataset indices from the worker that loaded it, so errors name the
    right item whatever failed before: an image the encoder refuses raises its
    :class:`~spike_encode.ImageError` naming the **dataset index**; an exception of the
    dataset (or of ``collate_fn``) is raised again with its dataset index (or the batch's
    indices) added, keeping its type when the type can be rebuilt from the message alone,
    else as a ``RuntimeError`` chained to the original (PyTorch's rule for exceptions from
    workers, which then applies on top).

    On the CPU, the encoding shares the cores with the workers, and PyTorch's intra-op
    threads fight the workers for them: on a 2-core machine with 2 workers, torch's default
    2 threads made an MNIST epoch markedly slower, many times slower while other jobs
    loaded the machine (``benchmarks/bench_loader.py --default-threads`` measures it).
    ``encode_threads="auto"`` (the default) therefore encodes with at most
    ``cpu_count - num_workers`` threads (at least 1) when the encoder computes on the CPU
    and ``num_workers > 0``, and restores torch's setting after each batch. The encoding also
    takes a core from one worker now and then; batches come out in order, so the other worker
    would soon wait with its batches done. On the CPU, with workers, SpikeLoader therefore lets
    each worker load up to :data:`CPU_PREFETCH_FACTOR` (4) batches ahead, where PyTorch's
    default is 2: an MNIST epoch with 2 workers on a 2-core machine took 1.09-1.13x a plain
    one in place of 1.14-1.18x (three runs of ``benchmarks/bench_loader.py``), for twice the
    image batches in flight. Pass ``prefetch_factor`` to choose.

    Args:
        dataset: map-style or iterable dataset of items holding one image each; images are
            PIL images, ndarrays or tensors, ``(H, W)`` or ``(C, H, W)``.
        encoder: callable on a ``(B, C, H, W)`` batch, e.g. ``LatencyEncode``; its
            ``device`` attribute (if any, and not ``None``) is where batches go.
        batch_size, shuffle, sampler, batch_sampler, num_workers, collate_fn, pin_memory,
        drop_last, prefetch_factor, **kwargs: as for ``torch.utils.data.DataLoader``, except
            that ``prefetch_factor`` defaults to 4 where the encoder runs on the CPU with
            workers (see above); ``batch_size=None`` (no batching) is refused, since the
            encoder works on batches. A ``collate_fn`` of your own returns a batch whose
            field ``image_key`` (default 0, e.g. the images of ``(images, targets)``) holds
            the ``(B, C, H, W)`` images.
        image_key: the dict key (or tuple position) of the items' image, when the rule above
            does not find it; with your own ``collate_fn``, the batch's field to encode.
        encode_threads: torch intra-op threads while a batch is encoded: ``"auto"`` (see
            above), a positive int, or ``None`` to leave torch's setting alone.

    ``len()``, ``sampler.set_epoch()``, restarting iteration, ``persistent_workers`` and
    ``in_order=False`` behave as for ``DataLoader``; every iteration re-encodes, so random
    augmentation in the dataset's transform gives new spikes each epoch.
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
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        *,
        image_key: Key | None = None,
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
        self._items_shape = collate_fn is None  # the batch mirrors the items: the image is where they hold it
        if collate_fn is None:
            collate_fn = collate_images if image_key is None else functools.partial(collate_images, image_key=image_key)
        self.encoder = encoder
        self.device = _encoder_device(encoder)
        self.image_key = image_key
        self.encode_threads = encode_threads
        if num_workers > 0 and kwargs.get("prefetch_factor") is None and self._encodes_on_cpu():
            kwargs["prefetch_factor"] = CPU_PREFETCH_FACTOR
        super().__init__(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            collate_fn=collate_fn,
            pin_memory=pin_memory,
            drop_last=drop_last,
            **kwargs,
        )
        self._indexed = self._indexed_loader(kwargs)

    def _indexed_loader(self, kwargs: dict[str, Any]) -> DataLoader:
        """The DataLoader that does the loading: this one's sampling and workers, over the
        dataset's items paired with their indices, so each batch brings its own."""
        iterable = isinstance(self.dataset, IterableDataset)
        options = dict(num_workers=self.num_workers, pin_memory=self.pin_memory, **kwargs,
                       collate_fn=_IndexedCollate(self.collate_fn, self.image_key, indexed=not iterable,
                                                  find_image=self._items_shape))
        if iterable:  # no indices to carry: its own iterator decides what comes
            return DataLoader(self.dataset, batch_size=self.batch_size, drop_last=self.drop_last, **options)
        return DataLoader(_IndexedDataset(self.dataset), batch_sampler=self.batch_sampler, **options)

    def __iter__(self) -> "_EncodingIterator":
        return _EncodingIterator(iter(self._indexed), self)

    def encode_batch(self, batch: Any, indices: Sequence[int] | None = None, image_at: Key | None = None) -> Any:
        """Encode one collated batch from the workers on the encoder's device.

        Args:
            batch: ``collate_fn``'s batch, e.g. ``(images, targets)``.
            indices: the batch's dataset indices, named in the error if an image is refused.
            image_at: the batch's field holding the images (default: ``image_key``, else 0).
        """
        if image_at is None:
            image_at = 0 if self.image_key is None else self.image_key
        try:
            return self._encode(batch, image_at)
        except ImageError as err:
            if indices is None:
                raise
            raise ImageError(err.image, err.problem, where=f"dataset index {indices[err.image]}: the image") from err

    def _encode(self, batch: Any, image_at: Key) -> Any:
        images = _field(batch, image_at)
        if self.device is not None:
            non_blocking = self.pin_memory and self.device.type != "cpu"
            batch = _to_device(batch, self.device, non_blocking)
            images = _field(batch, image_at)
        threads, previous = self._threads_for_encoding(), torch.get_num_threads()
        if threads is None or threads == previous:
            return replace_field(batch, image_at, self.encoder(images))
        torch.set_num_threads(threads)
        try:
            return replace_field(batch, image_at, self.encoder(images))
        finally:
            torch.set_num_threads(previous)

    def _threads_for_encoding(self) -> int | None:
        """Intra-op threads for this batch's encoding; ``None``: leave torch's setting."""
        if self.encode_threads != "auto":
            return self.encode_threads
        if not self._encodes_on_cpu() or self.num_workers == 0:
            return None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return min(torch.get_num_threads(), max(1, cores - self.num_workers))

    def _encodes_on_cpu(self) -> bool:
        return self.device is None or self.device.type == "cpu"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(batch_size={self.batch_size}, num_workers={self.num_workers}, "
                f"device={self.device}, encoder={self.encoder!r})")


def _field(batch: Any, at: Key) -> Any:
    try:
        return batch[at]
    except (KeyError, IndexError, TypeError) as err:
        raise TypeError(f"SpikeLoader encodes the batch's field {at!r}, but collate_fn returned a "
                        f"{type(batch).__name__} without it; name the images' field with image_key") from err


def _to_device(value: Any, device: torch.device, non_blocking: bool) -> Any:
    """``value`` with every tensor in it (in dicts, tuples and lists) on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, Mapping):
        return {k: _to_device(v, device, non_blocking) for k, v in value.items()}
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        return type(value)(_to_device(v, device, non_blocking) for v in value)
    return value


def rebuilt_with(err: Exception, message: str) -> Exception:
    """An exception to raise ``from err`` that says ``message``: of ``err``'s own type when
    that type rebuilds from the message alone (as PyTorch's ``ExceptionWrapper`` checks), else
    a ``RuntimeError`` naming the type (a ``UnicodeDecodeError`` or ``json.JSONDecodeError``
    needs more arguments). A ``StopIteration`` (or ``StopAsyncIteration``) is never kept:
    raised again from the loader's ``__next__`` it would end the epoch early without a
    word, so it becomes a ``RuntimeError``, as Python does for one escaping a generator."""
    rebuilt = None
    if not isinstance(err, (StopIteration, StopAsyncIteration)):
        try:
            rebuilt = type(err)(message)
        except Exception:  # noqa: BLE001 - any constructor failure means: cannot rebuild
            pass
    if type(rebuilt) is type(err) and rebuilt.args == (message,):
        return rebuilt
    return RuntimeError(f"{type(err).__name__}: {message}")


class _IndexedDataset(Dataset):
    """A map-style dataset's items as ``(index, item)``; its exceptions name the index."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        try:
            return index, self.dataset[index]
        except Exception as err:
            raise rebuilt_with(err, f"dataset index {index}: {err}") from err

    def __getitems__(self, indices: list[int]) -> list[tuple[int, Any]]:
        getitems = getattr(self.dataset, "__getitems__", None)
        if not getitems:
            return [self[i] for i in indices]
        try:  # the dataset's own batched fetch (e.g. Hugging Face datasets, Subset)
            items = list(getitems(indices))
        except Exception as err:
            for index in indices:  # one by one, to name the item that fails alone
                self[index]
            raise rebuilt_with(err, f"dataset indices {list(indices)}: {err}") from err
        if len(items) != len(indices):
            raise ValueError(f"the dataset's __getitems__ returned {len(items)} items for the "
                             f"{len(indices)} dataset indices {list(indices)}")
        return list(zip(indices, items))


class _Loaded(NamedTuple):
    """One collated batch with its dataset indices (``None`` for iterable datasets) and the
    field where its items held their image (``None`` if unknown)."""

    indices: list[int] | None
    image_at: Key | None
    batch: Any


class _IndexedCollate:
    """``collate_fn`` on the items alone; the batch leaves the worker with its indices and,
    with ``find_image``, where its items held their image (as ``collate_images`` finds it)."""

    def __init__(self, collate_fn: Callable[[list[Any]], Any], image_key: Key | None, indexed: bool,
                 find_image: bool) -> None:
        self.collate_fn, self.image_key, self.indexed, self.find_image = collate_fn, image_key, indexed, find_image

    def __call__(self, loaded: list[Any]) -> _Loaded:
        indices, items = None, loaded
        if self.indexed:
            indices, items = [i for i, _ in loaded], [item for _, item in loaded]
        try:
            batch = self.collate_fn(items)
        except Exception as err:
            if indices is not None:
                raise rebuilt_with(err, f"{err}\n(in the batch of dataset indices {indices})") from err
            if isinstance(err, (StopIteration, StopAsyncIteration)):  # not the end of an iterable dataset
                raise rebuilt_with(err, f"collate_fn raised {err!r}") from err
            raise
        return _Loaded(indices, image_key_of(items[0], self.image_key) if self.find_image else None, batch)


class _EncodingIterator:
    """The loading DataLoader's iterator, with each batch encoded as it is taken."""

    def __init__(self, batches: Iterator[_Loaded], loader: SpikeLoader) -> None:
        self._batches = batches
        self._loader = loader

    def __iter__(self) -> "_EncodingIterator":
        return self

    def __next__(self) -> Any:
        loaded = next(self._batches)
        try:
            return self._loader.encode_batch(loaded.batch, loaded.indices, loaded.image_at)
        except (StopIteration, StopAsyncIteration) as err:  # from the encoder: not the epoch's end
            raise rebuilt_with(err, f"the encoder raised {err!r}") from err

    def __len__(self) -> int:
        return len(self._batches)
