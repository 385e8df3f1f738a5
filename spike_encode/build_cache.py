"""A directory cache of built artefacts that survives crashes and concurrent builders.

An entry is a directory named by the hash of its key. It is built in a temporary sibling
directory under an exclusive file lock (``filelock``), marked complete with the size and
digest of every file it holds, then renamed into place in one atomic step, so readers see
either nothing or a whole entry. An entry that is half-written (a killed builder left no
completion marker) or damaged (a file missing, truncated or changed since it was built) is
removed and rebuilt, as is anything else found in its place (a regular file, a symbolic link:
removed, never followed) or in the lock's place (a folder). Any failure to read or parse a
completion marker means the entry is incomplete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
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
    """Size and BLAKE2b digest of every file under ``folder`` (but the completion marker);
    symbolic links are not followed (a file replaced by one is missing)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name != _COMPLETE:
            data = path.read_bytes()
            files[path.relative_to(folder).as_posix()] = [len(data), hashlib.blake2b(data, digest_size=16).hexdigest()]
    return files


def is_complete(entry: Path) -> bool:
    """True if ``entry`` is a finished cache entry whose files are all as they were built
    (a truncated or missing library, say, makes it incomplete: it is rebuilt)."""
    try:
        if not (_is(entry, stat.S_ISDIR) and _is(entry / _COMPLETE, stat.S_ISREG)):  # no links followed
            return False
        recorded = json.loads((entry / _COMPLETE).read_text())["files"]
        return isinstance(recorded, dict) and recorded == _manifest(entry)
    except (OSError, ValueError, LookupError, TypeError, RecursionError, MemoryError):  # any bad marker
        return False


def _is(path: Path, kind: Callable[[int], bool]) -> bool:
    """Whether ``path`` itself (a symbolic link is not followed) is of ``kind`` (``stat.S_ISDIR``...)."""
    try:
        return kind(os.lstat(path).st_mode)
    except OSError:
        return False


def _remove(path: Path) -> None:
    """Remove whatever is at ``path``: a folder with all it holds, a file, or a symbolic link
    (never what it points to)."""
    if _is(path, stat.S_ISDIR):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _lock(path: Path) -> FileLock:
    """The lock file ``path``, after removing a folder or link found in its place."""
    if os.path.lexists(path) and not _is(path, stat.S_ISREG):
        try:
            _remove(path)
        except FileNotFoundError:  # another process removed it first
            pass
        except OSError as err:
            raise OSError(f"the build cache lock {path} is not a file and cannot be removed ({err}); "
                          "remove it by hand") from err
    return FileLock(path)


def discard(entry: Path) -> None:
    """Remove a (damaged) entry under its lock, so the next :func:`cached_build` rebuilds it."""
    with _lock(entry.with_name(f"{entry.name}.lock")):
        if os.path.lexists(entry):
            gone = entry.with_name(f"{entry.name}.tmp-discarded")
            with contextlib.suppress(OSError):
                _remove(gone)
            os.rename(entry, gone)  # readers stop seeing it at once; then it goes
            with contextlib.suppress(OSError):
                _remove(gone)


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
    with _lock(root / f"{key}.lock"):
        if is_complete(entry):  # another process finished it while we waited
            return entry, False
        _remove(entry)  # half-written by a killed process, damaged since, or not a folder at all
        for stale in root.glob(f"{key}.tmp-*"):  # work dirs of killed builders
            with contextlib.suppress(OSError):
                _remove(stale)
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
