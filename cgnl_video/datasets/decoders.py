"""Frames of a video file by index, from decord or PyAV behind one interface.

    with open_video(path, backend="decord", short_side=320) as video:
        frames = video.get(indices)   # uint8, len(indices) x H x W x 3 (RGB)

Only the requested frames are decoded: decord's ``get_batch`` on the sorted unique
indices; PyAV seeks to the keyframe before the first one and decodes forward, stopping
after the last one. Indices may be unsorted and repeated; frames come back in their order.
Both backends return the same pixels (both convert with FFmpeg's swscale, bilinear).

Frames of videos whose short side exceeds ``short_side`` are scaled by the decoder to that
short side, aspect ratio kept, so full-resolution frames are never copied out.

Every failure to open or decode a file (missing, truncated, not a video, no frames,
broken part-way) raises :class:`DecodeError` with the path and the reason.
"""

import contextlib
import itertools
import os
import re
from fractions import Fraction
from typing import Iterator, List, Optional, Sequence, Tuple

import av
import decord
import numpy as np
import torch

BACKENDS = ("decord", "pyav")

# What the libraries raise for unreadable data: decord raises DECORDError while decoding
# and a plain RuntimeError when it cannot open a file; PyAV raises FFmpegError subclasses.
_LIBRARY_ERRORS = (decord.DECORDError, RuntimeError, av.FFmpegError, OSError)


class DecodeError(Exception):
    """A video that cannot be opened or decoded; the message reads ``path: reason``."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _reason(err: Exception) -> str:
    # decord prefixes its messages with "[hh:mm:ss] /source/file.cc:123: " (once per frame).
    text = re.sub(r"\[[\d:]+\] \S+:\d+: ", "", str(err)).strip()
    return f"{type(err).__name__}: {text}"


@contextlib.contextmanager
def _decode_errors(path: str) -> Iterator[None]:
    """Turns the decoding libraries' exceptions into :class:`DecodeError`."""
    try:
        yield
    except _LIBRARY_ERRORS as err:
        raise DecodeError(path, _reason(err)) from err


def scaled_size(width: int, height: int, short_side: Optional[int]) -> Tuple[int, int]:
    """``(width, height)`` with the short side reduced to ``short_side`` if it is larger."""
    short = min(width, height)
    if short_side is None or short <= short_side:
        return width, height
    return round(width * short_side / short), round(height * short_side / short)


