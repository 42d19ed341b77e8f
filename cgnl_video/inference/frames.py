"""Decoded frames held in memory, readable like an open video file (``num_frames``, ``fps``,
``size``, ``get``), so that datasets can make views of them."""

from typing import Sequence, Union

import numpy as np
import torch


class FramesVideo:
    """uint8 frames ``N x H x W x 3`` (RGB, NumPy or torch) at ``fps`` frames per second."""

    def __init__(self, frames: Union[np.ndarray, torch.Tensor], fps: float = 0.0):
        frames = torch.as_tensor(frames)
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise ValueError(f"frames must be a non-empty uint8 N x H x W x 3 array, got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        self.frames, self.fps = frames, fps
        self.num_frames, self.size = len(frames), (frames.shape[2], frames.shape[1])

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames at ``indices``: uint8 ``len(indices) x H x W x 3``."""
        return self.frames[torch.as_tensor(np.asarray(indices), dtype=torch.long)]
