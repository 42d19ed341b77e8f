"""The one error every decoding failure becomes: :class:`DecodeError` ``path: reason``."""

import contextlib
import re
from typing import Iterator

import av
import decord

from cgnl_video.errors import UserError

# What the libraries raise for unreadable data: decord raises DECORDError while decoding
# and a plain RuntimeError when it cannot open a file; PyAV raises FFmpegError subclasses.
_LIBRARY_ERRORS = (decord.DECORDError, RuntimeError, av.FFmpegError, OSError, MemoryError)


class DecodeError(UserError):
    """A video that cannot be opened or decoded; the message reads ``path: reason``."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self):
        return DecodeError, (self.path, self.reason)


def _reason(err: Exception) -> str:
    # decord prefixes its messages with "[hh:mm:ss] /source/file.cc:123: " (once per frame).
    text = re.sub(r"\[[\d:]+\] \S+:\d+: ", "", str(err)).strip()
    return f"{type(err).__name__}: {text}"


@contextlib.contextmanager
def decode_errors(path: str) -> Iterator[None]:
    """Turns the decoding libraries' exceptions into :class:`DecodeError`."""
    try:
        yield
    except _LIBRARY_ERRORS as err:
        raise DecodeError(path, _reason(err)) from err
