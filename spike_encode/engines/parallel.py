"""Spread a CPU batch over a few threads: the compiled loop's threads take blocks of rows
in turn from one counter (:mod:`.compiled`); the NumPy path's take contiguous chunks of
samples (NumPy releases the GIL in its array loops).

The engine asks for torch's intra-op thread count (``torch.get_num_threads()``) at each
call unless told otherwise: ``torch.set_num_threads`` governs the encoder as it governs
torch, and inside DataLoader workers (where torch sets it to 1) the encoder stays on one
thread.

The hand-off between threads costs microseconds, many of them in a batch of a millisecond:
a sleeping thread takes tens of microseconds to wake, and a thread that waits for the GIL
sleeps. So where numba is installed (:data:`.atomics.COMPILED`) a thread that waits for a
batch, or for the others' items, first watches a word without the GIL for about a fifth of
a millisecond (:data:`SPIN_LOADS`), and sleeps on a lock after that. A helper spins only
while batches come back to back: once it has slept longer than :data:`SPIN_WINDOW_S`, it
sleeps straight away until one wait is that short again (in a training loop, it costs no
core between batches).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from . import atomics
from .jit import compiled_or_python

__all__ = ["MIN_CHUNK_ELEMENTS", "SPIN_LOADS", "SPIN_WINDOW_S", "TAIL", "compile_waits", "map_on_threads",
           "sample_chunks", "threads_for"]

R = TypeVar("R")

MIN_CHUNK_ELEMENTS = 100_000
"""Fewest neurons (samples x neurons per sample) worth a thread of their own: about a
quarter of a millisecond of work, many times a thread hand-off."""

TAIL = 1 / 16
"""Share of a batch split over threads for work that holds the GIL part of the time (the
NumPy path), left to whichever thread finishes its range first."""

SPIN_LOADS = 1_000_000 if atomics.COMPILED else 0
"""Reads of a word a waiting thread makes before it sleeps (0.22-0.24 ms on the machine of
README's figures, ``benchmarks/bench_threads.py``; 0 without compiled atomics, where
watching a word would hold the GIL)."""

SPIN_WINDOW_S = 0.001
"""Longest wait between batches (s) after which a helper goes on spinning before it sleeps."""

# a helper's state word
_IDLE, _GO, _SLEEPING = 0, 1, 2
# the items' done word: items done, and this bit while the caller sleeps until they all are
_CALLER_SLEEPS = 1 << 62


@compiled_or_python
def _wait_for_go(state, spins):
    """A helper's wait for a batch: ``_GO``, or ``_SLEEPING`` where ``spins`` reads passed
    without one (then sleep until the caller releases the helper's lock)."""
    for _ in range(spins):
        if atomics.load(state) == _GO:
            return _GO
    return _GO if atomics.compare_and_swap(state, _IDLE, _SLEEPING) == _GO else _SLEEPING


@compiled_or_python
def _report_then_wait_for_go(done, mine, count, state, spins):
    """A helper that ran ``mine`` items of ``count`` adds them to the ``done`` word, without
    the GIL (the caller, once they are all done, finds the GIL free); ``-1`` where it
    completed them while the caller sleeps (wake it), else :func:`_wait_for_go`."""
    if mine:
        before = atomics.fetch_add(done, mine)
        if before & _CALLER_SLEEPS and (before & ~_CALLER_SLEEPS) + mine == count:
            return -1
    return _wait_for_go(state, spins)


@compiled_or_python
def _report_then_wait_for_all(done, mine, count, spins):
    """The caller adds its ``mine`` items to the ``done`` word and waits until all ``count``
    are done: ``True``; ``False`` where it marked the word to be woken (then sleep)."""
    if atomics.fetch_add(done, mine) + mine == count:
        return True
    for _ in range(spins):
        if atomics.load(done) == count:
            return True
    seen = atomics.load(done)
    while seen != count:
        before = atomics.compare_and_swap(done, seen, seen | _CALLER_SLEEPS)
        if before == seen:
            return False
        seen = before
    return True


def compile_waits() -> None:
    """Compile the threads' waits (or load them from numba's cache) now, not in the first
    batch on several threads."""
    _wait_for_go(atomics.new_word(_GO), 0)
    _report_then_wait_for_go(atomics.new_word(), 0, 0, atomics.new_word(_GO), 0)
    _report_then_wait_for_all(atomics.new_word(), 0, 0, 0)
    atomics.store(atomics.new_word(), 0)


class _Helper:
    """A thread kept for later batches that runs one batch's items at a time: started by
    setting its state word (or, asleep, by releasing its lock)."""

    def __init__(self) -> None:
        self._state = atomics.new_word(_IDLE)
        self._go = threading.Lock()
        self._go.acquire()
        self._items: _Items | None = None
        self._spins = SPIN_LOADS
        self._thread = threading.Thread(target=self._serve, name="spike_encode", daemon=True)
        self._thread.start()

    def start(self, items: "_Items") -> None:
        """Take items from ``items`` until none is left, then become idle again."""
        self._items = items
        if atomics.compare_and_swap(self._state, _IDLE, _GO) == _SLEEPING:
            atomics.store(self._state, _GO)
            self._go.release()

    def _serve(self) -> None:
        code = _wait_for_go(self._state, self._spins)
        while True:
            if code == _SLEEPING:
                asleep = time.perf_counter()
                self._go.acquire()
                self._spins = SPIN_LOADS if time.perf_counter() - asleep < SPIN_WINDOW_S else 0
            items, self._items = self._items, None
            mine = items.take_all()
            atomics.store(self._state, _IDLE)
            with _helpers_lock:
                _idle.append(self)
            code = _report_then_wait_for_go(items.done, mine, items.count, self._state, self._spins)
            if code == -1:
                items.all_done.release()
                code = _wait_for_go(self._state, self._spins)


_helpers_lock = threading.Lock()
_idle: list[_Helper] = []  # helpers between batches
_made = 0  # helpers made in this process


def _forget_helpers() -> None:
    """In a forked child (a DataLoader worker): the parent's helper threads do not exist here."""
    global _helpers_lock, _made
    _helpers_lock = threading.Lock()
    _idle.clear()
    _made = 0


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_helpers)


