"""The exact PyTorch engine: GeNN's float32 LIF spikes without stepping every neuron.

With a constant input current, a LIF neuron's float32 trajectory from ``Vreset`` depends
only on the potential ``alpha`` it relaxes towards, so the step where it first reaches
threshold is looked up in a table made once per parameter set
(:mod:`~spike_encode.engines.crossing_table`): exactly the float32 recurrence's answer,
for any parameters, at the cost of one table lookup per driven neuron.

After a spike a neuron is frozen for ``refractory_steps`` and restarts from ``Vreset``, the
same state it started from, so every later spike follows at a fixed period.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable

import numpy as np
import torch

from ..currents import InputCurrents, as_input_currents
from ..events import KeyLayout, SpikeEvents
from ..inputs import EMPTY_IMAGE, ImageError
from ..params import EncoderParams
from . import atomics, compiled
from .crossing_table import UNKNOWN, CrossingTable, crossing_table, replay_first_crossing
from .lif import ArrayT, LIFConstants, lif_alpha
from .parallel import compile_waits, map_on_threads, sample_chunks, threads_for
from .stepper import simulate_steps

__all__ = ["simulate_exact", "first_crossings", "prepare"]


def _fast_path_applies(params: EncoderParams) -> bool:
    exp_tc = params.exp_tc
    return params.lif.Vreset < params.lif.Vthresh and 0.0 < exp_tc < 1.0


def _nonzero(mask: ArrayT) -> ArrayT:
    """Positions of the ``True`` entries of a 1-d mask."""
    return np.flatnonzero(mask) if isinstance(mask, np.ndarray) else mask.nonzero(as_tuple=True)[0]


def _cat(a: ArrayT, b: ArrayT) -> ArrayT:
    return np.concatenate([a, b]) if isinstance(a, np.ndarray) else torch.cat([a, b])


def _repeat(x: ArrayT, counts: ArrayT) -> ArrayT:
    return np.repeat(x, counts) if isinstance(x, np.ndarray) else torch.repeat_interleave(x, counts)


def _arange(n: int, like: ArrayT) -> ArrayT:
    return np.arange(n) if isinstance(like, np.ndarray) else torch.arange(n, device=like.device)


def first_crossings(alpha: ArrayT, params: EncoderParams, c: LIFConstants) -> tuple[ArrayT, ArrayT]:
    """Neurons that reach threshold within the window, and after how many integration steps.

    Args:
        alpha: ``(M,)`` float32 relaxation potentials (mV) from :func:`lif_alpha`, a tensor
            or an ndarray (results of the same kind).
        c: the constants, as tensors or (for ndarrays) from :meth:`LIFConstants.numpy`.

    Returns:
        ``(index, steps)``: int64 positions in ``alpha`` and the number of float32 steps
        (``1..num_steps``) from ``Vreset`` until ``V >= Vthresh``, exactly as GeNN computes.
    """
    T = params.num_steps
    steps = crossing_table(params).lookup(alpha)
    unknown = _nonzero(steps == UNKNOWN)
    if len(unknown):
        steps[unknown] = replay_first_crossing(alpha[unknown], c, T)
    index = _nonzero(steps <= T)
    return index, steps[index]


@functools.lru_cache(maxsize=64)
def _undriven_crossing(params: EncoderParams) -> int:
    """First-crossing step of a neuron with zero input current (``num_steps + 1``: never)."""
    c = LIFConstants.build(params, "cpu")
    _, steps = first_crossings(lif_alpha(torch.zeros(1), c), params, c)
    return int(steps[0]) if steps.numel() else params.num_steps + 1


def prepare(params: EncoderParams) -> None:
    """Make ``params``' crossing table (and compile the CPU loop and the threads' waits, where
    numba is here) now, once per parameter set and process, not at the first batch;
    DataLoader workers forked afterwards inherit them."""
    if _fast_path_applies(params):
        crossing_table(params)
        if _compiled_applies(params):
            outputs = _new_outputs(1)
            compiled.rows_spikes(np.ones((1, 1), np.uint8), np.empty((0, 1), np.float32), True, np.float32(1),
                                 *_kernel_constants(params), atomics.new_word(), 1, np.empty(1, np.int64),
                                 np.empty(1, np.int64), *outputs)
            compiled.place_blocks(*outputs, np.zeros(1, np.int64), 1, np.zeros(1, np.int64), np.zeros(2, np.int64),
                                  *np.empty((3, 0), np.int64))
            compile_waits()


def _compiled_applies(params: EncoderParams) -> bool:
    """Whether the compiled loop computes ``params`` here (it leaves fused arithmetic to NumPy)."""
    return compiled.available() and params.arithmetic == "ieee"


def _kernel_constants(params: EncoderParams) -> tuple:
    """The compiled loop's arguments after the rule's: the LIF constants, the crossing table,
    the undriven neurons' crossing, the window and the extra steps between repeated spikes."""
    return _constants_of_table(params, crossing_table(params))


