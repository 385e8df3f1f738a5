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
from . import compiled
from .crossing_table import UNKNOWN, CrossingTable, crossing_table, replay_first_crossing
from .lif import ArrayT, LIFConstants, lif_alpha
from .parallel import compile_waits, map_on_threads, sample_chunks
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
            compiled.chunk_spikes(np.ones((1, 1), np.uint8), np.empty((0, 1), np.float32), True, np.float32(1),
                                  *_kernel_constants(params), np.empty(1, np.int64), *outputs)
            compiled.place_events(*outputs, np.zeros(1, np.int64), 0, *np.empty((3, 0), np.int64))
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

    On CPU the batch runs in chunks of samples spread over ``threads`` threads (default
    ``torch.get_num_threads()``; :mod:`.parallel`), each in the compiled loop where numba is
    installed (:mod:`.compiled`), else on NumPy arrays (the same float32 operations);
    :class:`~spike_encode.currents.InputCurrents` of uint8 images make each chunk's
    currents in its thread.

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


#: A chunk's spike count, and how to write its spikes into three int64 slices that long.
_Chunk = tuple[int, Callable[[np.ndarray, np.ndarray, np.ndarray], None]]

KEPT_OUTPUT_SPIKES = 1 << 18
"""Most spikes a chunk's int32 output arrays in the compiled loop may hold to be kept for
the calling thread's next batch (2 MiB a chunk). A chunk of 500 MNIST images has about
60,000 spikes: new arrays for each would be slower to write into."""

_kept = threading.local()  # .outputs: per calling thread, one [steps, neurons] slot per chunk


def _output_slots(chunks: int) -> list[list[np.ndarray]]:
    """The calling thread's ``[steps, neurons]`` int32 output arrays for each of ``chunks``
    chunks, those of its last batch where kept (a thread encodes one batch at a time, so
    a slot is never in two batches' use at once)."""
    slots = getattr(_kept, "outputs", None)
    if slots is None:
        slots = _kept.outputs = []
    slots.extend([] for _ in range(chunks - len(slots)))
    return slots[:chunks]


def _new_outputs(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Output arrays for ``rows`` rows at a first guess of 64 spikes a row (the loop grows them)."""
    size = rows * 64 + 1024
    return np.empty(size, np.int32), np.empty(size, np.int32)


def _numpy_chunk(currents: InputCurrents, start: int, stop: int, params: EncoderParams, layout: KeyLayout,
                 slot: list[np.ndarray] | None = None) -> _Chunk:
    """Samples ``start..stop`` on NumPy: their spikes packed into sorted :class:`KeyLayout`
    keys (``slot``, the compiled loop's output arrays, is not used here)."""
    neurons = currents.shape[1]
    positions, values = currents.driven(start, stop)
    where, k1 = _spikes(positions, values, (stop - start) * neurons, params, LIFConstants.build(params, "cpu").numpy())
    sample = where // neurons
    keys = layout.sorted_keys(sample, k1, where - sample * neurons)
    return len(keys), lambda *fields: layout.unpack(keys, start, *fields)


def _compiled_chunk(currents: InputCurrents, start: int, stop: int, params: EncoderParams, layout: KeyLayout,
                    slot: list[np.ndarray]) -> _Chunk:
    """Samples ``start..stop`` in the compiled loop (:mod:`.compiled`), without the GIL, into
    the output arrays in ``slot`` (or new ones, then kept there while small enough)."""
    rows, uint8_rule = currents.rows(start, stop)
    none = np.empty((0, rows.shape[1]), dtype=np.float32 if uint8_rule else np.uint8)
    pixels, given = (rows, none) if uint8_rule else (none, rows)
    rule = (currents.spec.input_rule == "contrast", np.float32(currents.rule_scale)) if uint8_rule else (False, np.float32(1))
    row_spikes = np.empty(stop - start, dtype=np.int64)
    steps, neurons, count, status, row = compiled.chunk_spikes(pixels, given, *rule, *_kernel_constants(params),
                                                               row_spikes, *(slot or _new_outputs(stop - start)))
    slot[:] = [steps, neurons] if len(steps) <= KEPT_OUTPUT_SPIKES else []
    if status == compiled.EMPTY_IMAGE:
        raise ImageError(start + int(row), EMPTY_IMAGE)
    if status == compiled.NEEDS_REPLAY:
        return _numpy_chunk(currents, start, stop, params, layout)
    return int(count), lambda *fields: compiled.place_events(steps, neurons, row_spikes, start, *fields)


def _simulate_cpu(currents: InputCurrents, params: EncoderParams, threads: int) -> SpikeEvents:
    """:func:`simulate_exact` on the CPU: chunks of samples find their spikes on ``threads``
    threads (in the compiled loop where it applies, else on NumPy); then this thread
    allocates the batch's int64 events (from its own memory arena, as with one thread) and
    writes each chunk's slice, a copy bound by memory that two threads made no faster."""
    batch, neurons = currents.shape
    layout = KeyLayout(params.num_steps, neurons)
    compiled_loop = _compiled_applies(params)
    chunks = sample_chunks(batch, neurons, layout.uint32_samples or batch, threads, guided=compiled_loop)
    encode_chunk = _compiled_chunk if compiled_loop else _numpy_chunk
    slots = _output_slots(len(chunks))
    parts = map_on_threads(lambda i: encode_chunk(currents, *chunks[i], params, layout, slots[i]), len(chunks), threads)
    starts = [0, *itertools.accumulate(count for count, _ in parts)]
    fields = np.empty((3, starts[-1]), dtype=np.int64)  # its rows are SpikeEvents.indices() as they are
    for (_, write), start, stop in zip(parts, starts, starts[1:]):
        write(*fields[:, start:stop])
    return SpikeEvents(*torch.from_numpy(fields).unbind(), batch, params.num_steps, neurons)
