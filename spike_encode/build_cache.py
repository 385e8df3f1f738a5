"""A directory cache of built artefacts that survives crashes and concurrent builders.

An entry is a directory named by the hash of its key. It is built in a temporary sibling
directory under an exclusive file lock, marked complete, then renamed into place in one
atomic step, so readers see either nothing or a whole entry. A half-written entry left by
a killed process (no completion marker) is removed and rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

__all__ = ["cache_key", "cached_build"]

_COMPLETE = "COMPLETE.json"


def cache_key(description: Mapping[str, object]) -> str:
    """A short stable hash of a JSON-serialisable description."""
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_complete(entry: Path) -> bool:
    """True if ``entry`` is a finished cache entry."""
    return (entry / _COMPLETE).is_file()


def cached_build(root: Path, description: Mapping[str, object],
                 build: Callable[[Path], None]) -> tuple[Path, bool]:
    """The entry for ``description`` under ``root``, building it with ``build(dir)`` if needed.

    Returns:
        ``(entry_path, built_now)``.
    """
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(description)
    entry = root / key
    if is_complete(entry):
        return entry, False
    with _locked(root / f"{key}.lock"):
        if is_complete(entry):  # another process finished it while we waited
            return entry, False
        if entry.exists():  # half-written by a killed process
            shutil.rmtree(entry)
        for stale in root.glob(f"{key}.tmp-*"):  # work dirs of killed builders
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=root))
        try:
            build(work)
            (work / _COMPLETE).write_text(json.dumps(description, sort_keys=True, default=str, indent=1))
            os.rename(work, entry)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return entry, True
