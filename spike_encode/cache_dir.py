"""Where spike_encode keeps built GeNN models (and other per-user caches)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "default_cache_dir"]

#: Environment variable that overrides the cache directory.
CACHE_ENV = "SPIKE_ENCODE_CACHE"


def default_cache_dir() -> Path:
    """``$SPIKE_ENCODE_CACHE`` if set, else ``$XDG_CACHE_HOME/spike_encode`` (``~/.cache/spike_encode``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "spike_encode"
