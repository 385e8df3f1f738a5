"""The CPU engine's loop over a batch's rows, compiled without the GIL: numba, when installed
(``pip install "spike_encode[fast]"``).

NumPy's compaction and fancy indexing hold the GIL, so two threads running the NumPy
chunks of :mod:`.torch_engine` gain little over one. Compiled with ``nogil=True``, the loop
runs from the pixels (or currents) to the spikes without the GIL, and the engine's threads
scale with the cores: each thread makes one call, and the calls take blocks of rows in turn
from one shared counter (an atomic word, :mod:`.atomics`), so a thread that starts late or
runs on a busy core takes fewer, and all end within a block of each other.

The loop computes what the NumPy path computes, operation for operation in float32 (each
operation rounded to float32 before the next; LLVM fuses none without fast-math): the
input rules on uint8 pixels as :mod:`spike_encode.uint8_currents` (exact integer levels and
totals, then ``(e / total) * scale``), GeNN's unfused ``alpha``, the crossing table's
bucket lookup, and the fixed period of repeated spikes. Tests hold it to the NumPy path
bit for bit. It leaves to the NumPy path what it does not cover: fused arithmetic
(``arithmetic="fma"``) and table pieces that need a replay (reported, never guessed).

Set ``SPIKE_ENCODE_NO_NUMBA=1`` to use the NumPy path with numba installed.
"""

from __future__ import annotations

import numpy as np

from . import atomics
from .jit import DISABLE_ENV, available
from .jit import compiled_or_none as _compile

__all__ = ["DISABLE_ENV", "OK", "EMPTY_IMAGE", "NEEDS_REPLAY", "available", "place_blocks", "rows_spikes"]

OK, EMPTY_IMAGE, NEEDS_REPLAY = 0, 1, 2
"""A call's status: done; an all-zero image at the returned row; a neuron needs a replay."""


@_compile
def _background_level(row, histogram):  # pragma: no cover - compiled
    """The ``contrast`` rule's background of one row of uint8 pixels: the lower median plus
    the median absolute deviation (0 when at least half the pixels are black)."""
    n = row.shape[0]
    rank = (n - 1) // 2
    zeros = 0
    for i in range(n):
        zeros += np.int64(row[i] == 0)
    if zeros > rank:  # at least half black: the lower median is 0, and so is the level
        return 0
    histogram[:] = 0
    for i in range(n):
        histogram[row[i]] += 1
    seen = 0
    median = 0
    for value in range(256):
        seen += histogram[value]
        if seen > rank:
            median = value
            break
    seen = 0
    spread = 0
    for distance in range(256):
        if median + distance <= 255:
            seen += histogram[median + distance]
        if distance > 0 and median - distance >= 0:
            seen += histogram[median - distance]
        if seen > rank:
            spread = distance
            break
    return median + spread


@_compile
def _compact_above(row, level, index, current):  # pragma: no cover - compiled
    """The pixels of one uint8 row above ``level``: positions into ``index`` and excess into
    ``current``; their count and the total excess."""
    total = 0
    driven = 0
    for i in range(row.shape[0]):  # without branches: every pixel is written, the driven ones kept
        excess = max(np.int64(row[i]) - level, 0)
        total += excess
        index[driven] = i
        current[driven] = excess
        driven += np.int64(excess > 0)
    return driven, total


@_compile
def _uint8_row_currents(row, contrast, scale, histogram, index, current):  # pragma: no cover - compiled
    """The driven neurons of one row of uint8 pixels under the rule: their positions into
    ``index`` and currents (nA) into ``current``; their count, or -1 for an all-zero image."""
    level = _background_level(row, histogram) if contrast else 0
    if level == 0:  # the common case, compiled with the level a constant: no subtraction per pixel
        driven, total = _compact_above(row, 0, index, current)
    else:
        driven, total = _compact_above(row, level, index, current)
    if total == 0:
        return -1 if level == 0 else 0  # all black, or nothing above the background (silent)
    total32 = np.float32(total)
    for j in range(driven):
        current[j] = np.float32(np.float32(current[j] / total32) * scale)
    return driven


