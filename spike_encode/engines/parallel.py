"""Spread a CPU batch over a few threads: NumPy releases the GIL in its array loops, so
contiguous chunks of samples encode side by side.

The thread count is torch's intra-op setting (``torch.get_num_threads()``) at each call:
``torch.set_num_threads`` governs the encoder as it governs torch, and inside DataLoader
workers (where torch sets it to 1) the encoder stays on one thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

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


def sample_chunks(batch_size: int, num_neurons: int, max_samples: int) -> list[tuple[int, int]]:
    """Split samples ``0..batch_size`` into contiguous ``(start, stop)`` ranges: one per
    thread (``torch.get_num_threads()``) for batches of at least ``MIN_CHUNK_ELEMENTS``
    neurons per thread, fewer for smaller batches, none longer than ``max_samples``."""
    threads = max(1, min(torch.get_num_threads(), batch_size * num_neurons // MIN_CHUNK_ELEMENTS))
    chunks = max(threads, -(-batch_size // max_samples))
    edges = [batch_size * i // chunks for i in range(chunks + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def run_in_two_rounds(first: Callable[[int], R], between: Callable[[list[R]], None],
                      second: Callable[[int], None], count: int) -> None:
    """``first(i)`` for ``i`` in ``range(count)``; once all are done, ``between`` of their
    results; then ``second(i)`` for every ``i``.

    On up to ``torch.get_num_threads()`` threads, this one included: thread ``k`` takes
    ``i = k, k + threads, ...`` in both rounds, with one hand-off to the pool and a barrier
    between the rounds (where ``between`` runs). The first error raised reaches the caller.
    """
    threads = min(torch.get_num_threads(), count)
    if threads <= 1:
        between([first(i) for i in range(count)])
        for i in range(count):
            second(i)
        return
    results: list[R] = [None] * count  # type: ignore[list-item]
    barrier = threading.Barrier(threads, action=lambda: between(results))

    def work(k: int) -> None:
        try:
            for i in range(k, count, threads):
                results[i] = first(i)
            barrier.wait()
            for i in range(k, count, threads):
                second(i)
        except BaseException:
            barrier.abort()  # the others stop waiting
            raise

    helpers = [_executor(threads - 1).submit(work, k) for k in range(1, threads)]
    errors = []
    for run in (lambda: work(0), *(helper.result for helper in helpers)):
        try:
            run()
        except BaseException as err:  # noqa: BLE001 - re-raised below
            errors.append(err)
    first_cause = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)] or errors
    if first_cause:
        raise first_cause[0]


def _executor(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` threads, kept for later calls."""
    with _pools_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="spike_encode")
        return _pools[threads]
