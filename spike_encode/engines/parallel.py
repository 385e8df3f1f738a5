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

__all__ = ["MIN_CHUNK_ELEMENTS", "TAIL", "map_on_threads", "sample_chunks"]

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


def sample_chunks(batch_size: int, num_neurons: int, max_samples: int, threads: int, *,
                  tail_per_thread: bool = True) -> list[tuple[int, int]]:
    """Split samples ``0..batch_size`` into contiguous ``(start, stop)`` ranges: one per
    thread as long as each has ``MIN_CHUNK_ELEMENTS`` neurons (fewer for smaller batches),
    none longer than ``max_samples``; with several threads, the last :data:`TAIL` of the
    batch for whichever threads are done first (the pool's threads start a little after the
    caller's), in up to one range per thread (none under ``MIN_CHUNK_ELEMENTS / 8``
    neurons) so that the threads end close together, or in one range without
    ``tail_per_thread`` (work that holds the GIL part of the time, where each range more
    costs more than it balances)."""
    threads = max(1, min(threads, batch_size * num_neurons // MIN_CHUNK_ELEMENTS))
    tail = min(int(batch_size * TAIL), max_samples) if threads > 1 else 0
    head = batch_size - tail
    chunks = max(threads, -(-head // max_samples))
    pieces = max(1, min(threads, tail * num_neurons * 8 // MIN_CHUNK_ELEMENTS)) if tail_per_thread else 1
    edges = [head * i // chunks for i in range(chunks + 1)] + [head + tail * i // pieces for i in range(1, pieces + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def map_on_threads(work: Callable[[int], R], count: int, threads: int) -> list[R]:
    """``[work(i) for i in range(count)]`` on up to ``threads`` threads, this one included,
    each taking the next item until none is left (one hand-off to the pool per call).

    Every item runs, and the caller gets the error of the lowest item that failed, whatever
    the threads.
    """
    threads = min(threads, count)
    if threads <= 1:  # in order: the first error is the lowest item's
        return [work(i) for i in range(count)]
    items = _Items(work, count)
    pool = _executor(threads - 1)
    for _ in range(threads - 1):
        pool.submit(items.take_all)
    items.take_all()
    items.all_done.wait()  # the items, not the pool: a thread held up elsewhere is not waited for
    if items.errors:
        raise items.errors[min(items.errors)]
    return items.results


class _Items:
    """The shared state of :func:`map_on_threads`: the next item, the items done, the
    results and the errors by item."""

    def __init__(self, work: Callable[[int], R], count: int):
        self.work = work
        self.count = count
        self.results: list[R] = [None] * count  # type: ignore[list-item]
        self.errors: dict[int, BaseException] = {}
        self.lock = threading.Lock()
        self.next = 0
        self.done = 0
        self.all_done = threading.Event()

    def _take(self) -> int | None:
        with self.lock:
            if self.next == self.count:
                return None
            self.next += 1
            return self.next - 1

    def take_all(self) -> None:
        """Run items until none is left; errors are kept for the caller, not raised."""
        while (i := self._take()) is not None:
            try:
                self.results[i] = self.work(i)
            except BaseException as err:  # noqa: BLE001 - handed to the caller by map_on_threads
                with self.lock:
                    self.errors[i] = err
            with self.lock:
                self.done += 1
                if self.done == self.count:
                    self.all_done.set()
