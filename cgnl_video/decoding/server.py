"""The decoding child process of :class:`~cgnl_video.decoding.guard.GuardedDecoder`:
``python -m cgnl_video.decoding.server`` (no torch: it starts fast and stays small).

Requests arrive on stdin (see :mod:`~cgnl_video.decoding.wire`), replies leave on the
original stdout; anything the libraries print goes to stderr. Requests:

- ``("open", handle, path, backend, short_side, threads, check, cache)`` -> ``("ok", (num_frames,
  (width, height), fps, backend))``;
- ``("get", handle, indices, region)`` -> ``("frames", shape)`` and the uint8 frames (of the
  region only, ``(top, left, height, width)``, or whole for None);
- ``("close", handle)`` -> no reply.

A failure replies ``("error", exception)`` (DecodeError, IndexError, ValueError) and returns
the freed memory to the system (the process keeps freed memory for the next call otherwise,
:mod:`cgnl_video.decoding.memory`, and failed decodes free a lot).
The process exits when stdin closes.
"""

import os
import signal
import sys
from typing import BinaryIO, Dict

from cgnl_video.decoding import memory, wire
from cgnl_video.decoding.errors import DecodeError
from cgnl_video.decoding.readers import Reader, open_reader


def _handle(request: tuple, readers: Dict[int, Reader], out: BinaryIO) -> None:
    op, handle, *args = request
    if op == "open":
        reader = readers[handle] = open_reader(*args)
        wire.send(out, ("ok", (reader.num_frames, reader.size, reader.fps, reader.backend)))
    elif op == "get":
        frames, rows = readers[handle].read_rows(*args)
        shape = frames.shape if rows is None else (len(rows), *frames.shape[1:])
        wire.send(out, ("frames", shape), frames, rows)
    else:
        readers.pop(handle).close()  # the parent closes each handle it opened, once


def serve(source: BinaryIO, out: BinaryIO) -> None:
    """Answers requests from ``source`` on ``out`` until ``source`` closes."""
    readers: Dict[int, Reader] = {}
    while True:
        try:
            request = wire.receive(source)
        except EOFError:
            return
        try:
            _handle(request, readers, out)
        except (DecodeError, IndexError, ValueError) as err:
            wire.send(out, ("error", err))
            memory.trim()


def main() -> None:
    memory.keep_freed_memory()  # frames of every call reuse the last call's memory
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and closes stdin
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(os.fdopen(sys.stdin.fileno(), "rb", buffering=0), out)


if __name__ == "__main__":
    main()
