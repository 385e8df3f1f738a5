"""Atomic words: what the threads of the CPU engine count blocks and hand batches over with."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from spike_encode.engines import atomics


def test_each_operation_answers_with_the_value_before():
    word = atomics.new_word(5)
    assert atomics.load(word) == 5
    assert atomics.fetch_add(word, 3) == 5 and atomics.load(word) == 8
    assert atomics.compare_and_swap(word, 8, 1) == 8 and atomics.load(word) == 1  # swapped
    assert atomics.compare_and_swap(word, 8, 2) == 1 and atomics.load(word) == 1  # not: 1 is not 8
    atomics.store(word, -7)
    assert atomics.load(word) == -7 and word.dtype.name == "int64" and word.shape == (1,)


def test_threads_adding_at_once_lose_no_addition():
    word = atomics.new_word()

    def add():
        for _ in range(20_000):
            atomics.fetch_add(word, 1)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert atomics.load(word) == 80_000


def test_compiled_loops_adding_without_the_gil_lose_no_addition():
    """The compiled loop's threads take rows from a word at once, on all cores: each
    ``fetch_add`` must be one atomic step, or two threads take the same row."""
    numba = pytest.importorskip("numba", reason="compiled atomics need numba (pip install 'spike_encode[fast]')")
    assert atomics.COMPILED

    @numba.njit(nogil=True)
    def take(word, count, seen):
        for _ in range(count):
            seen[atomics.fetch_add(word, 1)] += 1

    word, count = atomics.new_word(), 2_000_000
    seen = [np.zeros(2 * count, np.int64) for _ in range(2)]
    take(atomics.new_word(), 1, np.zeros(1, np.int64))  # compiled before the threads start
    threads = [threading.Thread(target=take, args=(word, count, s)) for s in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert atomics.load(word) == 2 * count
    assert np.array_equal(seen[0] + seen[1], np.ones(2 * count, np.int64)), "a value was taken twice"
