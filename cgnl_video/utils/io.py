"""File output that never writes through a planted link: every list, checkpoint, result and
plot is written through here.

Whole files are written to a fresh temp file beside the destination, created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` (so it is this process's new file, never an existing file or
the target of a link), then renamed over the destination (``os.replace``, atomic on one file
system; a link at the destination is replaced, its target left unchanged). The temp file is
removed on an exception, and on SIGTERM / SIGHUP (:func:`_remove_live_temps_and_die`).
Files changed in place (appended, locked) and files read back to be rewritten are opened with
:func:`open_no_follow`: a symbolic link, a special file or a file with other hard links there
stops with :class:`UnsafePathError` naming it.

Errors are one line naming the file (:class:`~cgnl_video.errors.UserError`): a full disk
(``ENOSPC``, ``EFBIG`` over a file-size limit, ``EDQUOT``) raises :class:`DiskFullError`, a
folder that cannot be written (read-only file system, no permission, a file where a folder
should be, a name too long) :class:`CannotWriteError`; the file being replaced is left intact.
"""

import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import stat
import threading
import uuid
from typing import IO, Dict, Iterator, List, Optional, Tuple

from cgnl_video.errors import UserError

logger = logging.getLogger(__name__)

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
# A folder (or name) that cannot take the file: what a user can fix by choosing another path.
CANNOT_WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST,
                                 errno.EISDIR, errno.ENAMETOOLONG})

# The temp files of atomic_output: ".{name}.{pid}.{8 hex}.tmp" beside the destination.
_TEMP_NAME = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")
_WRITING = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

# Temp files being written -> the pid writing them (forked children inherit the dict).
_LIVE: Dict[str, int] = {}
_CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class DiskFullError(UserError, RuntimeError):
    """A write that ran out of space (or over a size limit); the message names the file."""

    def __init__(self, path: str, err: OSError, needed: Optional[int] = None):
        folder = os.path.dirname(os.path.abspath(path))
        free = shutil.disk_usage(folder).free if os.path.isdir(folder) else None
        need = f"needs {needed} bytes" if needed is not None else "needs more space"
        have = f", {free} bytes free on its filesystem" if free is not None else ""
        super().__init__(f"{path}: cannot write ({os.strerror(err.errno)}): {need}{have}")
        self.path, self.errno, self.needed = path, err.errno, needed


class CannotWriteError(UserError, RuntimeError):
    """A file that its folder cannot take (read-only, no permission, not a folder, name too long)."""

    def __init__(self, path: str, err: OSError):
        super().__init__(f"{path}: cannot write ({os.strerror(err.errno)})")
        self.path, self.errno = path, err.errno


class UnsafePathError(UserError, RuntimeError):
    """A symbolic link, special file or multiply linked file where the run keeps a file of its own."""


@contextlib.contextmanager
def write_errors(path: str, needed: Optional[int] = None, only_disk_full: bool = False) -> Iterator[None]:
    """Turns an OSError raised inside the block that a user can fix into :class:`DiskFullError`
    or (unless ``only_disk_full``: a block that also reads other files) :class:`CannotWriteError`
    naming ``path``."""
    try:
        yield
    except OSError as err:
        if err.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(path, err, needed) from None
        if err.errno in CANNOT_WRITE_ERRNOS and not only_disk_full:
            raise CannotWriteError(path, err) from None
        raise


def _link_error(path: str) -> UnsafePathError:
    return UnsafePathError(f"{path}: is a symbolic link (to {os.readlink(path)}); refusing to follow it: "
                           f"remove the link")


