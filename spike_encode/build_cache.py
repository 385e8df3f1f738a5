"""A directory cache of built artefacts that survives crashes and concurrent builders.

An entry is a directory named by the hash of its key. It is built in a temporary sibling
directory under an exclusive file lock (``filelock``), marked complete with the size and
digest of every file it holds, then renamed into place in one atomic step, so readers see
either nothing or a whole entry. An entry that is half-written (a killed builder left no
completion marker) or damaged (a file missing, truncated or changed since it was built) is
removed and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from filelock import FileLock

__all__ = ["cache_key", "cached_build", "is_complete", "discard"]

_COMPLETE = "COMPLETE.json"


def cache_key(description: Mapping[str, object]) -> str:
    """A short stable hash of a JSON-serialisable description."""
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _manifest(folder: Path) -> dict[str, list]:
    """Size and BLAKE2b digest of every file under ``folder`` (but the completion marker)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != _COMPLETE:
            data = path.read_bytes()
            files[path.relative_to(folder).as_posix()] = [len(data), hashlib.blake2b(data, digest_size=16).hexdigest()]
    return files


def is_complete(entry: Path) -> bool:
    """True if ``entry`` is a finished cache entry whose files are all as they were built
    (a truncated or missing library, say, makes it incomplete: it is rebuilt)."""
    try:
        recorded = json.loads((entry / _COMPLETE).read_text())["files"]
        return isinstance(recorded, dict) and recorded == _manifest(entry)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def discard(entry: Path) -> None:
    """Remove a (damaged) entry under its lock, so the next :func:`cached_build` rebuilds it."""
    with FileLock(entry.with_name(f"{entry.name}.lock")):
        if entry.exists():
            gone = entry.with_name(f"{entry.name}.tmp-discarded")
            shutil.rmtree(gone, ignore_errors=True)
            os.rename(entry, gone)  # readers stop seeing it at once; then it goes
            shutil.rmtree(gone, ignore_errors=True)


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
    with FileLock(root / f"{key}.lock"):
        if is_complete(entry):  # another process finished it while we waited
            return entry, False
        if entry.exists():  # half-written by a killed process, or damaged since
            shutil.rmtree(entry)
        for stale in root.glob(f"{key}.tmp-*"):  # work dirs of killed builders
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=root))
        try:
            build(work)
            marker = {"description": description, "files": _manifest(work)}
            (work / _COMPLETE).write_text(json.dumps(marker, sort_keys=True, default=str, indent=1))
            os.rename(work, entry)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return entry, True
