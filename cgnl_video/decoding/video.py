"""The one open-video protocol: what every source of frames offers (NumPy, no torch).

    with opener(path, short_side=256) as video:   # a reader, a guarded reader, decoded frames
        video.num_frames, video.fps, video.size, video.backend
        frames = video.get(indices)               # uint8 len(indices) x H x W x 3 (RGB)
        frames = video.get(indices, region=(top, left, height, width))   # only that rectangle
    for frame in iter_frames(video):              # every frame in order, uint8 H x W x 3
        ...

Implemented by the in-process readers (:mod:`~cgnl_video.decoding.readers`: decord, PyAV),
the reader of a video open in the watchdog's child process
(:class:`~cgnl_video.decoding.guard.RemoteReader`) and frames already in memory
(:class:`~cgnl_video.decoding.frames.FramesVideo`). The views of a video
(:mod:`cgnl_video.datasets.views`) are made from any of them.
"""

import abc
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

# Bytes of frames one streaming call asks for (a call is one round trip to the watchdog).
STREAM_CHUNK_BYTES = 32 << 20

# A rectangle of the frames: (top, left, height, width) in pixels of the returned frames.
Region = Tuple[int, int, int, int]


def crop_region(frames: np.ndarray, region: Optional[Region]) -> np.ndarray:
    """The ``region`` of ``frames`` (``N x H x W x 3``) as a view (all of them for None);
    ValueError if it does not lie inside the frames."""
    if region is None:
        return frames
    top, left, height, width = region
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > frames.shape[1] or \
            left + width > frames.shape[2]:
        raise ValueError(f"region {tuple(region)} (top, left, height, width) outside frames of "
                         f"{frames.shape[2]}x{frames.shape[1]}")
    return frames[:, top:top + height, left:left + width]


class OpenVideo(abc.ABC):
    """An open video: ``path``, ``num_frames`` (displayed frames), ``size`` (width, height of
    the returned frames), ``fps`` (displayed frames per second; 0 when unknown), ``backend``
    (what decodes it), :meth:`get`; a context manager that :meth:`close` ends."""

    path: str
    num_frames: int
    size: Tuple[int, int]
    fps: float
    backend: str

    @abc.abstractmethod
    def get(self, indices: Sequence[int], region: Optional[Region] = None) -> np.ndarray:
        """Frames at ``indices`` (each in ``[0, num_frames)``, any order, repeats allowed):
        uint8 ``len(indices) x H x W x 3``, or only their ``region`` (see :func:`crop_region`;
        the watchdog's child sends only that much); DecodeError if they cannot be decoded."""

    def close(self) -> None:
        """Releases the video (nothing to release by default)."""

    def __enter__(self) -> "OpenVideo":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_frames(video: OpenVideo, chunk_bytes: int = STREAM_CHUNK_BYTES) -> Iterator[np.ndarray]:
    """Every frame of ``video`` in display order (uint8 ``H x W x 3``), read ``chunk_bytes`` of
    frames at a time: a long video in constant memory (readers continue decoding where the
    previous chunk stopped, so each frame is decoded once)."""
    width, height = video.size
    step = max(1, chunk_bytes // (width * height * 3))
    for first in range(0, video.num_frames, step):
        yield from video.get(range(first, min(first + step, video.num_frames)))