@functools.lru_cache(maxsize=64)
def _constants_of_table(params: EncoderParams, table: CrossingTable) -> tuple:
    c = LIFConstants.build(params, "cpu").numpy()
    T = params.num_steps
    return ((c.i_offset, c.r_membrane, c.v_rest, c.v_reset),
            (table.buckets.shift, table.buckets.base, table.buckets.code, table.bounds, table.steps),
            _undriven_crossing(params), T, T if params.at_most_one_spike else params.refractory_steps)


def _complement(positions: ArrayT, size: int) -> ArrayT:
    """The positions ``0..size`` that are not in ``positions``."""
    if isinstance(positions, np.ndarray):
        rest = np.ones(size, dtype=bool)
    else:
        rest = torch.ones(size, dtype=torch.bool, device=positions.device)
    rest[positions] = False
    return _nonzero(rest)


def _spikes(driven: ArrayT, currents: ArrayT, size: int, params: EncoderParams, c: LIFConstants) -> tuple[ArrayT, ArrayT]:
    """Every spike of ``size`` flattened neurons, of which those at ``driven`` have the
    ``currents`` (nA) above 0 and the others none, in no particular order: ``(position,
    step)``, int64 arrays of ``driven``'s kind."""
    T = params.num_steps
    # Neurons without input current (most pixels of a digit) share one trajectory: settle it
    # once per parameter set, and look up the others only.
    fired, n1 = first_crossings(lif_alpha(currents, c), params, c)
    where = driven[fired]
    n0 = _undriven_crossing(params)
    if n0 <= T:  # undriven neurons fire too (a large Ioffset)
        undriven = _complement(driven, size)
        where, n1 = _cat(where, undriven), _cat(n1, undriven * 0 + n0)  # n0 for each, same array kind
    k1 = n1 - 1
    if params.at_most_one_spike:
        return where, k1
    # after a spike a neuron restarts from Vreset: later spikes follow at a fixed period
    period = n1 + params.refractory_steps
    count = 1 + (T - 1 - k1) // period
    if bool((count > 1).any()):
        owner = _repeat(_arange(len(count), count), count)
        starts = count.cumsum(0) - count
        repeat = _arange(len(owner), owner) - starts[owner]
        where, k1 = where[owner], k1[owner] + repeat * period[owner]
    return where, k1


