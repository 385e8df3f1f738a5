"""Spread a CPU batch over a few threads: contiguous chunks of samples encode side by side
(the compiled loop holds no GIL; NumPy releases it in its array loops).

The engine asks for torch's intra-op thread count (``torch.get_num_threads()``) at each
call unless told otherwise: ``torch.set_num_threads`` governs the encoder as it governs
torch, and inside DataLoader workers (where torch sets it to 1) the encoder stays on one
thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["MIN_CHUNK_ELEMENTS", "TAIL", "sample_chunks", "run_in_two_rounds"]

R = TypeVar("R")

MIN_CHUNK_ELEMENTS = 100_000
"""Fewest neurons (samples x neurons per sample) worth a thread of their own: about a
quarter of a millisecond of work, many times a thread hand-off."""

TAIL = 1 / 16
"""Share of a batch split over threads left to whichever thread finishes its range first."""

_pools: dict[int, ThreadPoolExecutor] = {}  # threads -> pool
_pools_lock = threading.Lock()


def _forget_pools() -> None:
    """In a forked child (a DataLoader worker): the parent's pool threads do not exist here."""
    global _pools_lock
    _pools_lock = threading.Lock()
    _pools.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_pools)


def _executor(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` threads, kept for later calls."""
    with _pools_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="spike_encode")
        return _pools[threads]


def sample_chunks(batch_size: int, num_neurons: int, max_samples: int, threads: int) -> list[tuple[int, int]]:
    """Split samples ``0..batch_size`` into contiguous ``(start, stop)`` ranges: one per
    thread as long as each has ``MIN_CHUNK_ELEMENTS`` neurons (fewer for smaller batches),
    none longer than ``max_samples``; with several threads, the last :data:`TAIL` of the
    batch as one more range, for whichever thread is done first (the pool's thread starts
    a little after the caller's). More, smaller ranges would balance better, but cost more
    than they balance."""
    threads = max(1, min(threads, batch_size * num_neurons // MIN_CHUNK_ELEMENTS))
    tail = min(int(batch_size * TAIL), max_samples) if threads > 1 else 0
    head = batch_size - tail
    chunks = max(threads, -(-head // max_samples))
    edges = [head * i // chunks for i in range(chunks + 1)] + [batch_size]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def run_in_two_rounds(first: Callable[[int], R], between: Callable[[list[R]], None],
                      second: Callable[[int], None], count: int, threads: int) -> None:
    """``first(i)`` for ``i`` in ``range(count)``; once all are done, ``between`` of their
    results; then ``second(i)`` for every ``i``.

    On up to ``threads`` threads, this one included, each taking the next item of a round
    until none is left (one hand-off to the pool per call); ``between`` runs in this
    thread, so what it allocates comes from this thread's memory arena, as with one thread.
    Every first-round item runs, and the caller gets the error of the lowest one that
    failed, whatever the threads; then ``between`` and the second round do not run. A
    failing ``between`` or second-round item stops the items still to start, and its error
    reaches the caller.
    """
    threads = min(threads, count)
    if threads <= 1:  # in order: the first error is the lowest item's
        between([first(i) for i in range(count)])
        for i in range(count):
            second(i)
        return
    rounds = _TwoRounds(first, second, count)
    pool = _executor(threads - 1)
    for _ in range(threads - 1):
        pool.submit(rounds.help)
    rounds.items(0)
    rounds.round_done[0].wait()  # the items, not the pool: a thread held up elsewhere is not waited for
    if not rounds.errors:
        try:
            between(rounds.results)
        except BaseException as err:  # noqa: BLE001 - raised below, once the pool threads are let go
            rounds.errors[(0, count)] = err
    rounds.second_round.set()
    if not rounds.errors:
        rounds.items(1)
        rounds.round_done[1].wait()
    if rounds.errors:
        raise rounds.errors[min(rounds.errors)]


class _TwoRounds:
    """The shared state of :func:`run_in_two_rounds`: the next item and the items done of
    each round, and the errors by ``(round, item)`` (``between``'s as ``(0, count)``)."""

    def __init__(self, first: Callable[[int], R], second: Callable[[int], None], count: int):
        self.steps = (first, second)
        self.count = count
        self.results: list[R] = [None] * count  # type: ignore[list-item]
        self.lock = threading.Lock()
        self.next = [0, 0]
        self.done = [0, 0]
        self.round_done = (threading.Event(), threading.Event())
        self.second_round = threading.Event()
        self.errors: dict[tuple[int, int], BaseException] = {}

    def _take(self, round_: int) -> int | None:
        with self.lock:
            if (round_ == 1 and self.errors) or self.next[round_] == self.count:
                return None
            self.next[round_] += 1
            return self.next[round_] - 1

    def _run(self, round_: int, i: int) -> None:
        """Run item ``i`` of ``round_``; the round's last to finish says so."""
        try:
            if round_ == 0:
                self.results[i] = self.steps[0](i)
            else:
                self.steps[1](i)
        except BaseException as err:  # noqa: BLE001 - handed to the caller by run_in_two_rounds
            with self.lock:
                self.errors[(round_, i)] = err
        with self.lock:
            self.done[round_] += 1
            no_more = self.next[round_] == self.count or (round_ == 1 and bool(self.errors))
            if no_more and self.done[round_] == self.next[round_]:
                self.round_done[round_].set()

    def items(self, round_: int) -> None:
        """Take items of ``round_`` until none is left; errors are kept for the caller, not raised."""
        while (i := self._take(round_)) is not None:
            self._run(round_, i)

    def help(self) -> None:
        """A pool thread's part: items of the first round, then of the second."""
        self.items(0)
        self.second_round.wait()
        self.items(1)
