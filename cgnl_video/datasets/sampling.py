"""Frame indices of the clips a dataset item needs: functions of the video's frame count.

A clip is ``T = num_samples`` frames taken every ``tau = stride`` frames, so it spans
``clip_size = floor((T - 1) * tau) + 1`` frames of the video. ``tau`` may be fractional
(:func:`frame_stride` with ``DATA.TARGET_FPS``): frame ``j`` of a clip starting at ``s`` is
``s + floor(j * tau)``. Every function returns 0-based frame indices, ``T`` per clip,
clamped to ``[0, num_frames - 1]``: a video shorter than ``clip_size`` still yields a full
clip whose tail repeats its last frame (never an error). ``tau = 0`` repeats one frame
``T`` times: the frame-level control, a clip without motion.

- training: one clip at a uniformly random start (:func:`random_clip`), drawn from the
  item's own generator (so the draw belongs to the item, not to a worker or a rank);
- validation: the centre clip (``uniform_clips(..., num_clips=1)``);
- testing: ``K`` clips spread uniformly from the start to the end (:func:`uniform_clips`).
"""

import math
from typing import List

import torch


def frame_stride(sampling_rate: int, video_fps: float, target_fps: float) -> float:
    """Stride in video frames: ``sampling_rate`` frames of a ``target_fps`` video (PySlowFast's
    ``DATA.TARGET_FPS``), i.e. ``sampling_rate * video_fps / target_fps``; ``target_fps <= 0``
    (or an unknown ``video_fps``) keeps ``sampling_rate`` frames of the video itself."""
    if target_fps <= 0 or not video_fps or video_fps <= 0:
        return float(sampling_rate)
    return sampling_rate * video_fps / target_fps


def clip_size(num_samples: int, stride: float) -> int:
    """Frames spanned by a clip of ``num_samples`` frames at ``stride``: ``floor((T - 1) tau) + 1``."""
    if num_samples < 1 or stride < 0:
        raise ValueError(f"a clip needs num_samples >= 1 and stride >= 0, got {num_samples}, {stride}")
    return math.floor((num_samples - 1) * stride) + 1


def clip_indices(start: int, num_samples: int, stride: float, num_frames: int) -> List[int]:
    """``T`` indices ``start + floor(j * tau)`` (j < T), clamped to ``[0, num_frames - 1]``."""
    if num_frames < 1:
        raise ValueError(f"cannot sample a clip from a video of {num_frames} frames")
    return [min(max(start + math.floor(j * stride), 0), num_frames - 1) for j in range(num_samples)]


def random_clip(num_frames: int, num_samples: int, stride: float, generator: torch.Generator) -> List[int]:
    """One clip whose start is uniform over ``{0, ..., max(num_frames - clip_size, 0)}``.

    The start is drawn from ``generator`` (pytorchvideo's ``RandomClipSampler`` draws from
    the global ``random`` module, which a worker or a rank owns, not the item).
    """
    delta = max(num_frames - clip_size(num_samples, stride), 0)
    start = int(torch.randint(delta + 1, (), generator=generator))
    return clip_indices(start, num_samples, stride, num_frames)


def uniform_clips(num_frames: int, num_samples: int, stride: float, num_clips: int) -> List[List[int]]:
    """``K = num_clips`` clips spread uniformly over the video, from its start to its end.

    With ``delta = max(num_frames - clip_size, 0)``, clip ``k`` starts at frame
    ``floor(delta * k / (K - 1))`` for ``K > 1`` (the first clip at the start, the last at
    the end) and at ``floor(delta / 2)`` for ``K = 1`` (the centre clip). This is ours; of
    PySlowFast's two modes (``slowfast/datasets/decoder.py`` ``get_start_end_idx``) it is
    closest to the offset mode (``DATA.USE_OFFSET_SAMPLING``: ``k * floor(delta / (K - 1))``,
    the same centre clip), which it equals when ``K - 1`` divides ``delta`` and otherwise
    exceeds by less than ``K - 1`` frames, so that the last clip still ends the video.
    PySlowFast's default mode (``delta * k / K``, as pytorchvideo's
    ``ConstantClipsPerVideoSampler``) never reaches the end of the video nor centres a single
    clip. A clip's frames are ``start + floor(j * tau)`` as in training (PySlowFast takes
    ``linspace(start, start + T * tau - 1, T)``).
    Returns ``K`` lists of ``T`` indices, clip-major.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    delta = max(num_frames - clip_size(num_samples, stride), 0)
    starts = [delta * k // (num_clips - 1) for k in range(num_clips)] if num_clips > 1 else [delta // 2]
    return [clip_indices(start, num_samples, stride, num_frames) for start in starts]
