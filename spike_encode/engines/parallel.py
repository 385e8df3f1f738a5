"""Spread a CPU batch over a few threads: NumPy releases the GIL in its array loops, so
contiguous chunks of samples encode side by side.

The engine asks for torch's intra-op thread count (``torch.get_num_threads()``) at each
call unless told otherwise: ``torch.set_num_threads`` governs the encoder as it governs
torch, and inside DataLoader workers (where torch sets it to 1) the encoder stays on one
thread.

A batch of MNIST takes a few milliseconds, and waking a sleeping thread can take about as
long on a virtual machine. So, as OpenMP's threads do, the helper threads and the caller
wait for each other's next step by polling (yielding the core and the GIL at each poll)
for up to :data:`SPIN_S` seconds before they sleep.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["MIN_CHUNK_ELEMENTS", "SPIN_S", "sample_chunks", "run_in_two_rounds"]

R = TypeVar("R")

MIN_CHUNK_ELEMENTS = 100_000
"""Fewest neurons (samples x neurons per sample) worth a thread of their own: about a
quarter of a millisecond of work, many times a thread hand-off."""

SPIN_S = 0.002
"""Longest a helper thread (or the caller) polls for its next step before it sleeps (s)."""


def _await(event: threading.Event) -> None:
    """Wait for ``event``: poll for up to :data:`SPIN_S`, then sleep until it is set."""
    deadline = time.perf_counter() + SPIN_S
    while not event.is_set() and time.perf_counter() < deadline:
        time.sleep(0)  # yields the core and the GIL
    event.wait()


class _Helpers:
    """``count`` daemon threads taking tasks in turn; each polls for the next task for
    :data:`SPIN_S` after finishing one before it sleeps."""

    def __init__(self, count: int):
        self._tasks: collections.deque[Callable[[], None]] = collections.deque()
        self._wake = threading.Condition()
        for i in range(count):
            threading.Thread(target=self._serve, name=f"spike_encode_{i}", daemon=True).start()

    def submit(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the next free helper (errors are the task's to keep)."""
        with self._wake:
            self._tasks.append(task)
            self._wake.notify()

    def _next(self) -> Callable[[], None]:
        deadline = time.perf_counter() + SPIN_S
        while not self._tasks and time.perf_counter() < deadline:
            time.sleep(0)
        with self._wake:
            while not self._tasks:
                self._wake.wait()
            return self._tasks.popleft()

    def _serve(self) -> None:
        while True:
            self._next()()


_helpers: dict[int, _Helpers] = {}  # threads -> helpers
_helpers_lock = threading.Lock()


def _forget_helpers() -> None:
    """In a forked child (a DataLoader worker): the parent's helper threads do not exist here."""
    global _helpers_lock
    _helpers_lock = threading.Lock()
    _helpers.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_helpers)


def helpers(count: int) -> _Helpers:
    """``count`` helper threads, made at the first call and kept for later ones."""
    with _helpers_lock:
        if count not in _helpers:
            _helpers[count] = _Helpers(count)
        return _helpers[count]


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
    until none is left (one hand-off to the helpers per call). Every first-round item runs,
    and the caller gets the error of the lowest one that failed, whatever the threads; then
    ``between`` and the second round do not run. A failing ``between`` or second-round item
    stops the items still to start, and its error reaches the caller.
    """
    threads = min(threads, count)
    if threads <= 1:  # in order: the first error is the lowest item's
        between([first(i) for i in range(count)])
        for i in range(count):
            second(i)
        return
    rounds = _TwoRounds(first, between, second, count)
    pool = helpers(threads - 1)
    for _ in range(threads - 1):
        pool.submit(rounds.work)
    rounds.work()
    _await(rounds.finished)  # the items, not the helpers: one held up with nothing to do is not waited for
    if rounds.errors:
        raise rounds.errors[min(rounds.errors)]


class _TwoRounds:
    """The shared state of :func:`run_in_two_rounds`: the next item and the items done of
    each round, and the errors by ``(round, item)`` (``between``'s as ``(0, count)``)."""

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
        self.errors: dict[tuple[int, int], BaseException] = {}

    def _take(self, round_: int) -> int | None:
        with self.lock:
            if (round_ == 1 and self.errors) or self.next[round_] == self.count:
                return None
            self.next[round_] += 1
            return self.next[round_] - 1

    def _run(self, round_: int, i: int) -> bool:
        """Run item ``i`` of ``round_``; whether it was the round's last to finish."""
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
            return no_more and self.done[round_] == self.next[round_]

    def _between(self) -> None:
        if not self.errors:
            try:
                self.between(self.results)
            except BaseException as err:  # noqa: BLE001 - as in _run
                with self.lock:
                    self.errors[(0, self.count)] = err
        if self.errors:  # no second round
            self.finished.set()
        self.second_round.set()

    def work(self) -> None:
        """Take items until none is left; errors are kept for the caller, not raised."""
        while (i := self._take(0)) is not None:
            if self._run(0, i):
                self._between()
        _await(self.second_round)
        while (i := self._take(1)) is not None:
            if self._run(1, i):
                self.finished.set()
