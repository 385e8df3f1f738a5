"""Spike formats and the conversions between them.

- ``sparse``: a coalesced sparse COO tensor of shape ``(B, T, N)`` (one image: ``(T, N)``),
  indices (sample, step, neuron), float32 values of 1. The default: a few KiB per image.
- ``dense``: a 0/1 raster ``(B, T, N)``, float32 by default (what ``nn.Linear``, snnTorch and
  Norse take; ``dtype=torch.bool`` for memory), or ``(T, B, N)`` with ``time_first=True`` as
  snnTorch and Norse training loops step through time.
- ``times``: ``(B, N)`` int64 first-spike step per neuron, ``-1`` where it never fires;
  only for settings where a neuron fires at most once.
- ``events``: per image, ``(times_ms, ids)`` as PyGeNN's ``spike_recording_data`` gives them
  (times relative to the window start, float64 ms; ids int64).
- ``tonic``: per image, Tonic's structured ``(x, y, t, p)`` event array, ``t`` in µs
  (:mod:`spike_encode.tonic_format`).

With an ``image_shape`` ``(C, H, W)``, sparse, dense and times output keep the image's shape
in place of ``N``: ``(B, T, C, H, W)`` (time-first dense ``(T, B, C, H, W)``), ``(B, C, H, W)``;
neuron ``n`` is ``(c, h, w)`` row-major, ``n = (c * H + h) * W + w``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from .events import SpikeEvents
from .memory_guard import check_fits
from .tonic_format import events_to_tonic

__all__ = [
    "OUTPUT_FORMATS",
    "events_to_output",
    "sparse_to_events",
    "spike_events_to_sparse",
    "to_dense",
    "to_sparse",
    "to_times",
    "times_to_sparse",
    "to_events",
    "events_to_sparse",
]

OUTPUT_FORMATS = ("sparse", "dense", "times", "events", "tonic")

EventList = list[tuple[torch.Tensor, torch.Tensor]]


def sparse_to_events(spikes: torch.Tensor) -> SpikeEvents:
    """The (sample, step, neuron) index tensors of a ``(B, T, N)`` or ``(T, N)`` sparse raster."""
    spikes = spikes.coalesce()
    idx = spikes.indices()
    if spikes.ndim == 2:
        idx = torch.cat([torch.zeros_like(idx[:1]), idx])
        shape = (1, *spikes.shape)
    else:
        shape = tuple(spikes.shape)
    return SpikeEvents(idx[0], idx[1], idx[2], *shape)


def spike_events_to_sparse(ev: SpikeEvents, batched: bool = True) -> torch.Tensor:
    """Engine output as the sparse format; ``batched=False`` for one image's ``(T, N)``."""
    if batched:
        indices, shape = torch.stack([ev.sample, ev.step, ev.neuron]), ev.shape
    else:
        indices, shape = torch.stack([ev.step, ev.neuron]), ev.shape[1:]
    values = torch.ones(len(ev), dtype=torch.float32, device=indices.device)
    return torch.sparse_coo_tensor(indices, values, shape, is_coalesced=True, check_invariants=False)


def _check_sparse(spikes: torch.Tensor) -> None:
    if not isinstance(spikes, torch.Tensor) or not spikes.is_sparse:
        raise TypeError(f"spikes must be a sparse COO tensor, got {type(spikes).__name__}"
                        + ("" if not isinstance(spikes, torch.Tensor) else f" with layout {spikes.layout}"))
    if spikes.ndim not in (2, 3):
        raise ValueError(f"spikes must have shape (T, N) or (B, T, N), got {tuple(spikes.shape)}")


def _events_to_dense(ev: SpikeEvents, time_first: bool, dtype: torch.dtype) -> torch.Tensor:
    itemsize = torch.empty(0, dtype=dtype).element_size()
    check_fits(ev.batch_size * ev.num_steps * ev.num_neurons * itemsize, ev.step.device,
               f"a dense {dtype} raster of {ev.batch_size} images x {ev.num_steps:,} steps x {ev.num_neurons} neurons",
               "use output='sparse' (or 'times'), smaller batches, or dtype=torch.bool")
    if time_first:
        dense = torch.zeros((ev.num_steps, ev.batch_size, ev.num_neurons), dtype=dtype, device=ev.step.device)
        dense[ev.step, ev.sample, ev.neuron] = 1
    else:
        dense = torch.zeros(ev.shape, dtype=dtype, device=ev.step.device)
        dense[ev.sample, ev.step, ev.neuron] = 1
    return dense


