"""The guarded decoder's messages over a pipe: a length-prefixed pickle, optionally followed
by the raw bytes of a uint8 array it describes (``("frames", shape)``)."""

import pickle
import select
import struct
import time
from typing import Any, BinaryIO, Optional

import numpy as np

_LENGTH = struct.Struct("<Q")


def send(out: BinaryIO, message: Any, array: Optional[np.ndarray] = None, rows: Optional[np.ndarray] = None) -> None:
    """Writes ``message`` (then ``array``'s bytes, C order: of ``array[rows]`` if ``rows`` are
    given, written row by row without gathering them first) and flushes."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LENGTH.pack(len(data)) + data)
    for part in ([] if array is None else [array] if rows is None else (array[row] for row in rows)):
        out.write(memoryview(np.ascontiguousarray(part)).cast("B"))
    out.flush()


def read_into(source: BinaryIO, view: memoryview, deadline: Optional[float]) -> None:
    """Fills ``view`` from the unbuffered ``source``.

    Raises TimeoutError past ``deadline`` (``time.monotonic()``; None: wait forever) and
    EOFError if the writer closed the pipe first.
    """
    filled = 0
    while filled < len(view):
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([source], [], [], remaining)[0]:
                raise TimeoutError
        count = source.readinto(view[filled:])
        if not count:
            raise EOFError
        filled += count


def receive(source: BinaryIO, deadline: Optional[float] = None) -> Any:
    """The next message from the unbuffered ``source`` (see :func:`read_into` for the errors)."""
    header = bytearray(_LENGTH.size)
    read_into(source, memoryview(header), deadline)
    data = bytearray(_LENGTH.unpack(header)[0])
    read_into(source, memoryview(data), deadline)
    return pickle.loads(data)


def receive_array(source: BinaryIO, shape: tuple, deadline: Optional[float] = None) -> np.ndarray:
    """The uint8 array of ``shape`` that follows a ``("frames", shape)`` message."""
    array = np.empty(shape, np.uint8)
    read_into(source, memoryview(array).cast("B"), deadline)
    return array
