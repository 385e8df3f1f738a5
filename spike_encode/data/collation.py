"""Collate functions for DataLoaders of images and of spikes.

- :func:`collate_images`: items such as ``(image, target)``, ``(image, label, mask)`` or
  ``{"image": ..., "label": ...}`` to a batch of the same shape with a ``(B, C, H, W)``
  image batch, dtype kept (uint8 stays uint8, so the encoder's currents and spikes stay exact).
- :class:`EncodeCollate`: the same, then the whole image batch through an encoder, for
  users who keep a plain ``DataLoader``.
- :class:`CompactSpikes`, :class:`ToCompact`, :func:`collate_spikes`: when ``LatencyEncode``
  runs inside a dataset's ``transform``, each item becomes dense (step, neuron) index
  tensors that any collate and pipe handle (PyTorch's default collate refuses sparse items,
  pytorch/pytorch#20248 and #106837), and :func:`collate_spikes` rebuilds one ``(B, T, N)``
  sparse batch from them (or stacks dense items, time-first if asked).

Where the image is in an item (torchvision v2's rule): the first PIL image or
``tv_tensors.Image``, else the first plain tensor or ndarray, in the item's order (a dict's
insertion order); ``image_key`` names it instead (a dict key, or a tuple position). Every
other field is batched by ``default_collate``, except where it cannot stack the values
(tensors or arrays whose shapes differ, such as per-image ``tv_tensors.BoundingBoxes``,
``None``, or types it does not know): that field is a list of the items' values.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info

from ..errors import ItemKeyError
from ..events import SpikeEvents
from ..formats import spike_indices
from ..outputs.sparse import spike_events_to_sparse
from ..inputs import IMAGE_RULES, to_tensor

__all__ = ["CompactSpikes", "EncodeCollate", "ToCompact", "collate_images", "collate_spikes"]

Key = Hashable  # a dict item's key, or a tuple item's position


def _fields(item: Any, i: int) -> list[tuple[Key, Any]]:
    """``(key, value)`` of an item's fields: a dict's items, or a tuple's positions."""
    if isinstance(item, Mapping):
        return list(item.items())
    if isinstance(item, (tuple, list)) and not isinstance(item, CompactSpikes):
        return list(enumerate(item))
    raise TypeError(f"dataset items must be tuples such as (image, target) or dicts such as "
                    f"{{'image': ..., 'label': ...}}; item {i} of the batch is {type(item).__name__}")


def _describe(fields: list[tuple[Key, Any]], mapping: bool) -> str:
    kinds = ", ".join((f"{k!r}: " if mapping else "") + type(v).__name__ for k, v in fields)
    return f"{{{kinds}}}" if mapping else f"({kinds})"


def _is_sparse_spikes(value: Any) -> bool:
    return isinstance(value, CompactSpikes) or (isinstance(value, torch.Tensor) and value.layout != torch.strided)


