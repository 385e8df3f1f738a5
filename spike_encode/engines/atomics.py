"""Atomic operations on a *word*: a one-element int64 array that threads share, read and
written by compiled code that holds no GIL (:mod:`.parallel`'s hand-off between threads,
the compiled loop's next row).

Where numba is installed (with or without ``SPIKE_ENCODE_NO_NUMBA``, which turns off the
compiled loop only), each operation is one sequentially consistent LLVM atomic, inlined into
compiled code and, called from Python, run without letting the GIL go; else a Python
function under a lock, which behaves the same between threads that hold the GIL
(:data:`COMPILED` says which).
"""

from __future__ import annotations

import threading

import numpy as np

from .jit import compiled_or_python, numba

__all__ = ["COMPILED", "compare_and_swap", "fetch_add", "load", "new_word", "store"]

COMPILED = numba is not None
"""Whether the operations are compiled atomics (which compiled code can call without the GIL)."""


def new_word(value: int = 0) -> np.ndarray:
    """A word holding ``value``."""
    return np.full(1, value, dtype=np.int64)


if COMPILED:
    from numba.core import cgutils
    from numba.extending import intrinsic

    _ORDER = "seq_cst"

    def _pointer(context, builder, array_type, array):  # pragma: no cover - runs while compiling
        view = context.make_array(array_type)(context, builder, array)
        return cgutils.get_item_pointer(context, builder, array_type, view, [context.get_constant(numba.intp, 0)],
                                        wraparound=False)

    @intrinsic
    def _load(typingctx, word):  # pragma: no cover - runs while compiling
        def codegen(context, builder, signature, args):
            return builder.load_atomic(_pointer(context, builder, signature.args[0], args[0]), _ORDER, 8)
        return word.dtype(word), codegen

    @intrinsic
    def _store(typingctx, word, value):  # pragma: no cover - runs while compiling
        def codegen(context, builder, signature, args):
            value = context.cast(builder, args[1], signature.args[1], signature.args[0].dtype)
            builder.store_atomic(value, _pointer(context, builder, signature.args[0], args[0]), _ORDER, 8)
            return context.get_dummy_value()
        return numba.types.none(word, value), codegen

    @intrinsic
    def _fetch_add(typingctx, word, value):  # pragma: no cover - runs while compiling
        def codegen(context, builder, signature, args):
            value = context.cast(builder, args[1], signature.args[1], signature.args[0].dtype)
            return builder.atomic_rmw("add", _pointer(context, builder, signature.args[0], args[0]), value, _ORDER)
        return word.dtype(word, value), codegen

    @intrinsic
    def _compare_and_swap(typingctx, word, expected, new):  # pragma: no cover - runs while compiling
        def codegen(context, builder, signature, args):
            dtype = signature.args[0].dtype
            expected = context.cast(builder, args[1], signature.args[1], dtype)
            new = context.cast(builder, args[2], signature.args[2], dtype)
            pair = builder.cmpxchg(_pointer(context, builder, signature.args[0], args[0]), expected, new, _ORDER,
                                   _ORDER)
            return builder.extract_value(pair, 0)
        return word.dtype(word, expected, new), codegen
else:
    _lock = threading.Lock()

    def _load(word: np.ndarray) -> int:
        return int(word[0])

    def _store(word: np.ndarray, value: int) -> None:
        word[0] = value

    def _fetch_add(word: np.ndarray, value: int) -> int:
        with _lock:
            old = int(word[0])
            word[0] = old + value
        return old

    def _compare_and_swap(word: np.ndarray, expected: int, new: int) -> int:
        with _lock:
            old = int(word[0])
            if old == expected:
                word[0] = new
        return old


@compiled_or_python(nogil=False)
def load(word):
    """The word's value."""
    return _load(word)


@compiled_or_python(nogil=False)
def store(word, value):
    """Set the word to ``value``."""
    _store(word, value)


@compiled_or_python(nogil=False)
def fetch_add(word, value):
    """Add ``value`` to the word; its value before."""
    return _fetch_add(word, value)


@compiled_or_python(nogil=False)
def compare_and_swap(word, expected, new):
    """Set the word to ``new`` where it holds ``expected``; its value before (``expected``: swapped)."""
    return _compare_and_swap(word, expected, new)
