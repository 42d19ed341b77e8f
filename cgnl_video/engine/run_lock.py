"""One run per output folder: ``OUTPUT_DIR/.lock``, locked (``fcntl.lockf``) for a run's life.

The lock file names its holder (pid, host, start time). A second run on the same folder
stops at once naming the holder. The kernel drops the lock when its process ends, however it
ends, so the lock of a killed run is taken over by the next one (which reports it). A run
that ends normally empties the file. POSIX record locks (``lockf``) rather than ``flock``:
forked DataLoader workers do not inherit them (a killed run's orphan workers would otherwise
hold the folder for seconds), and they also work over NFS with a lock daemon. This process
must not open and close the lock file elsewhere (closing any descriptor drops a POSIX lock).

The lock file is opened without following a link (``utils/io.py``'s ``open_no_follow``): a
symbolic link, special file or hard-linked file planted as ``.lock`` stops the run in one
line, and so does a regular file that is not a lock of ours (content that is not a holder
record): the lock never truncates what it did not write.
"""

import atexit
import errno
import fcntl
import json
import logging
import os
import socket
import time
from typing import IO, Dict

from cgnl_video.errors import UserError
from cgnl_video.utils.io import UnsafePathError, open_no_follow

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"
_HELD: Dict[str, IO] = {}  # real path of the output folder -> the open, locked lock file
_HOLDER_KEYS = {"pid", "host", "started"}
_MAX_READ = 4096  # a holder record is one short line


class RunLockError(UserError, RuntimeError):
    """Another run holds the output folder; the message names its pid and host."""


def _holder(handle: IO, path: str) -> Dict:
    """The holder record in the lock file ({} when empty); UnsafePathError for other content."""
    handle.seek(0)
    text = handle.read(_MAX_READ)
    try:
        holder = json.loads(text) if text.strip() else {}
    except ValueError:
        holder = None
    if not isinstance(holder, dict) or (holder and set(holder) != _HOLDER_KEYS):
        raise UnsafePathError(f"{path}: not a run lock (it holds other data); refusing to overwrite "
                              f"it: move it away or choose another OUTPUT_DIR")
    return holder


def _try_lock(handle: IO) -> bool:
    """Takes the lock without waiting; False when another process holds it."""
    try:
        fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        return False
    return True


def _describe(holder: Dict) -> str:
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
            f"started {holder.get('started', '?')}")


def _in_use(output_dir: str, holder: Dict) -> RunLockError:
    return RunLockError(f"{output_dir} is in use by another run ({_describe(holder)}); "
                        f"wait for it to end or choose another OUTPUT_DIR")


def check_not_in_use(output_dir: str) -> None:
    """RunLockError naming the holder when another process holds ``output_dir``'s lock; takes
    nothing (a tool that reads the folder before locking it says first that it is busy, not
    what a half-written run lacks). Silent where there is no lock file or it cannot be opened
    for writing (:func:`acquire_run_lock` reports that)."""
    path = os.path.join(output_dir, LOCK_NAME)
    if os.path.realpath(output_dir) in _HELD or not os.path.isfile(path):
        return
    try:
        handle = open(open_no_follow(path, os.O_RDWR), "r+", encoding="utf-8", errors="replace")
    except (OSError, UnsafePathError):
        return
    with handle:  # this process holds no lock on it: closing drops nothing of ours
        if _try_lock(handle):
            fcntl.lockf(handle.fileno(), fcntl.LOCK_UN)
            return
        holder = _holder(handle, path)
    raise _in_use(output_dir, holder)


def acquire_run_lock(output_dir: str) -> str:
    """Locks ``output_dir`` for this process's life (idempotent); returns the lock file's path.

    Raises RunLockError naming the holder when another process holds it.
    """
    path = os.path.join(output_dir, LOCK_NAME)
    key = os.path.realpath(output_dir)
    if key in _HELD:
        return path
    handle = open(open_no_follow(path, os.O_RDWR | os.O_CREAT), "r+", encoding="utf-8", errors="replace")
    try:
        locked, holder = _try_lock(handle), _holder(handle, path)
    except BaseException:
        handle.close()
        raise
    if not locked:
        handle.close()
        raise _in_use(output_dir, holder)
    if holder:
        logger.warning("%s: taking over the lock of a run that did not end cleanly (%s)", path, _describe(holder))
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}) + "\n")
    handle.flush()
    _HELD[key] = handle
    return path


def release_run_lock(output_dir: str) -> None:
    """Empties and unlocks ``output_dir``'s lock file if this process holds it."""
    handle = _HELD.pop(os.path.realpath(output_dir), None)
    if handle is not None:
        handle.seek(0)
        handle.truncate()
        handle.close()  # drops the lock


@atexit.register
def _release_all() -> None:
    for key in list(_HELD):
        release_run_lock(key)
