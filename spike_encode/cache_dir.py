"""Where spike_encode keeps files it can rebuild: compiled GeNN models, encoded datasets."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "default_cache_dir"]

#: Environment variable that overrides the cache directory.
CACHE_ENV = "SPIKE_ENCODE_CACHE"


def default_cache_dir() -> Path:
    """``$SPIKE_ENCODE_CACHE`` if set (``~`` expanded), else ``~/.cache/spike_encode``.

    Only computes the path; nothing is created.
    """
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    return Path.home() / ".cache" / "spike_encode"
