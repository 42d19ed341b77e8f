"""Probe verdicts kept between opens, epochs and runs: a video file is probed once, not at
every open (the probe, :mod:`~cgnl_video.decoding.probe`, costs a PyAV open, a demux of an
MP4's packets and one decoded frame: about 5% of a training clip's decoding).

    cache = ProbeCache.at("~/.cache/cgnl_video/probes.sqlite3")   # DATA.PROBE_CACHE
    key = file_key(path)            # before reading the file
    info = cache.get(key)           # a Probe, or None: probe the file, then cache.put(key, info)

One SQLite file (several processes share it: the decoding children of every loader worker and
rank). A verdict is found again only for the same file unchanged and the same rules: the key is
the file's real path, its identity and state (device, inode, size, modification and change
times in ns) and the rules' version (a hash of ``probe.py`` and the decord and PyAV versions).
A rewritten or touched file, a new probe rule or another decoder is probed afresh. Only
successful probes are kept (a file that fails is probed again, and fails again).

A cache that cannot be opened, read or written (read-only or full disk, locked or damaged
file) is left alone: the probe runs as without a cache, and nothing is raised.
"""

import hashlib
import json
import os
import sqlite3
from typing import Dict, Optional

import av
import decord

from cgnl_video.decoding import probe as probe_module
from cgnl_video.decoding.probe import Probe


def _rules_version() -> str:
    with open(probe_module.__file__, "rb") as handle:
        source = handle.read()
    return hashlib.sha1(source + f"|decord {decord.__version__}|av {av.__version__}".encode()).hexdigest()[:16]


RULES_VERSION = _rules_version()


def file_key(path: str) -> str:
    """What identifies ``path``'s content for the cache (OSError if it cannot be stat'ed)."""
    st = os.stat(path)
    state = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return f"{RULES_VERSION}|{os.path.realpath(path)}|{'|'.join(map(str, state))}"


class ProbeCache:
    """The probe verdicts in the SQLite file ``path`` (see the module docstring); one object
    per file and process (:meth:`at`); pickles as its path."""

    _open: Dict[str, "ProbeCache"] = {}

    @classmethod
    def at(cls, path: str) -> "ProbeCache":
        """This process's cache in the file ``path`` (``~`` expanded)."""
        path = os.path.abspath(os.path.expanduser(path))
        if path not in cls._open or cls._open[path]._pid != os.getpid():  # a fork gets its own connection
            cls._open[path] = cls(path)
        return cls._open[path]

    def __init__(self, path: str):
        self.path, self._pid = path, os.getpid()
        self._db: Optional[sqlite3.Connection] = None
        self._usable = True

    def __reduce__(self):
        return ProbeCache.at, (self.path,)

    def _connection(self) -> Optional[sqlite3.Connection]:
        if self._db is None and self._usable:
            db = None
            try:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                db = sqlite3.connect(self.path, timeout=2.0, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")  # readers do not wait for writers
                db.execute("CREATE TABLE IF NOT EXISTS probes (key TEXT PRIMARY KEY, probe TEXT NOT NULL)")
                self._db = db
            except (OSError, sqlite3.Error):
                self._usable = False
                if db is not None:  # a damaged file: the connection opened, its first statement failed
                    db.close()
        return self._db

    def _run(self, sql: str, values: tuple) -> list:
        """Rows of ``sql``, or [] where the cache is unusable (it is then skipped from now on)."""
        db = self._connection()
        if db is None:
            return []
        try:
            return db.execute(sql, values).fetchall()
        except sqlite3.Error:
            self._usable, self._db = False, None
            db.close()
            return []

    def get(self, key: str) -> Optional[Probe]:
        """The verdict kept under ``key`` (:func:`file_key`), or None."""
        rows = self._run("SELECT probe FROM probes WHERE key = ?", (key,))
        if not rows:
            return None
        num_frames, fps, native, rotation, distrust = json.loads(rows[0][0])
        return Probe(num_frames, fps, tuple(native), rotation, distrust)

    def put(self, key: str, info: Probe) -> None:
        """Keeps ``info`` as the verdict under ``key`` (taken before the file was probed)."""
        value = json.dumps([info.num_frames, info.fps, list(info.native), info.rotation, info.distrust])
        self._run("INSERT OR REPLACE INTO probes (key, probe) VALUES (?, ?)", (key, value))
