"""Spread a CPU batch over a few threads: NumPy releases the GIL in its array loops, so
contiguous chunks of samples encode side by side.

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

__all__ = ["MIN_CHUNK_ELEMENTS", "sample_chunks", "run_in_two_rounds"]

R = TypeVar("R")

MIN_CHUNK_ELEMENTS = 100_000
"""Fewest neurons (samples x neurons per sample) worth a thread of their own: about a
quarter of a millisecond of work, many times a thread hand-off."""

_pools: dict[int, ThreadPoolExecutor] = {}  # threads -> pool
_pools_lock = threading.Lock()


def _forget_pools() -> None:
    """In a forked child (a DataLoader worker): the parent's pool threads do not exist here."""
    global _pools_lock
    _pools_lock = threading.Lock()
    _pools.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_pools)


def sample_chunks(batch_size: int, num_neurons: int, max_samples: int, threads: int) -> list[tuple[int, int]]:
    """Split samples ``0..batch_size`` into contiguous ``(start, stop)`` ranges: one per
    thread as long as each has ``MIN_CHUNK_ELEMENTS`` neurons (fewer for smaller batches),
    none longer than ``max_samples``. (More, smaller chunks would balance better, but cost
    more than they balance: the threads contend for the GIL between NumPy calls.)"""
    threads = max(1, min(threads, batch_size * num_neurons // MIN_CHUNK_ELEMENTS))
    chunks = max(threads, -(-batch_size // max_samples))
    edges = [batch_size * i // chunks for i in range(chunks + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def run_in_two_rounds(first: Callable[[int], R], between: Callable[[list[R]], None],
                      second: Callable[[int], None], count: int, threads: int) -> None:
    """``first(i)`` for ``i`` in ``range(count)``; once all are done, ``between`` of their
    results; then ``second(i)`` for every ``i``.

    On up to ``threads`` threads, this one included, each taking the next item of a round
    until none is left (one hand-off to the pool per call). The first error raised stops
    the rest and reaches the caller.
    """
    threads = min(threads, count)
    if threads <= 1:
        between([first(i) for i in range(count)])
        for i in range(count):
            second(i)
        return
    rounds = _TwoRounds(first, between, second, count)
    for _ in range(threads - 1):
        _executor(threads - 1).submit(rounds.work)
    rounds.work()
    rounds.finished.wait()  # the items, not the helpers: one held up with nothing to do is not waited for
    if rounds.error is not None:
        raise rounds.error


class _TwoRounds:
    """The shared state of :func:`run_in_two_rounds`: the next item and the items done of
    each round, and the first error."""

    def __init__(self, first: Callable[[int], R], between: Callable[[list[R]], None],
                 second: Callable[[int], None], count: int):
        self.steps = (first, second)
        self.between = between
        self.count = count
        self.results: list[R] = [None] * count  # type: ignore[list-item]
        self.lock = threading.Lock()
        self.next = [0, 0]
        self.done = [0, 0]
        self.second_round = threading.Event()
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def _take(self, round_: int) -> int | None:
        with self.lock:
            if self.error is not None or self.next[round_] == self.count:
                return None
            self.next[round_] += 1
            return self.next[round_] - 1

    def _last(self, round_: int) -> bool:
        with self.lock:
            self.done[round_] += 1
            return self.done[round_] == self.count

    def work(self) -> None:
        """Take items until none is left; errors are kept for the caller, not raised."""
        first, second = self.steps
        try:
            while (i := self._take(0)) is not None:
                self.results[i] = first(i)
                if self._last(0):
                    self.between(self.results)
                    self.second_round.set()
            self.second_round.wait()
            while (i := self._take(1)) is not None:
                second(i)
                if self._last(1):
                    self.finished.set()
        except BaseException as err:  # noqa: BLE001 - handed to the caller by run_in_two_rounds
            with self.lock:
                self.error = self.error or err
            self.second_round.set()
            self.finished.set()


def _executor(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` threads, kept for later calls."""
    with _pools_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="spike_encode")
        return _pools[threads]