class Video:
    """An open video: ``num_frames``, ``size`` (width, height of returned frames), ``fps``, ``get``."""

    path: str
    num_frames: int
    fps: float
    size: Tuple[int, int]

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames at ``indices`` (each in ``[0, num_frames)``): uint8 ``N x H x W x 3``."""
        wanted = np.asarray(indices, dtype=np.int64)
        if wanted.size == 0 or wanted.min() < 0 or wanted.max() >= self.num_frames:
            raise IndexError(f"{self.path}: frame indices must lie in [0, {self.num_frames}), got {indices}")
        unique, inverse = np.unique(wanted, return_inverse=True)
        with _decode_errors(self.path):
            frames = torch.from_numpy(self._read(unique.tolist()))
        return frames if np.array_equal(unique, wanted) else frames[torch.from_numpy(inverse)]

    def _read(self, indices: List[int]) -> np.ndarray:
        """Frames at sorted unique ``indices``: uint8 ``N x H x W x 3``."""
        raise NotImplementedError

    def close(self) -> None:
        """Releases the file."""

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise DecodeError(path, "no video stream")
    return container.streams.video[0]


class _DecordVideo(Video):
    def __init__(self, path: str, short_side: Optional[int]):
        # PyAV reads only the header here: the native size (decord needs the output size
        # when it opens) and a check that this is a video (decord opens text files).
        with av.open(path) as container:
            codec = _video_stream(container, path).codec_context
            native = (codec.width, codec.height)
        self.path, self.size = path, scaled_size(*native, short_side)
        width, height = self.size if self.size != native else (-1, -1)
        self._reader = decord.VideoReader(path, width=width, height=height)
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())

    def _read(self, indices: List[int]) -> np.ndarray:
        # decord 0.6.0 sometimes returns the frame before instead of the last frame when it
        # skips frames to reach it (dmlc/decord#195; about 1 in 4 on test.avi with one
        # thread); it has not once when the frame before is decoded too, so ask for both.
        last = self.num_frames - 1
        extra = indices[-1] == last > 0 and last - 1 not in indices[-2:-1]
        frames = self._reader.get_batch(indices[:-1] + [last - 1, last] if extra else indices).asnumpy()
        return np.delete(frames, -2, axis=0) if extra else frames

    def close(self) -> None:
        self._reader = None


class _PyAVVideo(Video):
    """PyAV reader: frame ``i`` is the ``i``-th frame in display order.

    A frame's index comes from its timestamp, ``(pts - first_pts) * time_base * fps``,
    where ``first_pts`` is that of the first packet; only the keyframe reached by a seek
    is located that way, the frames decoded after it are counted (decoders output frames
    in display order, while some containers, e.g. AVI with packed B-frames, attach
    reordered timestamps to them).
    """

    def __init__(self, path: str, short_side: Optional[int]):
        self.path = path
        self._container = av.open(path)
        try:
            self._setup(short_side)
        except BaseException:
            self._container.close()
            raise

    def _setup(self, short_side: Optional[int]) -> None:
        self._stream = _video_stream(self._container, self.path)
        self._stream.thread_type = "AUTO"
        codec = self._stream.codec_context
        self.size = scaled_size(codec.width, codec.height, short_side)
        self._fps = self._stream.average_rate or self._stream.guessed_rate
        if not self._fps:
            raise DecodeError(self.path, "unknown frame rate")
        self.fps = float(self._fps)
        timestamps = (p.pts for p in self._container.demux(self._stream) if p.pts is not None)
        first = next(timestamps, None)
        self._first_pts = first or 0
        # Containers without a frame count in their header: count the packets (no decoding).
        self.num_frames = self._stream.frames or (first is not None) + sum(1 for _ in timestamps)

    def _pts(self, index: int) -> int:
        return self._first_pts + int(Fraction(index) / self._fps / self._stream.time_base)

    def _index(self, pts: int) -> int:
        return round((pts - self._first_pts) * self._stream.time_base * self._fps)

    def _frames_from(self, first: int) -> Iterator[Tuple[int, av.VideoFrame]]:
        """(index, frame) pairs in display order, from a keyframe at or before ``first``.

        Containers index keyframes by decode time, so a seek can land on a keyframe shown
        after ``first``; then it seeks again further back (doubling the distance).
        """
        back = 0
        while True:
            target = max(first - back, 0)
            self._container.seek(self._pts(target), stream=self._stream, backward=True)
            frames = self._container.decode(self._stream)
            head = next(frames, None)
            if head is None or head.pts is None:
                raise DecodeError(self.path, f"no timestamped frame decoded from frame {target} on")
            start = self._index(head.pts)
            if start <= first or target == 0:
                break
            back = max(2 * back, 1)
        yield start, head
        yield from zip(itertools.count(start + 1), frames)

    def _read(self, indices: List[int]) -> np.ndarray:
        width, height = self.size
        wanted, found = set(indices), {}
        for index, frame in self._frames_from(indices[0]):
            if index in wanted:
                found[index] = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
            if index >= indices[-1]:
                break
        missing = sorted(wanted - found.keys())
        if missing:
            raise DecodeError(self.path, f"frames {missing[:5]}{'...' if len(missing) > 5 else ''} not decoded")
        return np.stack([found[i] for i in indices])

    def close(self) -> None:
        self._container.close()


_READERS = {"decord": _DecordVideo, "pyav": _PyAVVideo}


def open_video(path: str, backend: str = "decord", short_side: Optional[int] = None) -> Video:
    """Opens ``path`` with ``backend`` ("decord" or "pyav"); use as a context manager.

    ``short_side``: frames of a video whose short side is larger come back scaled to it.
    Raises :class:`DecodeError` if the file is missing, unreadable or has no frames.
    """
    if backend not in _READERS:
        raise ValueError(f"unknown decoding backend {backend!r}; expected one of {BACKENDS}")
    if not os.path.isfile(path):
        raise DecodeError(path, "file not found")
    with _decode_errors(path):
        video = _READERS[backend](path, short_side)
    if video.num_frames < 1:
        video.close()
        raise DecodeError(path, "no frames")
    return video


def decode_frames(
    path: str, indices: Sequence[int], backend: str = "decord", short_side: Optional[int] = None
) -> torch.Tensor:
    """Frames at ``indices`` of the video at ``path``: uint8 ``N x H x W x 3`` (see :func:`open_video`)."""
    with open_video(path, backend, short_side) as video:
        return video.get(indices)


def num_frames(path: str, backend: str = "decord") -> int:
    """Number of frames of the video at ``path`` as ``backend`` indexes them."""
    with open_video(path, backend) as video:
        return video.num_frames
