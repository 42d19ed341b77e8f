"""How videos are opened for training, testing and inference: in this process, or under the
watchdog of ``DATA.DECODE_TIMEOUT``.

    decoder = build_decoder(cfg)      # DATA.DECODING_BACKEND, DECODE_TIMEOUT, DECODING_THREADS
    with decoder.open(path, short_side=320) as video:   # an OpenVideo
        video.num_frames, video.size, video.fps, video.get(indices)   # uint8 N x H x W x 3

    with open_video(path, backend="decord", short_side=320) as video:  # in this process
        frames = video.get(indices)

Every video is an :class:`~cgnl_video.decoding.video.OpenVideo` (NumPy frames; the views
make them tensors). Frame ``i`` is the ``i``-th displayed frame whatever the backend and
the file (edit lists, variable frame rates, lying headers, rotation); see
:mod:`cgnl_video.decoding.readers`. With ``DATA.DECODE_TIMEOUT > 0`` the decoding runs in a
child process that a hang or a crash cannot take down with the caller
(:mod:`cgnl_video.decoding.guard`): the Dataset, the Recognizer (predict, features, timeline,
stream, fps) and the attention maps all open videos through :func:`build_decoder`. Every
failure raises :class:`DecodeError` with the path and the reason.
"""

from typing import Optional, Sequence

import numpy as np
from fvcore.common.config import CfgNode

from cgnl_video.decoding.errors import DecodeError
from cgnl_video.decoding.guard import GuardedDecoder
from cgnl_video.decoding.probe_cache import ProbeCache
from cgnl_video.decoding.readers import BACKENDS, open_reader, scaled_size
from cgnl_video.decoding.video import OpenVideo

__all__ = ["BACKENDS", "DecodeError", "OpenVideo", "VideoDecoder", "build_decoder", "decode_frames", "num_frames",
           "open_video", "scaled_size"]


def open_video(path: str, backend: str = "decord", short_side: Optional[int] = None, threads: int = 1,
               cache: Optional[ProbeCache] = None) -> OpenVideo:
    """Opens ``path`` in this process with ``backend`` ("decord" or "pyav"); use as a context manager.

    ``short_side``: frames of a video whose short side is larger come back scaled to it.
    ``cache``: probe verdicts kept between opens (``DATA.PROBE_CACHE``).
    Raises :class:`DecodeError` if the file is missing, unreadable or has no frames.
    """
    return open_reader(path, backend, short_side, threads, cache=cache)


class VideoDecoder:
    """Opens videos with ``backend`` and ``threads`` decoding threads: in a child process
    watched with ``timeout`` seconds per call, or in this process if ``timeout`` is 0;
    probe verdicts kept in the SQLite file ``probe_cache`` ("": none)."""

    def __init__(self, backend: str = "decord", timeout: float = 60.0, threads: int = 1, probe_cache: str = ""):
        self.backend, self.threads = backend, threads
        self.cache = ProbeCache.at(probe_cache) if probe_cache else None
        self.guard = GuardedDecoder(backend, timeout, threads, cache=self.cache) if timeout > 0 else None

    def open(self, path: str, short_side: Optional[int] = None) -> OpenVideo:
        """The video at ``path`` (see :func:`open_video`); also DecodeError on a hang or a crash."""
        if self.guard is None:
            return open_video(path, self.backend, short_side, self.threads, self.cache)
        return self.guard.open(path, short_side)


def build_decoder(cfg: CfgNode) -> VideoDecoder:
    """The decoder of ``DATA.DECODING_BACKEND``, ``DECODE_TIMEOUT``, ``DECODING_THREADS``, ``PROBE_CACHE``."""
    data = cfg.DATA
    return VideoDecoder(data.DECODING_BACKEND, data.DECODE_TIMEOUT, data.DECODING_THREADS, data.PROBE_CACHE)


def decode_frames(
    path: str, indices: Sequence[int], backend: str = "decord", short_side: Optional[int] = None
) -> np.ndarray:
    """Frames at ``indices`` of the video at ``path``: uint8 ``N x H x W x 3`` (see :func:`open_video`)."""
    with open_video(path, backend, short_side) as video:
        return video.get(indices)


def num_frames(path: str, backend: str = "decord") -> int:
    """Number of displayed frames of the video at ``path``."""
    with open_video(path, backend) as video:
        return video.num_frames
