"""Frame indices of the clips a dataset item needs: functions of the video's frame count.

A clip is ``T = num_samples`` frames taken every ``tau = stride`` frames, so it spans
``clip_size = (T - 1) * tau + 1`` frames of the video. Every function returns 0-based
frame indices, ``T`` per clip, clamped to ``[0, num_frames - 1]``: a video shorter than
``clip_size`` still yields a full clip whose tail repeats its last frame (never an error).
``tau = 0`` repeats one frame ``T`` times: the frame-level control, a clip without motion.

- training: one clip at a uniformly random start (:func:`random_clip`);
- validation: the centre clip (``uniform_clips(..., num_clips=1)``);
- testing: ``K`` clips spread uniformly over the video (:func:`uniform_clips`).
"""

from typing import List

from pytorchvideo.data.clip_sampling import RandomClipSampler


def clip_size(num_samples: int, stride: int) -> int:
    """Frames spanned by a clip of ``num_samples`` frames at ``stride``: ``(T - 1) * tau + 1``."""
    if num_samples < 1 or stride < 0:
        raise ValueError(f"a clip needs num_samples >= 1 and stride >= 0, got {num_samples}, {stride}")
    return (num_samples - 1) * stride + 1


def clip_indices(start: int, num_samples: int, stride: int, num_frames: int) -> List[int]:
    """``T`` indices ``start + j * tau`` (j < T), clamped to ``[0, num_frames - 1]``."""
    if num_frames < 1:
        raise ValueError(f"cannot sample a clip from a video of {num_frames} frames")
    return [min(max(start + j * stride, 0), num_frames - 1) for j in range(num_samples)]


def random_clip(num_frames: int, num_samples: int, stride: int) -> List[int]:
    """One clip whose start is uniform over ``{0, ..., max(num_frames - clip_size, 0)}``.

    Uses pytorchvideo's :class:`RandomClipSampler` in frame units: frame ``i`` occupies
    the interval ``[i, i + 1)`` of a "video" lasting ``num_frames``, and a clip lasts
    ``(T - 1) * tau`` (first to last sampled frame), so its continuous start is uniform on
    ``[0, num_frames - (T - 1) * tau]`` and its floor uniform over the valid integer starts.
    The draw uses Python's ``random`` module (seeded per DataLoader worker).
    """
    sampler = RandomClipSampler(clip_duration=clip_size(num_samples, stride) - 1)
    start = int(sampler(0.0, num_frames, {}).clip_start_sec)
    return clip_indices(start, num_samples, stride, num_frames)


def uniform_clips(num_frames: int, num_samples: int, stride: int, num_clips: int) -> List[List[int]]:
    """``K = num_clips`` clips spread uniformly over the video (PySlowFast's test sampling).

    With ``delta = max(num_frames - clip_size, 0)``, clip ``k`` starts at frame
    ``floor(delta * k / (K - 1))`` for ``K > 1`` (the first clip at the start, the last at
    the end) and at ``floor(delta / 2)`` for ``K = 1`` (the centre clip). pytorchvideo's
    ``ConstantClipsPerVideoSampler`` starts clip ``k`` at ``delta * k / K`` instead, which
    never reaches the end of the video nor centres a single clip, and is a stateful
    iterator in seconds; this closed form is clearer than adapting it.
    Returns ``K`` lists of ``T`` indices, clip-major.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    delta = max(num_frames - clip_size(num_samples, stride), 0)
    starts = [delta * k // (num_clips - 1) for k in range(num_clips)] if num_clips > 1 else [delta // 2]
    return [clip_indices(start, num_samples, stride, num_frames) for start in starts]