@_compile
def _given_row_currents(row, index, current):  # pragma: no cover - compiled
    """The driven neurons of one row of float32 currents (nA): positions and currents; their count."""
    driven = 0
    for i in range(row.shape[0]):  # without branches, as in _uint8_row_currents
        index[driven] = i
        current[driven] = row[i]
        driven += np.int64(row[i] != 0)
    return driven


@_compile
def _driven_steps(current, driven, lif, table, driven_step, bits):  # pragma: no cover - compiled
    """The step (1-based) of the first spike of each of the ``driven`` neurons with
    ``current`` (nA) into ``driven_step``: from the crossing table's bucket, or its bounds
    where the bucket is ambiguous (``bits``: one int32 of room). ``False`` when a neuron
    needs a replay."""
    i_offset, r_membrane, v_rest, v_reset = lif
    shift, base, codes, bounds, steps = table
    last = len(codes) - 1
    u = bits.view(np.float32)
    for j in range(driven):
        alpha = np.float32(np.float32(np.float32(current[j] + i_offset) * r_membrane) + v_rest)
        u[0] = np.float32(alpha - v_reset)
        bucket = (np.int64(bits[0]) >> shift) - base
        bucket = 0 if bucket < 0 else (last if bucket > last else bucket)
        step = np.int64(codes[bucket])
        if step == 0:
            if alpha != alpha:  # NaN: replayed, as the table's last piece is
                return False
            step = steps[np.searchsorted(bounds, alpha, side="right")]
            if step == 0:
                return False
        driven_step[j] = step
    return True


@_compile
def _place_once(index, driven_step, driven, num_steps, counts, out_step, out_neuron, pos):  # pragma: no cover
    """The spikes of ``driven`` neurons that fire at most once in the window (and of no
    others), by (step, neuron), from ``pos``; the end position. A counting sort without
    branches: the neurons that do not fire go to a last bucket past the end, which the
    output has room for (as for one spike per neuron) and the next row overwrites."""
    counts[:] = 0
    for j in range(driven):
        step = min(driven_step[j], num_steps + 1)
        driven_step[j] = step
        counts[step] += 1
    start = pos  # no spike at step 0: the buckets start at step 1
    for step in range(1, num_steps + 2):
        count = counts[step]
        counts[step] = start
        start += count
    for j in range(driven):
        step = driven_step[j]
        at = counts[step]
        counts[step] = at + 1
        out_step[at] = step - 1
        out_neuron[at] = index[j]
    return counts[num_steps]


@_compile
def _place_repeated(index, driven_step, driven, n, n0, num_steps, period_add, work, out_step, out_neuron,
                    pos):  # pragma: no cover - compiled
    """The spikes of all ``n`` neurons, repeated every ``step + period_add`` steps, by (step,
    neuron), from ``pos``: the ``driven`` ones at ``index`` (ascending) first fire at
    ``driven_step``, the others at ``n0``; the end position."""
    fired_neuron, fired_step, counts = work
    fired = 0
    if n0 <= num_steps:  # undriven neurons fire too (a large Ioffset): all neurons, in order
        j = 0
        for i in range(n):
            step = n0
            if j < driven and index[j] == i:
                step = driven_step[j]
                j += 1
            if step <= num_steps:
                fired_neuron[fired] = i
                fired_step[fired] = step
                fired += 1
    else:
        for j in range(driven):
            if driven_step[j] <= num_steps:
                fired_neuron[fired] = index[j]
                fired_step[fired] = driven_step[j]
                fired += 1
    counts[:] = 0  # a counting sort by step: each step's neurons stay in ascending order
    for f in range(fired):
        t = fired_step[f] - 1
        while t < num_steps:
            counts[t + 1] += 1
            t += fired_step[f] + period_add
    counts[0] = pos
    for t in range(num_steps):
        counts[t + 1] += counts[t]
    end = counts[num_steps]
    for f in range(fired):
        t = fired_step[f] - 1
        while t < num_steps:
            j = counts[t]
            counts[t] = j + 1
            out_step[j] = t
            out_neuron[j] = fired_neuron[f]
            t += fired_step[f] + period_add
    return end


@_compile
def _grown(out_step, out_neuron, pos, need):  # pragma: no cover - compiled
    """The output arrays grown (at least doubled) to hold ``need`` more entries after ``pos``."""
    capacity = max(2 * len(out_step), pos + need)
    grown_step = np.empty(capacity, np.int32)
    grown_step[:pos] = out_step[:pos]
    grown_neuron = np.empty(capacity, np.int32)
    grown_neuron[:pos] = out_neuron[:pos]
    return grown_step, grown_neuron