def to_dense(spikes: torch.Tensor, time_first: bool = False, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sparse raster to a 0/1 raster of ``dtype``; ``time_first`` gives ``(T, B, N)`` instead
    of ``(B, T, N)``."""
    _check_sparse(spikes)
    dense = _events_to_dense(sparse_to_events(spikes), time_first, dtype)
    return (dense[:, 0] if time_first else dense[0]) if spikes.ndim == 2 else dense


def to_sparse(dense: torch.Tensor, time_first: bool = False) -> torch.Tensor:
    """Bool (or 0/1) raster ``(B, T, N)``/``(T, N)`` to the sparse format; ``time_first``
    reads a ``(T, B, N)`` raster."""
    if not isinstance(dense, torch.Tensor) or dense.is_sparse:
        raise TypeError("dense must be a dense torch.Tensor")
    if dense.ndim not in (2, 3):
        raise ValueError(f"dense must have shape (T, N) or (B, T, N), got {tuple(dense.shape)}")
    if time_first and dense.ndim == 3:
        dense = dense.transpose(0, 1)
    idx = (dense != 0).nonzero().T
    values = torch.ones(idx.shape[1], dtype=torch.float32, device=dense.device)
    return torch.sparse_coo_tensor(idx, values, tuple(dense.shape), is_coalesced=True, check_invariants=False)


def _events_to_times(ev: SpikeEvents) -> torch.Tensor:
    times = torch.full((ev.batch_size, ev.num_neurons), -1, dtype=torch.int64, device=ev.step.device)
    flat = ev.sample * ev.num_neurons + ev.neuron
    if flat.numel() and bool((torch.bincount(flat, minlength=times.numel()) > 1).any()):
        raise ValueError(
            "output='times' needs at most one spike per neuron, but some neuron fires more "
            "than once; use TauRefrac >= the window, or output='sparse'/'events'"
        )
    times.view(-1)[flat] = ev.step
    return times


def to_times(spikes: torch.Tensor) -> torch.Tensor:
    """First-spike step of every neuron, ``-1`` where it never fires: ``(B, N)`` or ``(N,)``.

    Raises:
        ValueError: if any neuron fires more than once (the latency code is ambiguous).
    """
    _check_sparse(spikes)
    times = _events_to_times(sparse_to_events(spikes))
    return times[0] if spikes.ndim == 2 else times


def _count(name: str, value: object) -> int:
    """A positive int argument (Python or NumPy integer), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_range(name: str, values: torch.Tensor, low: int, high: int) -> None:
    """Raise ``ValueError`` naming the first of the 1-d ``values`` outside ``[low, high)``."""
    bad = (values < low) | (values >= high)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name} holds {values[first].item()!r} at position {first}, outside [{low}, {high})")