def _take_helpers(wanted: int) -> list[_Helper]:
    """Up to ``wanted`` idle helpers, made where fewer than ``wanted`` exist; fewer where other
    callers' batches hold the rest (their threads are busy: more would only share the cores)."""
    global _made
    with _helpers_lock:
        taken = [_idle.pop() for _ in range(min(wanted, len(_idle)))]
        new = max(0, min(wanted - len(taken), wanted - _made))
        _made += new
    return taken + [_Helper() for _ in range(new)]


def threads_for(batch_size: int, num_neurons: int, threads: int) -> int:
    """How many of ``threads`` a batch is worth: each with ``MIN_CHUNK_ELEMENTS`` neurons at
    least, one at least."""
    return max(1, min(threads, batch_size * num_neurons // MIN_CHUNK_ELEMENTS))


def sample_chunks(batch_size: int, num_neurons: int, max_samples: int, threads: int) -> list[tuple[int, int]]:
    """Split samples ``0..batch_size`` into contiguous ``(start, stop)`` ranges for the
    NumPy path's threads, which take them in turn: one range per thread (as many threads as
    :func:`threads_for` gives), the last :data:`TAIL` of the batch in one range more, and no
    range longer than ``max_samples``."""
    threads = threads_for(batch_size, num_neurons, threads)
    tail = min(int(batch_size * TAIL), max_samples) if threads > 1 else 0
    head = batch_size - tail
    chunks = max(threads, -(-head // max_samples))
    edges = [head * i // chunks for i in range(chunks + 1)] + ([batch_size] if tail else [])
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def map_on_threads(work: Callable[[int], R], count: int, threads: int) -> list[R]:
    """``[work(i) for i in range(count)]`` on up to ``threads`` threads, this one included,
    each taking the next item until none is left.

    The other threads are helpers kept between calls; where other callers hold them, this
    thread does more of the items itself. It waits for the items, not for the helpers: one
    slow to wake finds nothing left. Every item runs, and the caller gets the error of the
    lowest item that failed, whatever the threads.
    """
    threads = min(threads, count)
    helpers = _take_helpers(threads - 1) if threads > 1 else []
    if not helpers:  # in order: the first error is the lowest item's
        return [work(i) for i in range(count)]
    items = _Items(work, count)
    for helper in helpers:
        helper.start(items)
    if not _report_then_wait_for_all(items.done, items.take_all(), count, SPIN_LOADS):
        items.all_done.acquire()  # released by the helper that completed the items
    if items.errors:
        raise items.errors[min(items.errors)]
    return items.results


class _Items(Generic[R]):
    """The shared state of :func:`map_on_threads`: the next item, the results and the errors
    by item, the ``done`` word (each thread adds the items it ran once it runs no more) and
    ``all_done``, released for a caller that sleeps until they are all done."""

    def __init__(self, work: Callable[[int], R], count: int):
        self.work = work
        self.count = count
        self.results: list[R] = [None] * count  # type: ignore[list-item]
        self.errors: dict[int, BaseException] = {}
        self.lock = threading.Lock()
        self.next = 0
        self.done = atomics.new_word()
        self.all_done = threading.Lock()
        self.all_done.acquire()

    def _take(self) -> int | None:
        with self.lock:
            if self.next == self.count:
                return None
            self.next += 1
            return self.next - 1

    def take_all(self) -> int:
        """Run items until none is left; how many. Errors are kept for the caller, not raised."""
        ran = 0
        while (i := self._take()) is not None:
            try:
                self.results[i] = self.work(i)
            except BaseException as err:  # noqa: BLE001 - handed to the caller by map_on_threads
                with self.lock:
                    self.errors[i] = err
            ran += 1
        return ran
