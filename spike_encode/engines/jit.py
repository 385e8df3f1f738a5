"""numba, where the ``fast`` extra installed it: the switch that turns it off and the one
way this package compiles a function (no GIL, cached on disk)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

try:
    import numba
except ImportError:  # the optional "fast" extra
    numba = None

__all__ = ["DISABLE_ENV", "available", "compiled_or_none", "compiled_or_python"]

DISABLE_ENV = "SPIKE_ENCODE_NO_NUMBA"
"""Environment variable: set to a non-empty value to keep the NumPy path with numba installed."""


def available() -> bool:
    """Whether the compiled loop runs here (numba installed and not disabled)."""
    return numba is not None and not os.environ.get(DISABLE_ENV)


def _njit(function: Callable, nogil: bool = True) -> Any:
    try:
        return numba.njit(nogil=nogil, cache=True)(function)
    except RuntimeError:  # no writable cache folder: compiled anew in each process
        return numba.njit(nogil=nogil)(function)


def compiled_or_none(function: Callable) -> Any:
    """``function`` compiled without the GIL, cached on disk where numba finds a writable
    cache folder; ``None`` without numba."""
    return None if numba is None else _njit(function)


def compiled_or_python(function: Callable | None = None, *, nogil: bool = True) -> Any:
    """``function`` compiled as :func:`compiled_or_none` does where numba is installed
    (whatever :data:`DISABLE_ENV` says: it turns off the compiled loop only), else
    ``function`` itself. ``nogil=False``: called from Python, it keeps the GIL (an operation
    of nanoseconds, which letting the GIL go would only slow and expose to a thread switch);
    a decorator with arguments then."""
    if function is None:
        return functools.partial(compiled_or_python, nogil=nogil)
    return function if numba is None else _njit(function, nogil)
