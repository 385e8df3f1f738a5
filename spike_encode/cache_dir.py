"""Where spike_encode keeps files it can rebuild: compiled GeNN models, encoded datasets."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["CACHE_ENV", "default_cache_dir"]

#: Environment variable that overrides the cache directory.
CACHE_ENV = "SPIKE_ENCODE_CACHE"


def default_cache_dir() -> Path:
    """``$SPIKE_ENCODE_CACHE`` if set (``~`` expanded), else the platform's user cache folder
    for ``spike_encode`` (``platformdirs.user_cache_dir``: ``$XDG_CACHE_HOME/spike_encode`` or
    ``~/.cache/spike_encode`` on Linux, ``~/Library/Caches/spike_encode`` on macOS). Only
    computes the path; nothing is created."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    return Path(platformdirs.user_cache_dir("spike_encode", appauthor=False))