def _is_dense_spikes(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim >= 2


_SPIKES_RULES = (_is_sparse_spikes, _is_dense_spikes)
_WANTED = {"image": "a PIL image, tv_tensors.Image, tensor or ndarray",
           "spikes": "CompactSpikes, a sparse tensor, or a dense tensor of 2 or more dimensions"}


def _has(item: Any, key: Key) -> bool:
    if isinstance(item, Mapping):
        return key in item
    return isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(item)


def _locate(item: Any, i: int, key: Key | None, rules: Sequence[Callable[[Any], bool]], what: str) -> Key:
    """Where ``item`` holds its ``what``: ``key`` if given, else the first field that passes
    the first rule any field passes."""
    fields = _fields(item, i)
    mapping = isinstance(item, Mapping)
    if key is not None:
        if _has(item, key):
            return key
        seen = f"its keys are {list(item)}" if mapping else f"it is a {type(item).__name__} of {len(item)}"
        raise ItemKeyError(f"{what}_key={key!r} is not in item {i} of the batch: {seen}")
    for rule in rules:
        for k, value in fields:
            if rule(value):
                return k
    raise TypeError(f"item {i} of the batch holds no {what} ({_WANTED[what]}): it is "
                    f"{_describe(fields, mapping)}; name the field with {what}_key=")


def image_key_of(item: Any, image_key: Key | None = None) -> Key:
    """Where one dataset item holds its image: ``image_key`` if given, else torchvision v2's
    rule (the first PIL image or ``tv_tensors.Image``, else the first plain tensor or ndarray).

    Raises:
        TypeError: the item is not a tuple or dict, or holds no image.
        KeyError: ``image_key`` is not in the item (naming the keys it has).
    """
    return _locate(item, 0, image_key, IMAGE_RULES, "image")


def _field_values(batch: Sequence[Any], what: str, key: Key | None,
                  rules: Sequence[Callable[[Any], bool]]) -> tuple[Key, list[Any]]:
    """The position of ``what`` in the batch's items (the same in each) and its values."""
    if len(batch) == 0:
        raise ValueError("cannot collate an empty batch")
    where = [_locate(item, i, key, rules, what) for i, item in enumerate(batch)]
    for i, k in enumerate(where):
        if k != where[0]:
            raise ValueError(f"the items of one batch must hold their {what} in one place: item 0 at "
                             f"{where[0]!r}, item {i} at {k!r}")
    return where[0], [item[where[0]] for item in batch]


def _collate_field(values: list[Any]) -> Any:
    """``default_collate`` of one field's values, or the list of them where it cannot stack
    them: tensors or arrays whose shapes differ, ``None``, types it does not know. Dicts are
    batched key by key."""
    first = values[0]
    if isinstance(first, Mapping) and all(isinstance(v, Mapping) and v.keys() == first.keys() for v in values):
        return {k: _collate_field([v[k] for v in values]) for k in first}
    if all(isinstance(v, (torch.Tensor, np.ndarray)) for v in values):
        if any(v.shape != first.shape for v in values):
            return list(values)
    elif any(isinstance(v, (torch.Tensor, np.ndarray)) for v in values):
        return list(values)
    try:
        return default_collate(values)
    except TypeError:  # None, strings arrays, objects default_collate does not know
        return list(values)


def _rebuild(batch: Sequence[Any], at: Key, value: Any) -> tuple[Any, ...] | dict[Key, Any]:
    """The batch in its items' shape: ``value`` at ``at``, every other field collated (dict
    items may list their keys in any order, as for ``default_collate``; the first item's
    order is kept)."""
    keys = [k for k, _ in _fields(batch[0], 0)]
    mapping = isinstance(batch[0], Mapping)
    for i, item in enumerate(batch):
        item_keys = [k for k, _ in _fields(item, i)]
        if isinstance(item, Mapping) != mapping or (set(item_keys) != set(keys) if mapping else item_keys != keys):
            raise ValueError(f"the items of one batch must have the same fields: item 0 is "
                             f"{_describe(_fields(batch[0], 0), isinstance(batch[0], Mapping))}, item {i} is "
                             f"{_describe(_fields(item, i), isinstance(item, Mapping))}")
    fields = {k: value if k == at else _collate_field([item[k] for item in batch]) for k in keys}
    return fields if isinstance(batch[0], Mapping) else tuple(fields.values())


def replace_field(batch: Any, at: Key, value: Any) -> Any:
    """A collated batch (tuple, list or dict) with ``value`` in place of the field at ``at``."""
    if isinstance(batch, Mapping):
        return {**batch, at: value}
    if isinstance(batch, list):
        return [value if k == at else v for k, v in enumerate(batch)]
    return tuple(value if k == at else v for k, v in enumerate(batch))


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


def collate_images(batch: Sequence[Any], image_key: Key | None = None) -> tuple[Any, ...] | dict[Key, Any]:
    """Stack items such as ``(image, target)`` or ``{"image": ..., "label": ...}`` into one
    batch of the same shape: ``(images, targets)``, or ``{"image": images, "label": labels}``.

    The image is found as torchvision v2 finds it (see the module docstring) or named by
    ``image_key`` (a dict key or tuple position; use ``functools.partial(collate_images,
    image_key="img")`` as a ``collate_fn``). Images may be PIL images, ndarrays or tensors of
    shape ``(H, W)`` or ``(C, H, W)``; the batch is ``(B, C, H, W)`` (always 4-D, so a last
    batch of one image is still a batch) in the items' dtype. The other fields are collated by
    ``default_collate`` (ints give an int64 tensor), or kept as a list of the items' values
    where it cannot stack them. Tuples and lists give a tuple; dicts a dict. Inside a worker
    the batch is built in shared memory, as PyTorch's own collate does.

    Raises:
        TypeError: an item that is not a tuple or dict, has no image, or an unsupported image type.
        KeyError: ``image_key`` not in an item (naming the keys it has).
        ValueError: an empty batch, items with different fields, or images whose shapes or
            dtypes differ.
    """
    at, images = _field_values(batch, "image", image_key, IMAGE_RULES)
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
    return _rebuild(batch, at, default_collate(tensors))


def collate_images_and_targets(batch: Sequence[Any], image_key: Key | None = None,
                               target_key: Key = "label") -> tuple[torch.Tensor, Any]:
    """``(images, targets)`` of items as :func:`collate_images` takes them, whatever else
    they hold: the target of a dict item is ``item[target_key]``; of a tuple, its first
    element other than the image (the second of an ``(image, target)`` pair).

    Raises:
        KeyError: dict items without ``target_key`` (naming the keys they have).
        ValueError: tuple items holding nothing but the image.
    """
    collated = collate_images(batch, image_key)
    at = image_key_of(batch[0], image_key)
    if isinstance(collated, dict):
        if target_key not in collated:
            raise ItemKeyError(f"target_key={target_key!r} is not in the items: their keys are {list(collated)}")
        return collated[at], collated[target_key]
    others = [k for k in range(len(collated)) if k != at]
    if not others:
        raise ValueError("the items hold an image but no target: give (image, target) pairs")
    return collated[at], collated[others[0]]


def _encoder_device(encoder: Any) -> torch.device | None:
    device = getattr(encoder, "device", None)
    return None if device is None else torch.device(device)


class EncodeCollate:
    """``collate_fn`` for a plain ``DataLoader``: :func:`collate_images`, then ``encoder`` on
    the whole image batch; yields the batch with spikes in place of the images, e.g.
    ``(spikes, targets)`` or ``{"image": spikes, "label": labels}``.

    ``image_key``: where the items hold their image, as for :func:`collate_images`.

    With ``num_workers > 0`` the encoding runs in the worker processes, so it must be a CPU
    encoder; to encode on a GPU use :class:`~spike_encode.data.SpikeLoader`, which encodes
    in the main process.
    """

    def __init__(self, encoder: Callable[[torch.Tensor], Any], image_key: Key | None = None) -> None:
        if not callable(encoder):
            raise TypeError(f"encoder must be callable (e.g. LatencyEncode), got {type(encoder).__name__}")
        self.encoder = encoder
        self.image_key = image_key

    def __call__(self, batch: Sequence[Any]) -> Any:
        device = _encoder_device(self.encoder)
        if get_worker_info() is not None and device is not None and device.type != "cpu":
            raise RuntimeError(
                f"EncodeCollate runs in DataLoader worker processes here, but the encoder's "
                f"device is {device}; GPU work does not belong in workers: use "
                "spike_encode.data.SpikeLoader (encodes in the main process) or num_workers=0"
            )
        images = collate_images(batch, self.image_key)
        at = image_key_of(batch[0], self.image_key)
        return replace_field(images, at, self.encoder(images[at]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.encoder!r}" + (
            f", image_key={self.image_key!r})" if self.image_key is not None else ")")


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

    :meth:`from_sparse` sorts spikes by (step, neuron), the order of a coalesced sparse
    raster. Built by hand, any integer dtype and any order is accepted; :meth:`to_sparse` and
    :func:`collate_spikes` check each field (``ValueError`` naming the first step or neuron
    outside ``0..T-1`` / ``0..N-1``, a repeated spike, mismatched lengths, or a ``T``/``N``
    that is not a positive int; ``TypeError`` for non-integer indices) and sort the spikes.
    """

    step: torch.Tensor
    neuron: torch.Tensor
    num_steps: int
    num_neurons: int

    @classmethod
    def from_sparse(cls, spikes: torch.Tensor) -> "CompactSpikes":
        """From one image's ``(T, N)`` sparse raster (``LatencyEncode`` with ``output="sparse"``;
        also CSR and the other sparse layouts). A stored value of 1 (or ``True``) is a spike, a
        stored 0 none.

        Raises:
            TypeError: not a sparse tensor.
            ValueError: not ``(T, N)``, a hybrid tensor or a stored value other than 0 and 1
                (see :func:`spike_encode.formats.spike_indices`).
        """
        if not isinstance(spikes, torch.Tensor) or spikes.layout == torch.strided:
            raise TypeError(
                "CompactSpikes needs one image's sparse (T, N) spikes (LatencyEncode with "
                f"output='sparse'), got {type(spikes).__name__}"
                + (f" with layout {spikes.layout}" if isinstance(spikes, torch.Tensor) else "")
            )
        if spikes.ndim != 2:
            raise ValueError(f"CompactSpikes holds one image's (T, N) spikes, got shape {tuple(spikes.shape)}; "
                             "apply it per image (in a dataset transform), not to a batch")
        num_steps, num_neurons = spikes.shape
        step, neuron = spike_indices(spikes).cpu()
        return cls(step.to(_index_dtype(num_steps)), neuron.to(_index_dtype(num_neurons)), num_steps, num_neurons)

    def to_sparse(self) -> torch.Tensor:
        """The ``(T, N)`` sparse raster again, exactly as ``LatencyEncode`` returned it.

        Raises:
            TypeError, ValueError: fields that do not make a raster (see the class docstring).
        """
        _check_compact(self, "CompactSpikes")
        return spike_events_to_sparse(_batch_events([self], lambda i: "CompactSpikes"), batched=False)

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


def collate_spikes(batch: Sequence[Any], *, time_first: bool = False,
                   spikes_key: Key | None = None) -> tuple[Any, ...] | dict[Key, Any]:
    """Items such as ``(spikes, target)`` or ``{"image": spikes, "label": ...}`` to one batch
    of the same shape, e.g. ``(spikes, targets)``.

    Each item's spikes (the first :class:`CompactSpikes` or sparse tensor field, else the
    first tensor of 2 or more dimensions, or the field ``spikes_key`` names) are either

    - sparse: :class:`CompactSpikes` or a ``(T, N)`` sparse tensor (as
      :class:`~spike_encode.data.SpikeDataset` gives): one ``(B, T, N)`` sparse batch,
      coalesced (indices sorted (sample, step, neuron)); or
    - dense: ``(T, ...)`` tensors, e.g. from ``LatencyEncode(output="dense")`` applied to one
      image (whose ``time_first`` has no batch axis to act on): stacked ``(B, T, ...)``, or
      ``(T, B, ...)`` with ``time_first=True``, as snnTorch and Norse loops step through time.

    As a ``collate_fn`` with options: ``functools.partial(collate_spikes, time_first=True)``.
    Other fields are collated as by :func:`collate_images`. Run in a worker, a sparse batch
    crosses the pipe through PyTorch's own pickling of sparse tensors (tested with torch
    2.14; older releases without it cannot send it).

    Raises:
        TypeError: an item without spikes, or spikes of neither form (or of both in one batch).
        ValueError: items whose ``(T, N)`` (or dense shapes) differ; ``time_first=True`` with
            sparse spikes (sparse batches are ``(B, T, N)``; ``to_dense(spikes,
            time_first=True)`` turns them); :class:`CompactSpikes` fields that do not make a
            raster (naming the item).
    """
    at, spikes = _field_values(batch, "spikes", spikes_key, _SPIKES_RULES)
    dense = [isinstance(s, torch.Tensor) and s.layout == torch.strided for s in spikes]
    if all(dense):
        return _rebuild(batch, at, _stack_dense(spikes, time_first))
    if time_first:
        raise ValueError("time_first=True stacks dense spikes; sparse batches are (B, T, N): turn them "
                         "with spike_encode.to_dense(spikes, time_first=True), or encode with output='dense'")
    compact = []
    for i, item in enumerate(spikes):
        if dense[i]:
            raise TypeError(f"spikes of one batch must all be sparse or all dense: item 0 is "
                            f"{'dense' if dense[0] else 'sparse'}, item {i} is dense")
        if not isinstance(item, CompactSpikes):
            item = CompactSpikes.from_sparse(item)
        else:
            _check_compact(item, f"item {i} of the batch")
        if compact and item.shape != compact[0].shape:
            raise ValueError(
                f"spikes of one batch must share (T, N): item 0 is {compact[0].shape}, item {i} is {item.shape}"
            )
        compact.append(item)
    return _rebuild(batch, at, spike_events_to_sparse(_batch_events(compact, lambda i: f"item {i} of the batch")))


def _stack_dense(spikes: list[torch.Tensor], time_first: bool) -> torch.Tensor:
    """Dense items stacked along the batch axis: 0, or 1 for time-first batches."""
    first = spikes[0]
    for i, s in enumerate(spikes):
        if s.shape != first.shape or s.dtype != first.dtype:
            raise ValueError(f"dense spikes of one batch must share shape and dtype: item 0 is "
                             f"{tuple(first.shape)} {first.dtype}, item {i} is {tuple(s.shape)} {s.dtype}")
    if first.ndim == 0:
        raise ValueError("dense spikes must be (T, ...) tensors, got a 0-d tensor")
    if not time_first:
        out = default_collate(spikes)
    else:
        out = torch.empty((first.shape[0], len(spikes), *first.shape[1:]), dtype=first.dtype, device=first.device)
        if get_worker_info() is not None:  # as default_collate: built where the pipe can share it
            out.share_memory_()
        torch.stack(spikes, 1, out=out)
    if out.dtype != torch.bool:
        bad = (out != 0) & (out != 1)
        if bool(bad.any()):
            k = bad.nonzero()[0].tolist()
            raise ValueError(f"dense spikes must be 0 or 1, but item {k[1 if time_first else 0]} holds "
                             f"{out[tuple(k)].item()!r} (for images use collate_images)")
    return out


def _positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _check_compact(item: CompactSpikes, where: str) -> None:
    """Refuse fields that cannot make a ``(T, N)`` raster (values are checked per batch)."""
    for name in ("num_steps", "num_neurons"):
        if not _positive_int(getattr(item, name)):
            raise ValueError(f"{where}: {name} must be a positive int, got {getattr(item, name)!r}")
    for name in ("step", "neuron"):
        value = getattr(item, name)
        if not isinstance(value, torch.Tensor) or value.is_floating_point() or value.is_complex() \
                or value.dtype == torch.bool:
            raise TypeError(f"{where}: {name} must be an integer tensor, got "
                            f"{value.dtype if isinstance(value, torch.Tensor) else type(value).__name__}")
        if value.ndim != 1:
            raise ValueError(f"{where}: {name} must be 1-d, got shape {tuple(value.shape)}")
    if len(item.step) != len(item.neuron):
        raise ValueError(f"{where}: step has {len(item.step)} entries but neuron has {len(item.neuron)}")


def _batch_events(compact: Sequence[CompactSpikes], where: Callable[[int], str]) -> SpikeEvents:
    """Concatenate same-shape, checked items' spikes, sorted (sample, step, neuron).

    Raises:
        ValueError: a step or neuron out of range, or a spike repeated, naming ``where(item)``.
    """
    counts = [len(c.step) for c in compact]
    starts = np.cumsum(counts) - counts
    sample = torch.from_numpy(np.repeat(np.arange(len(compact), dtype=np.int64), counts))  # numpy's is faster
    step, neuron = (_concatenated([getattr(c, name) for c in compact]) for name in ("step", "neuron"))
    num_steps, num_neurons = int(compact[0].num_steps), int(compact[0].num_neurons)
    if len(compact) * num_steps * num_neurons > torch.iinfo(torch.int64).max:
        raise ValueError(f"{len(compact)} images of {num_steps} steps x {num_neurons} neurons are too many to index")
    for name, values, size in (("step", step, num_steps), ("neuron", neuron, num_neurons)):
        bad = (values < 0) | (values >= size)
        if bool(bad.any()):
            k = int(bad.nonzero()[0, 0])
            item = int(sample[k])
            raise ValueError(f"{where(item)}: spike {k - starts[item]} has {name} {int(values[k])}, outside "
                             f"0..{size - 1} ({'num_steps' if name == 'step' else 'num_neurons'}={size})")
    key = (sample * num_steps + step) * num_neurons + neuron
    if not bool((key[1:] > key[:-1]).all()):  # unsorted or repeated: sort, then refuse repeats
        key, order = torch.sort(key, stable=True)
        sample, step, neuron = sample[order], step[order], neuron[order]
        repeated = key[1:] == key[:-1]
        if bool(repeated.any()):
            k = int(repeated.nonzero()[0, 0])
            raise ValueError(f"{where(int(sample[k]))}: the spike of neuron {int(neuron[k])} at step "
                             f"{int(step[k])} is there more than once")
    return SpikeEvents(sample, step, neuron, len(compact), num_steps, num_neurons)


def _concatenated(fields: list[torch.Tensor]) -> torch.Tensor:
    """Integer tensors of any dtypes, one after another as int64 (torch does not promote
    between uint16/uint32/uint64 and other integer types)."""
    if all(f.dtype == fields[0].dtype for f in fields):
        return torch.cat(fields).to(torch.int64)
    return torch.cat([f.to(torch.int64) for f in fields])
