"""The checks of the inference arguments, in one place for ``tools/predict.py``, ``tools/export.py``
and :class:`~cgnl_video.inference.recognizer.Recognizer`: each bad value is one line naming the
argument (``--topk`` on the command line, ``topk`` in Python). Imports no framework, so that the
tools answer before torch is imported."""

import math
import os

from cgnl_video.errors import UserError


class ArgumentError(UserError, ValueError):
    """An unusable argument; the message names it and says what is expected."""


def check_topk(topk, name: str = "topk") -> None:
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ArgumentError(f"{name} {topk!r}: expected an integer >= 1")


def check_seconds(value, name: str) -> None:
    """A window / stride length: a finite number of seconds > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ArgumentError(f"{name} {value!r}: expected a finite number of seconds > 0")


def check_timeline(window, stride, smooth, topk, names=("window", "stride", "smooth", "topk")) -> None:
    """The arguments of :func:`~cgnl_video.inference.timeline.timeline`."""
    check_seconds(window, names[0])
    check_seconds(stride, names[1])
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ArgumentError(f"{names[2]} {smooth!r}: expected an integer >= 1 (windows averaged)")
    check_topk(topk, names[3])


# atomic_output (utils/io.py) writes ".{name}.{pid}.{8 hex}.tmp" beside the file first.
_TEMP_EXTRA = len("...00000000.tmp") + 10


def check_output_file(path: str, name: str) -> None:
    """``path`` can be written as a file: not a folder, a name short enough for the file system
    (with the temporary name written first)."""
    if not path or os.path.isdir(path):
        raise ArgumentError(f"{name} {path!r}: is a folder, expected a file name")
    folder, base = os.path.split(os.path.abspath(path))
    limit = os.pathconf(folder, "PC_NAME_MAX") if os.path.isdir(folder) else 255
    if len(os.fsencode(base)) + _TEMP_EXTRA > limit:
        raise ArgumentError(f"{name} {base[:40]}...: file name too long ({len(os.fsencode(base))} bytes; "
                            f"at most {limit - _TEMP_EXTRA} here)")
