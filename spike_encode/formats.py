"""Conversions between the spike formats (see :mod:`spike_encode.outputs` for the formats):
sparse rasters to dense rasters, first-spike times and GeNN's per-image events, and back.
"""

from __future__ import annotations

import math
import numbers

import torch

from .events import SpikeEvents
from .outputs.events import EventList, events_per_image
from .outputs.sparse import spike_events_to_sparse
from .outputs.times import first_spike_steps
from .rasters import check_raster_dtype, dense_raster

__all__ = [
    "sparse_to_events",
    "spike_events_to_sparse",
    "to_dense",
    "to_sparse",
    "to_times",
    "times_to_sparse",
    "to_events",
    "events_to_sparse",
    "spike_indices",
]

#: A raster's axes, ``(B, T, N)`` or ``(T, N)``, as errors name them.
_AXES = ("sample", "step", "neuron")


def _check_spike_values(name: str, values: torch.Tensor, indices: torch.Tensor | None = None) -> None:
    """Refuse ``values`` other than 0 and 1, naming the first and where it is: its position in
    ``values``, or the column of a sparse tensor's ``indices`` it is stored at."""
    bad = (values != 0) & (values != 1)
    if bool(bad.any()):
        first = bad.nonzero()[0]
        where = first if indices is None else indices[:, first[0]]
        raise ValueError(f"{name} must hold 0 or 1, but "
                         + ", ".join(f"{axis} {int(i)}" for axis, i in zip(_AXES[-len(where):], where))
                         + f" holds {values[tuple(first)].item()!r}")


def spike_indices(spikes: torch.Tensor) -> torch.Tensor:
    """The coalesced indices of the spikes of a ``(B, T, N)`` or ``(T, N)`` sparse raster of
    any sparse layout: its stored 1s (or ``True``); a stored 0 is no spike.

    Raises:
        ValueError: a hybrid tensor (with dense dimensions), or a stored value other than 0
            and 1 (an image given by mistake, or repeated spikes summed by ``coalesce``),
            naming the first and where it is.
    """
    if spikes.dense_dim():
        raise ValueError(f"sparse spikes must have no dense dimensions, got shape {tuple(spikes.shape)} "
                         f"with {spikes.dense_dim()} dense dimensions")
    coalesced = (spikes if spikes.layout == torch.sparse_coo else spikes.to_sparse_coo()).coalesce()
    indices, values = coalesced.indices(), coalesced.values()
    _check_spike_values("sparse spikes", values, indices)
    spike = values != 0
    return indices if bool(spike.all()) else indices[:, spike]


def sparse_to_events(spikes: torch.Tensor) -> SpikeEvents:
    """The (sample, step, neuron) index tensors of a ``(B, T, N)`` or ``(T, N)`` sparse raster
    (its values checked by :func:`spike_indices`)."""
    idx = spike_indices(spikes)
    if spikes.ndim == 2:
        idx = torch.cat([torch.zeros_like(idx[:1]), idx])
        shape = (1, *spikes.shape)
    else:
        shape = tuple(spikes.shape)
    return SpikeEvents(idx[0], idx[1], idx[2], *shape)


def _check_sparse(spikes: torch.Tensor) -> None:
    if not isinstance(spikes, torch.Tensor) or not spikes.is_sparse:
        raise TypeError(f"spikes must be a sparse COO tensor, got {type(spikes).__name__}"
                        + ("" if not isinstance(spikes, torch.Tensor) else f" with layout {spikes.layout}"))
    if spikes.ndim not in (2, 3):
        raise ValueError(f"spikes must have shape (T, N) or (B, T, N), got {tuple(spikes.shape)}")


