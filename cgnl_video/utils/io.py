"""Atomic file output: every list, checkpoint, result and plot is written through here.

A write that finds the disk full (``ENOSPC``, ``EFBIG`` over a file-size limit, ``EDQUOT``)
raises :class:`DiskFullError` naming the file; the file it was replacing is left intact.
"""

import contextlib
import errno
import logging
import os
import re
import shutil
import uuid
from typing import Iterator, List, Optional

from cgnl_video.errors import UserError

logger = logging.getLogger(__name__)

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})

# The temp files of atomic_output: ".{name}.{pid}.{8 hex}.tmp" beside the destination.
_TEMP_NAME = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")


class DiskFullError(UserError, RuntimeError):
    """A write that ran out of space (or over a size limit); the message names the file."""

    def __init__(self, path: str, err: OSError, needed: Optional[int] = None):
        folder = os.path.dirname(os.path.abspath(path))
        free = shutil.disk_usage(folder).free if os.path.isdir(folder) else None
        need = f"needs {needed} bytes" if needed is not None else "needs more space"
        have = f", {free} bytes free on its filesystem" if free is not None else ""
        super().__init__(f"{path}: cannot write ({os.strerror(err.errno)}): {need}{have}")
        self.path, self.errno, self.needed = path, err.errno, needed


@contextlib.contextmanager
def disk_full_errors(path: str, needed: Optional[int] = None) -> Iterator[None]:
    """Turns an out-of-space OSError raised inside the block into :class:`DiskFullError`."""
    try:
        yield
    except OSError as err:
        if err.errno not in DISK_FULL_ERRNOS:
            raise
        raise DiskFullError(path, err, needed) from None


@contextlib.contextmanager
def atomic_output(path: str, needed: Optional[int] = None) -> Iterator[str]:
    """Yields a fresh temporary path beside ``path`` for the caller to create.

    On success the file replaces ``path`` (``os.replace``, atomic on one filesystem);
    on an exception it is removed and ``path`` is left untouched. ``needed`` (bytes) is
    only quoted in a :class:`DiskFullError`.
    """
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with disk_full_errors(path, needed):
            yield tmp
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically and durably (fsync before the rename)."""
    with atomic_output(path, needed=len(data)) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def remove_orphan_temp_files(folder: str) -> List[str]:
    """Removes the temp files of :func:`atomic_output` left in ``folder`` by a killed process.

    Only names of our pattern are touched; call it only while no other process of ours can
    be writing there (under the run lock). Returns the removed paths (each logged).
    """
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if _TEMP_NAME.match(name) and os.path.isfile(path):
            os.remove(path)
            removed.append(path)
            logger.warning("removed a temp file left by an interrupted run: %s", path)
    return removed
