"""Decoded frames held in memory as an open video (:class:`~cgnl_video.decoding.video.OpenVideo`),
so that views are made of them as of a file (``Recognizer.predict_clip``, timeline windows)."""

import numpy as np

from cgnl_video.decoding.readers import Reader


class FramesVideo(Reader):
    """uint8 frames ``N x H x W x 3`` (RGB; a NumPy array or a CPU torch tensor, not copied)
    at ``fps`` frames per second (0: unknown)."""

    backend = "memory"

    def __init__(self, frames, fps: float = 0.0, path: str = "<frames>"):
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise ValueError(f"frames must be a non-empty uint8 N x H x W x 3 array, got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        self.frames, self.fps, self.path = frames, fps, path
        self.num_frames, self.size = len(frames), (frames.shape[2], frames.shape[1])

    def _read(self, indices):
        return self.frames, np.asarray(indices)  # rows of the held frames: copied once, by get