@_compile
def rows_spikes(pixels, currents, contrast, scale, lif, table, n0, num_steps, period_add, next_row, block,
                row_spikes, taken, out_step, out_neuron):  # pragma: no cover - compiled
    """The spikes of the blocks of ``block`` rows this call takes from the ``next_row`` word
    (the first row of the next block; other threads' calls take from it too): of ``(R, N)``
    uint8 ``pixels`` under the rule (``contrast``: ``"contrast"``, else ``"sum"``;
    ``scale``: an image's current, nA), or, where ``pixels`` has no rows, of ``(R, N)``
    float32 ``currents`` (nA).

    Returns ``(steps, neurons, spikes, blocks, status, row)``: the first ``spikes`` entries,
    block after block in the order taken (each block's first row into ``taken``, ``blocks``
    of them), each block's in (row, step, neuron) order; each row's count in ``row_spikes``;
    ``status`` :data:`EMPTY_IMAGE` or :data:`NEEDS_REPLAY` at ``row``, where the call stopped.
    ``steps`` and ``neurons`` are the int32 arrays ``out_step`` and ``out_neuron``, or new,
    larger ones where the spikes did not fit."""
    from_pixels = pixels.shape[0] > 0
    count, n = pixels.shape if from_pixels else currents.shape
    index = np.empty(n, np.int64)
    current = np.empty(n, np.float32)
    driven_step, bits = np.empty(n, np.int64), np.zeros(1, np.int32)
    work = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(num_steps + 2, np.int64))
    once = n0 > num_steps and period_add >= num_steps  # a second spike would come after the window
    histogram = np.zeros(256, np.int64)
    per_neuron = 1 + (num_steps - 1) // (1 + period_add)
    pos = 0
    blocks = 0
    while True:
        first = atomics.fetch_add(next_row, block)
        if first >= count:
            return out_step, out_neuron, pos, blocks, OK, -1
        taken[blocks] = first
        blocks += 1
        for r in range(first, min(first + block, count)):
            if from_pixels:
                driven = _uint8_row_currents(pixels[r], contrast, scale, histogram, index, current)
                if driven < 0:
                    return out_step, out_neuron, pos, blocks, EMPTY_IMAGE, r
            else:
                driven = _given_row_currents(currents[r], index, current)
            if pos + n * per_neuron > len(out_step):
                out_step, out_neuron = _grown(out_step, out_neuron, pos, n * per_neuron)
            if not _driven_steps(current, driven, lif, table, driven_step, bits):
                return out_step, out_neuron, pos, blocks, NEEDS_REPLAY, r
            if once:
                end = _place_once(index, driven_step, driven, num_steps, work[2], out_step, out_neuron, pos)
            else:
                end = _place_repeated(index, driven_step, driven, n, n0, num_steps, period_add, work, out_step,
                                      out_neuron, pos)
            row_spikes[r] = end - pos
            pos = end


@_compile
def _widen(out_step, out_neuron, step, neuron):  # pragma: no cover - compiled
    """int32 fields into int64 ones in one loop (slice assignment copies through a
    temporary, two to three times slower)."""
    for i in range(len(step)):
        step[i] = out_step[i]
        neuron[i] = out_neuron[i]


@_compile
def place_blocks(out_step, out_neuron, taken, block, row_spikes, row_start, sample, step, neuron):  # pragma: no cover
    """One :func:`rows_spikes` call's spikes (its blocks ``taken``, of ``block`` rows each)
    into the batch's int64 ``sample``, ``step`` and ``neuron``, row ``r``'s from
    ``row_start[r]`` on (``row_start``: the running total of ``row_spikes``, from 0)."""
    count = len(row_spikes)
    src = 0
    for first in taken:
        last = min(first + block, count)
        dst = row_start[first]
        spikes = row_start[last] - dst
        _widen(out_step[src : src + spikes], out_neuron[src : src + spikes], step[dst : dst + spikes],
               neuron[dst : dst + spikes])
        for r in range(first, last):
            sample[row_start[r] : row_start[r + 1]] = r
        src += spikes
