"""Video files: which names are videos, and writing videos (PyAV), the counterpart of the
decoders, for generated data, benchmarks and inference outputs.

    write_video("out.mp4", frames)   # uint8 T x H x W x 3 (RGB), H and W even
    with VideoWriter("out.mp4", fps=29.97) as writer:   # frame by frame, for streams
        writer.write(frame)                             # uint8 H x W x 3, every frame one size
"""

import contextlib
from fractions import Fraction
from typing import Optional

import av
import numpy as np

from cgnl_video.utils.io import atomic_output

# File name endings taken for videos when scanning folders (list makers, prediction), compared
# case-insensitively (cameras write GOPR0001.MP4, MVI_0001.MOV): see is_video_name.
VIDEO_EXTENSIONS = (".avi", ".flv", ".m2ts", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".mts", ".ts",
                    ".webm", ".wmv")


def is_video_name(name: str) -> bool:
    """Whether the file ``name`` ends in a video extension (any case)."""
    return name.lower().endswith(VIDEO_EXTENSIONS)

# Same frames, same bytes: x264's macroblock-tree rate control reads uninitialised memory
# (measured: 112x112 clips encoded repeatedly gave up to 6 different files; none with
# mbtree=0), and one thread keeps the output independent of the machine's core count.
# veryfast: a third of the default preset's encoding time, for about the same file size.
_X264_OPTIONS = {"threads": "1", "preset": "veryfast", "x264-params": "mbtree=0"}


def _check_frame(frame: np.ndarray) -> None:
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frames must be H x W x 3 uint8 arrays, got {frame.dtype} {frame.shape}")
    if frame.shape[0] % 2 or frame.shape[1] % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {frame.shape[0]}x{frame.shape[1]}")


class VideoWriter:
    """An H.264 yuv420p mp4 written frame by frame (``with`` block), atomically: the file
    appears at ``path`` only when the block ends without an error."""

    def __init__(self, path: str, fps: float = 25):
        self.path, self.rate = path, Fraction(fps).limit_denominator(1001)
        self._container: Optional[av.container.OutputContainer] = None
        self._stream = None

    def write(self, frame: np.ndarray) -> None:
        """Appends ``frame`` (uint8 ``H x W x 3``, H and W even, the size of the first frame)."""
        frame = np.asarray(frame)
        _check_frame(frame)
        if self._stream is None:
            self._stream = self._container.add_stream("libx264", rate=self.rate, options=_X264_OPTIONS)
            self._stream.width, self._stream.height, self._stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        elif frame.shape[:2] != (self._stream.height, self._stream.width):
            raise ValueError(f"frame of {frame.shape[0]}x{frame.shape[1]} in a video of "
                             f"{self._stream.height}x{self._stream.width}")
        self._container.mux(self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))

    def __enter__(self) -> "VideoWriter":
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_output(self.path))
        self._container = self._stack.enter_context(av.open(tmp, mode="w", format="mp4"))
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None and self._stream is None:
            error = ValueError(f"{self.path}: no frame written")
            self._stack.__exit__(ValueError, error, None)  # removes the temporary file
            raise error
        if kind is None:
            self._container.mux(self._stream.encode())
        self._stack.__exit__(kind, error, trace)


def write_video(path: str, frames: np.ndarray, fps: int = 25) -> None:
    """Writes ``frames`` (T x H x W x 3 uint8, H and W even) as an H.264 yuv420p mp4, atomically.

    The bytes written depend only on ``frames`` and ``fps`` (see ``_X264_OPTIONS``).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(
            f"frames must be a non-empty T x H x W x 3 uint8 array, got {frames.dtype} {frames.shape}"
        )
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