def times_to_sparse(times: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Inverse of :func:`to_times`: ``(B, N)`` or ``(N,)`` first-spike steps to a sparse raster.

    Raises:
        TypeError: ``times`` is not an integer tensor.
        ValueError: a step outside ``-1 .. num_steps - 1`` (naming the first), or a bad shape.
    """
    num_steps = _count("num_steps", num_steps)
    if not isinstance(times, torch.Tensor) or times.is_floating_point() or times.is_complex() or times.dtype == torch.bool:
        raise TypeError(f"times must be an integer tensor of first-spike steps, got "
                        f"{getattr(times, 'dtype', type(times).__name__)}")
    if times.ndim not in (1, 2) or times.shape[-1] == 0:
        raise ValueError(f"times must have shape (N,) or (B, N) with N > 0, got {tuple(times.shape)}")
    _check_range("times", times.reshape(-1), -1, num_steps)
    single = times.ndim == 1
    times2 = times.reshape(1, -1) if single else times
    sample, neuron = (times2 >= 0).nonzero(as_tuple=True)
    ev = SpikeEvents.from_unsorted(sample, times2[sample, neuron].long(), neuron,
                                   times2.shape[0], num_steps, times2.shape[1])
    return spike_events_to_sparse(ev, batched=not single)


def _events_to_list(ev: SpikeEvents, dt: float) -> EventList:
    counts = torch.bincount(ev.sample, minlength=ev.batch_size).tolist()
    times = ev.step.to(torch.float64) * dt
    return list(zip(times.split(counts), ev.neuron.split(counts)))


def to_events(spikes: torch.Tensor, dt: float) -> EventList:
    """Per image ``(times_ms, ids)``, as PyGeNN's ``spike_recording_data`` (times from the
    window start, ``step * dt`` ms, sorted by time then id)."""
    _check_sparse(spikes)
    return _events_to_list(sparse_to_events(spikes), dt)


def events_to_sparse(events: EventList, dt: float, num_steps: int, num_neurons: int) -> torch.Tensor:
    """Inverse of :func:`to_events`: a ``(B, T, N)`` sparse raster from per-image events.

    ``times_ms`` are rounded to the nearest step (``round(t / dt)``); each image's pairs may
    come in any order, but a spike may appear only once.

    Raises:
        ValueError: naming the first bad value: a time that is NaN, negative or not within
            the window of ``num_steps`` steps, an id outside ``0 .. num_neurons - 1`` or not
            an integer, a repeated spike, or mismatched lengths.
    """
    num_steps, num_neurons = _count("num_steps", num_steps), _count("num_neurons", num_neurons)
    if not (isinstance(dt, numbers.Real) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite number > 0 (ms), got {dt!r}")
    if not events:
        raise ValueError("events is empty: need at least one image's (times_ms, ids)")
    steps, ids = [], []
    for b, pair in enumerate(events):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"events[{b}] must be a (times_ms, ids) pair, got {type(pair).__name__}")
        t = torch.as_tensor(pair[0]).reshape(-1)
        i = torch.as_tensor(pair[1]).reshape(-1)
        if t.shape != i.shape:
            raise ValueError(f"events[{b}] has {t.numel()} times but {i.numel()} ids")
        if i.is_complex() or i.dtype == torch.bool or t.is_complex():
            raise ValueError(f"events[{b}] must hold real times and integer ids, got {t.dtype} and {i.dtype}")
        if i.is_floating_point() and not bool((i == i.round()).all()):
            raise ValueError(f"events[{b}] ids must be integers, got {i[i != i.round()][0].item()!r}")
        step = torch.round(t.to(torch.float64) / dt)
        if bool(step.isnan().any()):
            raise ValueError(f"events[{b}] times_ms holds NaN at position {int(step.isnan().nonzero()[0, 0])}")
        outside = (step < 0) | (step >= num_steps)
        if bool(outside.any()):
            k = int(outside.nonzero()[0, 0])
            raise ValueError(f"events[{b}] times_ms holds {t[k].item()!r} ms at position {k}, outside the "
                             f"window [0, {num_steps * dt:g}) ms of {num_steps} steps of dt={dt} ms")
        _check_range(f"events[{b}] ids", i, 0, num_neurons)
        steps.append(step.long())
        ids.append(i.long())
    sample = torch.cat([torch.full_like(s, b) for b, s in enumerate(steps)])
    ev = SpikeEvents.from_unsorted(sample, torch.cat(steps), torch.cat(ids), len(events), num_steps, num_neurons)
    key = (ev.sample * num_steps + ev.step) * num_neurons + ev.neuron
    repeated = key[1:] == key[:-1]
    if bool(repeated.any()):
        k = int(repeated.nonzero()[0, 0])
        raise ValueError(f"events[{int(ev.sample[k])}] holds the spike of neuron {int(ev.neuron[k])} "
                         f"at step {int(ev.step[k])} more than once")
    return spike_events_to_sparse(ev)


def _shaped_sparse(ev: SpikeEvents, image_shape: tuple[int, int, int], batched: bool) -> torch.Tensor:
    """The sparse format with ``(c, h, w)`` indices in place of the neuron's."""
    _, height, width = image_shape
    pixel = ev.neuron % (height * width)
    rows = [ev.step, ev.neuron // (height * width), pixel // width, pixel % width]
    shape = (ev.num_steps, *image_shape)
    if batched:
        rows, shape = [ev.sample, *rows], (ev.batch_size, *shape)
    values = torch.ones(len(ev), dtype=torch.float32, device=ev.step.device)
    # row-major (c, h, w) keeps the (sample, step, neuron) order: still coalesced
    return torch.sparse_coo_tensor(torch.stack(rows), values, shape, is_coalesced=True, check_invariants=False)


def _check_image_shape(image_shape: Sequence[int], num_neurons: int) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in image_shape)
    if len(shape) != 3 or int(np.prod(shape)) != num_neurons:
        raise ValueError(f"image_shape must be the (C, H, W) of the {num_neurons} neurons, got {tuple(image_shape)}")
    return shape


def events_to_output(ev: SpikeEvents, output: str, dt: float, time_first: bool = False,
                     batched: bool = True, *, dtype: torch.dtype = torch.float32,
                     image_shape: Sequence[int] | None = None) -> torch.Tensor | EventList | list[np.ndarray]:
    """Render engine output in one of :data:`OUTPUT_FORMATS`.

    Args:
        ev: the engine's spikes.
        output: the format's name.
        dt: time step (ms), for ``events`` and ``tonic`` timestamps.
        time_first: ``dense`` as ``(T, B, ...)``.
        batched: ``False`` drops the batch dimension of a single image.
        dtype: element type of ``dense`` output (0/1 values).
        image_shape: ``(C, H, W)`` of the images: ``sparse``, ``dense`` and ``times`` keep it
            in place of ``N``; ``None`` gives flat ``N``. Required by ``tonic``.
    """
    shape = None if image_shape is None else _check_image_shape(image_shape, ev.num_neurons)
    if output == "tonic":
        if shape is None:
            raise ValueError("output='tonic' needs the image_shape (C, H, W) for its x, y, p")
        events = events_to_tonic(ev, dt, shape)
        return events if batched else events[0]
    if output == "events":
        events = _events_to_list(ev, dt)
        return events if batched else events[0]
    if output == "times":
        times = _events_to_times(ev)
        times = times if shape is None else times.reshape(-1, *shape)
        return times if batched else times[0]
    if output == "dense":
        dense = _events_to_dense(ev, time_first, dtype)
        dense = dense if shape is None else dense.reshape(*dense.shape[:2], *shape)
        return dense if batched else dense[:, 0] if time_first else dense[0]
    return spike_events_to_sparse(ev, batched) if shape is None else _shaped_sparse(ev, shape, batched)