def to_dense(spikes: torch.Tensor, time_first: bool = False, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sparse raster to a 0/1 raster of ``dtype``; ``time_first`` gives ``(T, B, N)`` instead
    of ``(B, T, N)``."""
    _check_sparse(spikes)
    check_raster_dtype(dtype)
    dense = dense_raster(sparse_to_events(spikes), time_first=time_first, dtype=dtype)
    return (dense[:, 0] if time_first else dense[0]) if spikes.ndim == 2 else dense


def to_sparse(dense: torch.Tensor, time_first: bool = False) -> torch.Tensor:
    """Bool (or 0/1) raster ``(B, T, N)``/``(T, N)`` to the sparse format; ``time_first``
    reads a ``(T, B, N)`` raster.

    Raises:
        ValueError: a value other than 0 and 1, naming the first, or a bad shape.
    """
    if not isinstance(dense, torch.Tensor) or dense.is_sparse:
        raise TypeError("dense must be a dense torch.Tensor")
    if dense.ndim not in (2, 3):
        raise ValueError(f"dense must have shape (T, N) or (B, T, N), got {tuple(dense.shape)}")
    if time_first and dense.ndim == 3:
        dense = dense.transpose(0, 1)
    _check_spike_values("dense", dense)
    idx = (dense != 0).nonzero().T
    values = torch.ones(idx.shape[1], dtype=torch.float32, device=dense.device)
    return torch.sparse_coo_tensor(idx, values, tuple(dense.shape), is_coalesced=True, check_invariants=False)


def to_times(spikes: torch.Tensor) -> torch.Tensor:
    """First-spike step of every neuron, ``-1`` where it never fires: ``(B, N)`` or ``(N,)``.

    Raises:
        ValueError: if any neuron fires more than once (the latency code is ambiguous).
    """
    _check_sparse(spikes)
    times = first_spike_steps(sparse_to_events(spikes))
    return times[0] if spikes.ndim == 2 else times


def _count(name: str, value: object) -> int:
    """A positive int argument (Python or NumPy integer), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


#: Steps a time may fall short of the next step's start and still count as in it: float64
#: ``k * dt`` itself can land a few ulps below ``k`` steps (``0.3 / 0.1 = 2.9999999999999996``).
_STEP_TOLERANCE = 1e-9


def _check_range(name: str, values: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """``values`` (1-d) as int64, after naming the first outside ``[low, high)`` in a
    ``ValueError`` (NaN and a uint64 above int64's range are outside). The bounds are compared
    in int64 or float64, never cast into a small dtype."""
    wide = values.to(torch.float64) if values.is_floating_point() else values.to(torch.int64)
    inside = (wide >= low) & (wide < high)
    if values.dtype == torch.uint64:  # .to wrapped those above int64's range to negative values
        inside &= wide >= 0
    if not bool(inside.all()):
        first = int((~inside).nonzero()[0, 0])
        raise ValueError(f"{name} holds {values[first].item()!r} at position {first}, outside [{low}, {high})")
    return wide.to(torch.int64)


def _time_step(dt: object) -> float:
    """``dt`` (ms) as a float if it is a finite real number > 0 (not a bool), else ``ValueError``."""
    if isinstance(dt, bool) or not (isinstance(dt, numbers.Real) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite number > 0 (ms), got {dt!r}")
    return float(dt)


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
    single = times.ndim == 1
    times2 = _check_range("times", times.reshape(-1), -1, num_steps).reshape(-1, times.shape[-1])
    sample, neuron = (times2 >= 0).nonzero(as_tuple=True)
    ev = SpikeEvents.from_unsorted(sample, times2[sample, neuron], neuron,
                                   times2.shape[0], num_steps, times2.shape[1])
    return spike_events_to_sparse(ev, batched=not single)


def to_events(spikes: torch.Tensor, dt: float) -> EventList:
    """Per image ``(times_ms, ids)``, as PyGeNN's ``spike_recording_data`` (times from the
    window start, ``step * dt`` ms, sorted by time then id)."""
    _check_sparse(spikes)
    return events_per_image(sparse_to_events(spikes), _time_step(dt))


def events_to_sparse(events: EventList, dt: float, num_steps: int, num_neurons: int) -> torch.Tensor:
    """Inverse of :func:`to_events`: a ``(B, T, N)`` sparse raster from per-image events.

    A time ``t`` belongs to the step ``k`` with ``k * dt <= t < (k + 1) * dt`` (``floor(t / dt)``,
    forgiving float64 rounding of ``k * dt`` itself); each image's pairs may come in any order,
    but a spike may appear only once.

    Raises:
        ValueError: naming the first bad value: a time that is NaN, negative or not within
            the window of ``num_steps`` steps, an id outside ``0 .. num_neurons - 1`` or not
            an integer, a repeated spike, or mismatched lengths.
    """
    num_steps, num_neurons = _count("num_steps", num_steps), _count("num_neurons", num_neurons)
    dt = _time_step(dt)
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
        t64 = t.to(torch.float64)
        if bool(t64.isnan().any()):
            raise ValueError(f"events[{b}] times_ms holds NaN at position {int(t64.isnan().nonzero()[0, 0])}")
        step = torch.floor(t64 / dt + _STEP_TOLERANCE)
        outside = (t64 < 0) | (step >= num_steps)
        if bool(outside.any()):
            k = int(outside.nonzero()[0, 0])
            raise ValueError(f"events[{b}] times_ms holds {t[k].item()!r} ms at position {k}, outside the "
                             f"window [0, {num_steps * dt:g}) ms of {num_steps} steps of dt={dt} ms")
        steps.append(step.long())
        ids.append(_check_range(f"events[{b}] ids", i, 0, num_neurons))
    sample = torch.cat([torch.full_like(s, b) for b, s in enumerate(steps)])
    ev = SpikeEvents.from_unsorted(sample, torch.cat(steps), torch.cat(ids), len(events), num_steps, num_neurons)
    key = (ev.sample * num_steps + ev.step) * num_neurons + ev.neuron
    repeated = key[1:] == key[:-1]
    if bool(repeated.any()):
        k = int(repeated.nonzero()[0, 0])
        raise ValueError(f"events[{int(ev.sample[k])}] holds the spike of neuron {int(ev.neuron[k])} "
                         f"at step {int(ev.step[k])} more than once")
    return spike_events_to_sparse(ev)
