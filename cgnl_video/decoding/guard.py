"""Decoding under a watchdog: a hang or a crash of the decoder costs one video, not the run.

    decoder = GuardedDecoder("decord", timeout=60)
    with decoder.open(path, short_side=256) as video:   # a RemoteReader (an OpenVideo)
        frames = video.get(indices)                      # uint8 N x H x W x 3 (NumPy)

The decoding runs in a child process (:mod:`cgnl_video.decoding.server`, started on first
use, one per process: a DataLoader worker starts its own after the fork). If a call takes
longer than ``timeout`` seconds the child is killed and the call raises
``DecodeError(path, "decoding timed out after 60 s")``; if the child dies (e.g. decord
aborts on ``std::bad_alloc``) the call raises ``DecodeError(path, "decoder process died
(SIGABRT)")``. The next call starts a new child. Frames come back through a pipe.

A GuardedDecoder serves one thread at a time (a thread pool wants one per thread) and
pickles as its settings (the child is not carried along).
"""

import itertools
import os
import signal
import subprocess
import sys
import time
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from cgnl_video.decoding import wire
from cgnl_video.decoding.errors import DecodeError
from cgnl_video.decoding.probe_cache import ProbeCache
from cgnl_video.decoding.readers import BACKENDS
from cgnl_video.decoding.video import OpenVideo, Region

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _start_server() -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", "cgnl_video.decoding.server"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, bufsize=0, env=env)


def _exit_reason(process: subprocess.Popen) -> str:
    try:
        code = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        return "stopped answering"
    return signal.Signals(-code).name if code < 0 else f"exit code {code}"


class GuardedDecoder:
    """Opens videos in a watched child process (see the module docstring)."""

    def __init__(self, backend: str = "decord", timeout: float = 60.0, threads: int = 1, check: bool = True,
                 cache: Optional[ProbeCache] = None):
        if backend not in BACKENDS:
            raise ValueError(f"unknown decoding backend {backend!r}; expected one of {BACKENDS}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.backend, self.timeout, self.threads, self.check, self.cache = backend, timeout, threads, check, cache
        self._process: Optional[subprocess.Popen] = None
        self._pid = os.getpid()
        self._handles = itertools.count()

    def __getstate__(self) -> dict:
        return {"settings": (self.backend, self.timeout, self.threads, self.check, self.cache)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(*state["settings"])

    def open(self, path: str, short_side: Optional[int] = None) -> "RemoteReader":
        """Opens ``path`` in the child; raises DecodeError as ``open_reader`` does, or on a hang or crash."""
        handle = next(self._handles)
        request = ("open", handle, path, self.backend, short_side, self.threads, self.check, self.cache)
        num_frames, size, fps, backend = self._call(path, request)
        return RemoteReader(self, handle, self._process, path, num_frames, size, fps, backend)

    def _server(self) -> subprocess.Popen:
        if self._pid != os.getpid():  # forked: the child belongs to the parent process
            self._process, self._pid = None, os.getpid()
        if self._process is None or self._process.poll() is not None:
            self._process = _start_server()
        return self._process

    def _call(self, path: str, request: tuple) -> Any:
        """Sends ``request``, returns the reply's payload (frames for "get"); raises what the child raised."""
        process = self._server()
        deadline = time.monotonic() + self.timeout
        try:
            wire.send(process.stdin, request)
            kind, payload = wire.receive(process.stdout, deadline)
            if kind == "frames":
                return wire.receive_array(process.stdout, payload, deadline)
        except TimeoutError:
            self.close()
            raise DecodeError(path, f"decoding timed out after {self.timeout:g} s") from None
        except (EOFError, BrokenPipeError):
            reason = _exit_reason(process)
            self._process = None
            raise DecodeError(path, f"decoder process died ({reason})") from None
        if kind == "error":
            raise payload
        return payload

    def _send_close(self, process: subprocess.Popen, handle: int) -> None:
        if process is self._process and process.poll() is None:
            try:
                wire.send(process.stdin, ("close", handle))
            except BrokenPipeError:
                self._process = None

    def close(self) -> None:
        """Stops the child (killed: it may be stuck); the next call starts another."""
        if self._process is not None and self._pid == os.getpid():
            self._process.kill()
            self._process.wait()
        self._process = None

    def __del__(self) -> None:
        self.close()


class RemoteReader(OpenVideo):
    """A video open in the child (an :class:`~cgnl_video.decoding.video.OpenVideo`)."""

    def __init__(self, decoder: GuardedDecoder, handle: int, process: subprocess.Popen, path: str,
                 num_frames: int, size: Tuple[int, int], fps: float, backend: str):
        self._decoder, self._handle, self._process = decoder, handle, process
        self.path, self.num_frames, self.size, self.fps, self.backend = path, num_frames, tuple(size), fps, backend

    def get(self, indices: Sequence[int], region: Optional[Region] = None) -> np.ndarray:
        """Frames at ``indices`` (only their ``region`` crosses the pipe): uint8 ``N x H x W x 3``;
        DecodeError if the child was restarted meanwhile."""
        if self._process is not self._decoder._server():
            raise DecodeError(self.path, "decoder process restarted since the video was opened")
        region = None if region is None else tuple(map(int, region))
        return self._decoder._call(self.path, ("get", self._handle, list(map(int, indices)), region))

    def close(self) -> None:
        self._decoder._send_close(self._process, self._handle)
