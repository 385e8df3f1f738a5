"""Regular files only, published whole: what a path is, and a new file that appears at
its path complete or not at all.

:class:`NewFile` writes to an unnamed file (Linux ``O_TMPFILE``, used only where
``/proc/self/fd`` can name it) or to a hidden, exclusively created ``.NAME.<hex>.partial``
beside the destination, holding an ``flock`` on it while it lives. Publishing either
renames it onto the destination (``overwrite=True``: of concurrent writers, each publishes
a whole file and the last one wins) or links it there (``overwrite=False``: fails if the
destination exists at that moment, so a file that appeared while encoding is kept). A
failure removes the temporary file and the folders the writer created; a killed writer's
``.partial`` left behind is removed by a later writer to the same folder once nobody holds
its lock and it is a minute old. A destination that is not a regular file (a folder, a
device, a FIFO, a socket) is refused before anything is written, and again when publishing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["NewFile", "check_writable", "file_kind"]

#: Where Linux names an open descriptor (a test points it elsewhere to play a system without /proc).
PROC_FD = "/proc/self/fd"
#: Seconds after which an unlocked ``.partial`` of this module's naming is a killed writer's.
STALE_AFTER_S = 60.0

_T = TypeVar("_T")
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words: ``"a regular file"``, ``"a folder"``, ``"a FIFO"``..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_writable(path: Path, what: str) -> Path:
    """``path``, once a regular file could be made there: it is no folder, device or FIFO,
    and the nearest folder of it that exists takes a file. Creates nothing, so a long run can
    check its destination first and write it (:class:`NewFile`) at the end.

    Raises:
        IsADirectoryError, OSError: naming ``what`` (e.g. ``"--out"``) and ``path``.
    """
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder, not a file")
    if path.exists() and not path.is_file():  # replacing /dev/null would replace the device node
        raise OSError(f"{what} {path} is {file_kind(path.stat().st_mode)}, not a regular file")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # where the first missing folder would go
        folder = folder.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OSError(f"cannot write {what} {path}: {err}") from None
    return path


def _os_error(kind: type[OSError], number: int | None, message: str) -> OSError:
    """``kind(message)`` carrying ``errno`` (its text is the message alone, for one-line reports)."""
    err = kind(message)
    err.errno = number
    return err


def _temporary_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{12}}\.partial")


class NewFile:
    """A file that appears at ``path`` whole when the ``with`` block succeeds, or not at all.

    Args:
        path: the destination.
        overwrite: replace a file already at ``path`` when publishing (the last writer wins);
            ``False`` refuses one that exists now or appears before publishing.
        what: how to name the file in errors, e.g. ``"the spike file"``.

    Raises:
        FileExistsError: ``overwrite=False`` and ``path`` exists.
        IsADirectoryError: ``path`` is a folder.
        OSError: ``path`` is another non-regular file, or no file can be made beside it
            (each naming ``path``).
    """

    def __init__(self, path: Path, *, overwrite: bool = True, what: str = "the file") -> None:
        self.path, self.overwrite, self.what = path, overwrite, what
        self._check_destination()
        self._created: list[Path] = []
        self.fd, self.name = -1, None
        try:
            self._make_folders(path.parent)
            self.fd, self.name = self._open()
            fcntl.flock(self.fd, fcntl.LOCK_EX)  # while it is held, no one takes this file for a dead writer's
            self._remove_stale()
        except OSError as err:
            self._discard()
            raise self._error(err) from err

    def _error(self, err: OSError) -> OSError:
        return _os_error(type(err), err.errno, f"cannot write {self.what} {self.path}: "
                                               f"{err.strerror or err} (in {self.path.parent})")

    def _check_destination(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        except NotADirectoryError as err:
            raise self._error(err) from None
        if stat.S_ISDIR(mode):
            raise _os_error(IsADirectoryError, errno.EISDIR, f"cannot write {self.what} {self.path}: it is a folder")
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise _os_error(OSError, errno.EINVAL, f"cannot write {self.what} {self.path}: it is "
                                                   f"{file_kind(mode)}, not a regular file")
        if not self.overwrite:
            raise _os_error(FileExistsError, errno.EEXIST, f"{self.path} exists; not overwritten (overwrite=False)")

    def _make_folders(self, folder: Path) -> None:
        missing = []
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            self._created.append(folder)

    def _open(self) -> tuple[int, str | None]:
        if hasattr(os, "O_TMPFILE"):
            try:
                fd = os.open(self.path.parent, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666)
            except OSError as err:
                if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
            else:
                try:
                    os.stat(f"{PROC_FD}/{fd}")  # publishing links it by this name: no /proc, no unnamed file
                    return fd, None
                except OSError:
                    os.close(fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return self._fresh_name(lambda name: (os.open(name, flags, 0o666), name))

    def _fresh_name(self, make: Callable[[str], _T]) -> _T:
        """``make(name)`` for a new hidden temporary name beside ``path``."""
        for _ in range(100):
            try:
                return make(str(self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.partial")))
            except FileExistsError:
                continue
        raise _os_error(FileExistsError, errno.EEXIST, f"no free temporary name beside {self.path}")

    def _remove_stale(self) -> None:
        """Remove ``.partial`` files of killed writers to ``path`` (unlocked, a minute old)."""
        pattern, folder = _temporary_pattern(self.path.name), self.path.parent
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            stale = [entry.path for entry in entries if pattern.fullmatch(entry.name)]
        for name in stale:
            with contextlib.suppress(OSError):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode) or time.time() - st.st_mtime < STALE_AFTER_S:
                        continue
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a live writer's
                    now = os.lstat(name)
                    if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                        os.unlink(name)
                finally:
                    os.close(fd)

    def write(self, data: bytes) -> None:
        """Write all of ``data`` (a full disk raises an ``OSError`` naming ``path``)."""
        try:
            with memoryview(data) as view:
                while view:
                    view = view[os.write(self.fd, view):]
        except OSError as err:
            raise self._error(err) from err

    def __enter__(self) -> "NewFile":
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self._discard()
            return
        try:
            os.fsync(self.fd)
            self._check_destination()
            self._publish()
        except FileExistsError:
            self._discard()
            raise _os_error(FileExistsError, errno.EEXIST, f"{self.path} appeared while it was being written; it "
                                                           "was kept and the new file discarded (overwrite=False)") from None
        except OSError as err:
            self._discard()
            raise self._error(err) from err
        except BaseException:
            self._discard()
            raise
        os.close(self.fd)

    def _publish(self) -> None:
        if not self.overwrite:  # a link fails if the destination exists; a rename would replace it
            if self.name is None:
                self._link_unnamed(self.path)
            else:
                os.link(self.name, self.path, follow_symlinks=False)
                with contextlib.suppress(OSError):
                    os.unlink(self.name)
                self.name = None
            return
        if self.name is None:  # give the unnamed file a hidden name, then rename it
            self.name = self._fresh_name(lambda name: (self._link_unnamed(Path(name)), name)[1])
        os.replace(self.name, self.path)
        self.name = None

    def _link_unnamed(self, name: Path) -> None:
        """Give the unnamed file ``name`` (in ``path``'s folder; ``FileExistsError`` if taken)."""
        folder = os.open(name.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:  # linkat(..., AT_SYMLINK_FOLLOW): the file behind the descriptor, not the /proc link
            os.link(f"{PROC_FD}/{self.fd}", name.name, dst_dir_fd=folder, follow_symlinks=True)
        finally:
            os.close(folder)

    def _discard(self) -> None:
        """Close and remove the temporary file, and the folders made for it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.name is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.name)
            self.name = None
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty
        self._created = []