def simulate_exact(currents: InputCurrents | torch.Tensor, params: EncoderParams, *,
                   threads: int | None = None) -> SpikeEvents:
    """Spikes of ``(B, N)`` LIF neurons driven by constant ``currents`` (nA), exactly as GeNN.

    Equal, spike for spike, to :func:`~spike_encode.engines.stepper.simulate_steps` and to
    GeNN's single-threaded CPU backend; falls back to stepping for parameter sets outside the
    closed form's assumptions (``Vreset >= Vthresh``, or ``ExpTC`` rounding to 0 or 1).

    On CPU the batch runs on up to ``threads`` threads (default ``torch.get_num_threads()``;
    :mod:`.parallel`): in the compiled loop where numba is installed (:mod:`.compiled`; the
    threads take blocks of rows in turn), else in chunks of samples on NumPy arrays (the same
    float32 operations); :class:`~spike_encode.currents.InputCurrents` of uint8 images make
    each row's (or chunk's) currents in its thread.

    Raises:
        ValueError: ``threads`` is not a positive integer.
        ImageError: an all-zero image among uint8 ``InputCurrents``.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer (or None: torch.get_num_threads()), got {threads!r}")
    currents = as_input_currents(currents)
    if not _fast_path_applies(params):
        return simulate_steps(currents.dense(), params)
    if currents.device.type == "cpu":
        return _simulate_cpu(currents, params, threads or torch.get_num_threads())
    dense = currents.dense()
    batch, neurons = dense.shape
    c = LIFConstants.build(params, dense.device)
    flat = dense.reshape(-1)
    driven = _nonzero(flat != 0)
    where, k1 = _spikes(driven, flat[driven], flat.numel(), params, c)
    sample = torch.div(where, neurons, rounding_mode="floor")
    return SpikeEvents.from_unsorted(sample, k1, where - sample * neurons, batch, params.num_steps, neurons)


#: A NumPy chunk's spike count, and how to write its spikes into three int64 slices that long.
_Chunk = tuple[int, Callable[[np.ndarray, np.ndarray, np.ndarray], None]]

BLOCK_ELEMENTS = 16 * 784
"""Neurons (rows x neurons per row) in a block of rows that the compiled loop's threads take
in turn: 16 MNIST images, about 15 µs of work (one row at least)."""

KEPT_OUTPUT_SPIKES = 1 << 18
"""Most spikes a thread's int32 output arrays in the compiled loop may hold to be kept for
the calling thread's next batch (2 MiB a thread). Half a batch of 1000 MNIST images has
about 60,000 spikes: new arrays for each would be slower to write into."""

_kept = threading.local()  # .outputs: per calling thread, one [steps, neurons] slot per thread of its batches


def _output_slots(threads: int) -> list[list[np.ndarray]]:
    """The calling thread's ``[steps, neurons]`` int32 output arrays for each of ``threads``
    threads, those of its last batch where kept (a thread encodes one batch at a time, so
    a slot is never in two batches' use at once)."""
    slots = getattr(_kept, "outputs", None)
    if slots is None:
        slots = _kept.outputs = []
    slots.extend([] for _ in range(threads - len(slots)))
    return slots[:threads]


def _new_outputs(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Output arrays for ``rows`` rows at a first guess of 64 spikes a row (the loop grows them)."""
    size = rows * 64 + 1024
    return np.empty(size, np.int32), np.empty(size, np.int32)


def _numpy_chunk(currents: InputCurrents, start: int, stop: int, params: EncoderParams, layout: KeyLayout) -> _Chunk:
    """Samples ``start..stop`` on NumPy: their spikes packed into sorted :class:`KeyLayout` keys."""
    neurons = currents.shape[1]
    positions, values = currents.driven(start, stop)
    where, k1 = _spikes(positions, values, (stop - start) * neurons, params, LIFConstants.build(params, "cpu").numpy())
    sample = where // neurons
    keys = layout.sorted_keys(sample, k1, where - sample * neurons)
    return len(keys), lambda *fields: layout.unpack(keys, start, *fields)


def _compiled_batch(currents: InputCurrents, params: EncoderParams, threads: int) -> SpikeEvents | None:
    """The batch in the compiled loop (:mod:`.compiled`), without the GIL: ``threads``
    threads (as many as the batch is worth) take blocks of rows in turn, each into its own
    output arrays (kept for this thread's next batch while small enough); then this thread
    writes every block's spikes into the batch's int64 events. ``None`` where a neuron needs
    a replay (the NumPy path's).

    Raises:
        ImageError: an all-zero image among uint8 currents (the first).
    """
    batch, neurons = currents.shape
    threads = threads_for(batch, neurons, threads)
    rows, uint8_rule = currents.rows(0, batch)
    none = np.empty((0, neurons), dtype=np.float32 if uint8_rule else np.uint8)
    pixels, given = (rows, none) if uint8_rule else (none, rows)
    rule = (currents.spec.input_rule == "contrast", np.float32(currents.rule_scale)) if uint8_rule else (False, np.float32(1))
    block = max(1, batch if threads == 1 else BLOCK_ELEMENTS // neurons)
    arguments = (pixels, given, *rule, *_kernel_constants(params), atomics.new_word(), block)
    row_spikes = np.empty(batch, dtype=np.int64)
    slots = _output_slots(threads)

    def take_blocks(k: int) -> tuple:  # one thread's call
        taken = np.empty(-(-batch // block), dtype=np.int64)
        out_step, out_neuron, _, blocks, status, row = compiled.rows_spikes(
            *arguments, row_spikes, taken, *(slots[k] or _new_outputs(batch // threads)))
        slots[k][:] = [out_step, out_neuron] if len(out_step) <= KEPT_OUTPUT_SPIKES else []
        return out_step, out_neuron, taken[:blocks], status, row

    parts = map_on_threads(take_blocks, threads, threads)
    if any(status == compiled.NEEDS_REPLAY for *_, status, _ in parts):
        return None
    empty = [row for *_, status, row in parts if status == compiled.EMPTY_IMAGE]
    if empty:  # every row before the lowest was encoded: it is the batch's first all-zero image
        raise ImageError(int(min(empty)), EMPTY_IMAGE)
    row_start = np.zeros(batch + 1, dtype=np.int64)
    np.cumsum(row_spikes, out=row_start[1:])
    fields = np.empty((3, int(row_start[-1])), dtype=np.int64)  # its rows are SpikeEvents.indices() as they are
    for out_step, out_neuron, taken, _, _ in parts:
        compiled.place_blocks(out_step, out_neuron, taken, block, row_spikes, row_start, *fields)
    return SpikeEvents(*torch.from_numpy(fields).unbind(), batch, params.num_steps, neurons)


def _simulate_cpu(currents: InputCurrents, params: EncoderParams, threads: int) -> SpikeEvents:
    """:func:`simulate_exact` on the CPU: in the compiled loop where it applies (and needs no
    replay), else on NumPy, chunks of samples on ``threads`` threads, each chunk's spikes
    sorted by keys; then this thread allocates the batch's int64 events (from its own
    memory arena, as with one thread) and writes each chunk's slice."""
    if _compiled_applies(params) and (events := _compiled_batch(currents, params, threads)) is not None:
        return events
    batch, neurons = currents.shape
    layout = KeyLayout(params.num_steps, neurons)
    chunks = sample_chunks(batch, neurons, layout.uint32_samples or batch, threads)
    parts = map_on_threads(lambda i: _numpy_chunk(currents, *chunks[i], params, layout), len(chunks), threads)
    starts = [0, *itertools.accumulate(count for count, _ in parts)]
    fields = np.empty((3, starts[-1]), dtype=np.int64)  # its rows are SpikeEvents.indices() as they are
    for (_, write), start, stop in zip(parts, starts, starts[1:]):
        write(*fields[:, start:stop])
    return SpikeEvents(*torch.from_numpy(fields).unbind(), batch, params.num_steps, neurons)
