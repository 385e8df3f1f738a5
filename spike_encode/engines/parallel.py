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
from typing import Generic, TypeVar

__all__ = ["MIN_CHUNK_ELEMENTS", "TAIL", "map_on_threads", "sample_chunks"]

R = TypeVar("R")

MIN_CHUNK_ELEMENTS = 100_000
"""Fewest neurons (samples x neurons per sample) worth a thread of their own: about a
quarter of a millisecond of work, many times a thread hand-off."""

TAIL = 1 / 16
"""Share of a batch split over threads for work that holds the GIL part of the time (the
NumPy path), left to whichever thread finishes its range first."""


class _Helper:
    """A thread kept for later batches that runs one batch's items at a time, woken by
    releasing one bare lock (an executor's ``submit`` also makes a future and queues it,
    and its caller waits on an event: microseconds of the batch's critical path)."""

    def __init__(self) -> None:
        self._go = threading.Lock()
        self._go.acquire()
        self._items: _Items | None = None
        threading.Thread(target=self._serve, name="spike_encode", daemon=True).start()

    def start(self, items: "_Items") -> None:
        """Take items from ``items`` until none is left, then become idle again."""
        self._items = items
        self._go.release()

    def _serve(self) -> None:
        while True:
            self._go.acquire()
            items, self._items = self._items, None
            items.take_all()
            with _helpers_lock:
                _idle.append(self)


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


def sample_chunks(batch_size: int, num_neurons: int, max_samples: int, threads: int, *,
                  guided: bool = True) -> list[tuple[int, int]]:
    """Split samples ``0..batch_size`` into contiguous ``(start, stop)`` ranges, which the
    threads take in turn: as many threads as have ``MIN_CHUNK_ELEMENTS`` neurons each (fewer
    for smaller batches), no range longer than ``max_samples``.

    ``guided`` (work that holds no GIL: the compiled loop): each range is ``1/threads`` of the
    samples still left, down to ``MIN_CHUNK_ELEMENTS / 4`` neurons (guided self-scheduling).
    The caller takes the first, half the batch on two threads; a thread that starts late or
    runs on a core another process holds takes fewer, and the threads end close together
    (with equal halves, the caller would wait for all of a slow thread's half).
    Otherwise (the NumPy path, where each range more costs more than it balances): one range
    per thread, and the last :data:`TAIL` of the batch in one range."""
    threads = max(1, min(threads, batch_size * num_neurons // MIN_CHUNK_ELEMENTS))
    if threads > 1 and guided:
        smallest = max(1, MIN_CHUNK_ELEMENTS // 4 // num_neurons)
        edges = [0]
        while (left := batch_size - edges[-1]) > 0:
            size = max(smallest, left // threads)
            size = min(max_samples, left if left - size < smallest else size)
            edges.append(edges[-1] + size)
    else:
        tail = min(int(batch_size * TAIL), max_samples) if threads > 1 else 0
        head = batch_size - tail
        chunks = max(threads, -(-head // max_samples))
        edges = [head * i // chunks for i in range(chunks + 1)] + ([batch_size] if tail else [])
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def map_on_threads(work: Callable[[int], R], count: int, threads: int) -> list[R]:
    """``[work(i) for i in range(count)]`` on up to ``threads`` threads, this one included,
    each taking the next item until none is left.

    The other threads are helpers kept between calls, each woken by one lock; where other
    callers hold them, this thread does more of the items itself. It waits for the items,
    not for the helpers: one slow to wake finds nothing left. Every item runs, and the
    caller gets the error of the lowest item that failed, whatever the threads.
    """
    threads = min(threads, count)
    helpers = _take_helpers(threads - 1) if threads > 1 else []
    if not helpers:  # in order: the first error is the lowest item's
        return [work(i) for i in range(count)]
    items = _Items(work, count)
    for helper in helpers:
        helper.start(items)
    items.take_all()
    items.all_done.acquire()  # released by whichever thread finished the last item
    if items.errors:
        raise items.errors[min(items.errors)]
    return items.results


class _Items(Generic[R]):
    """The shared state of :func:`map_on_threads`: the next item, the items done, the
    results and the errors by item; ``all_done`` is held until the last item is done."""

    def __init__(self, work: Callable[[int], R], count: int):
        self.work = work
        self.count = count
        self.results: list[R] = [None] * count  # type: ignore[list-item]
        self.errors: dict[int, BaseException] = {}
        self.lock = threading.Lock()
        self.next = 0
        self.done = 0
        self.all_done = threading.Lock()
        self.all_done.acquire()

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
                    self.all_done.release()