def open_no_follow(path: str, flags: int, mode: int = 0o644) -> int:
    """``os.open`` of ``path`` that follows no link (``O_NOFOLLOW``) and opens only a regular file,
    with one link when ``flags`` write; returns the descriptor, else raises UnsafePathError."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as err:
        if err.errno == errno.ELOOP and os.path.islink(path):
            raise _link_error(path) from None
        raise
    info = os.fstat(fd)
    problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode) else
               f"has {info.st_nlink} hard links (writing would change the other names too)"
               if flags & _WRITING and info.st_nlink > 1 else None)
    if problem:
        os.close(fd)
        raise UnsafePathError(f"{path}: {problem}; refusing to write it: remove it")
    os.set_blocking(fd, True)
    return fd


def read_text_no_follow(path: str) -> Optional[str]:
    """The text of ``path`` (UTF-8, bad bytes replaced, newlines as stored), None when absent;
    UnsafePathError for a link or special file (see :func:`open_no_follow`)."""
    try:
        fd = open_no_follow(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with open(fd, encoding="utf-8", errors="replace", newline="") as handle:
        return handle.read()


def ensure_real_folder(path: str) -> None:
    """Creates the folder ``path`` (and its parents); UnsafePathError when it is a symbolic link."""
    if os.path.islink(path):
        raise _link_error(path)
    with write_errors(path):
        os.makedirs(path, exist_ok=True)


def _remove_live_temps_and_die(signum, frame) -> None:
    """Removes this process's temp files, then dies of ``signum`` as without the handler."""
    for tmp, pid in list(_LIVE.items()):
        if pid == os.getpid():
            with contextlib.suppress(OSError):
                os.remove(tmp)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _clean_up_on_signals() -> None:
    """Installs :func:`_remove_live_temps_and_die` for the signals still at their default (a
    handler the program set is kept: it raises, and the exception removes the temp file)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _CLEANUP_SIGNALS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, _remove_live_temps_and_die)


@contextlib.contextmanager
def _temp_beside(path: str, needed: Optional[int]) -> Iterator[Tuple[str, int]]:
    """A new temp file beside ``path`` (name and write descriptor) that replaces ``path`` when
    the block ends without an exception and is removed otherwise."""
    folder, name = os.path.split(os.path.abspath(path))
    with write_errors(path, needed):
        os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    _clean_up_on_signals()
    _LIVE[tmp] = os.getpid()
    try:
        with write_errors(path, needed):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        with write_errors(path, needed, only_disk_full=True):  # the caller's block may read files
            yield tmp, fd
        with write_errors(path, needed):
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)
        _LIVE.pop(tmp, None)


@contextlib.contextmanager
def atomic_output(path: str, needed: Optional[int] = None) -> Iterator[str]:
    """Yields the path of a new, empty temporary file beside ``path`` for the caller to write
    (for libraries that take a path). On success it replaces ``path``; on an exception it is
    removed and ``path`` is left untouched. ``needed`` (bytes) is only quoted in a
    :class:`DiskFullError`."""
    with _temp_beside(path, needed) as (tmp, fd):
        os.close(fd)
        yield tmp


@contextlib.contextmanager
def atomic_file(path: str, binary: bool = False, needed: Optional[int] = None) -> Iterator[IO]:
    """As :func:`atomic_output`, yielding the temp file opened for writing (text: UTF-8, ``\\n``)."""
    with _temp_beside(path, needed) as (_, fd):
        with (open(fd, "wb") if binary else open(fd, "w", encoding="utf-8", newline="\n")) as handle:
            yield handle


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_file(path) as handle:
        handle.write(text)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically and durably (fsync before the rename)."""
    with atomic_file(path, binary=True, needed=len(data)) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def remove_orphan_temp_files(folder: str) -> List[str]:
    """Removes the temp files of :func:`atomic_output` left in ``folder`` by a killed process.

    Only regular files with names of our pattern are touched; call it only while no other
    process of ours can be writing there (under the run lock). Returns the removed paths
    (each logged).
    """
    if not os.path.isdir(folder) or os.path.islink(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if _TEMP_NAME.match(name) and stat.S_ISREG(os.lstat(path).st_mode):
            os.remove(path)
            removed.append(path)
            logger.warning("removed a temp file left by an interrupted run: %s", path)
    return removed
