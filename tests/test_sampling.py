"""Clip index sampling: train (random), val (centre), test (K uniform clips), short videos."""

import math

import pytest
import torch

from cgnl_video.datasets.sampling import clip_indices, clip_size, frame_stride, random_clip, uniform_clips


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_clip_size_is_span_of_the_sampled_frames():
    assert clip_size(8, 8) == 57
    assert clip_size(1, 5) == 1
    with pytest.raises(ValueError):
        clip_size(0, 2)
    with pytest.raises(ValueError):
        clip_size(4, -1)


def test_stride_zero_repeats_one_frame_the_frame_level_control():
    assert clip_size(8, 0) == 1
    starts, g = set(), generator()
    for _ in range(200):
        clip = random_clip(40, 8, 0, g)
        assert clip == [clip[0]] * 8
        starts.add(clip[0])
    assert len(starts) > 30  # still a random frame of the whole video
    assert [c[0] for c in uniform_clips(40, 8, 0, 3)] == [0, 19, 39]


def test_clip_indices_are_strided_and_clamped():
    assert clip_indices(3, 4, 2, 100) == [3, 5, 7, 9]
    assert clip_indices(3, 4, 2, 8) == [3, 5, 7, 7]
    with pytest.raises(ValueError, match="0 frames"):
        clip_indices(0, 4, 2, 0)


def test_random_clip_covers_every_valid_start_uniformly():
    g = generator()
    num_frames, length, stride = 20, 4, 3  # clip_size 10: starts 0..10
    starts = [random_clip(num_frames, length, stride, g)[0] for _ in range(2200)]
    counts = [starts.count(s) for s in range(11)]
    assert sum(counts) == len(starts)  # no start outside 0..10
    assert min(counts) > 120 and max(counts) < 280  # about 200 each
    clip = random_clip(num_frames, length, stride, g)
    assert [b - a for a, b in zip(clip, clip[1:])] == [stride] * (length - 1)


def test_random_clip_is_a_function_of_its_generator_only():
    g = generator(7)
    first = [random_clip(300, 8, 8, g) for _ in range(5)]
    torch.manual_seed(123)  # the global generator plays no part
    g = generator(7)
    assert [random_clip(300, 8, 8, g) for _ in range(5)] == first
    assert len({tuple(c) for c in first}) > 1


def test_short_video_clips_repeat_the_last_frame():
    assert random_clip(5, 4, 2, generator()) == [0, 2, 4, 4]
    assert uniform_clips(5, 4, 2, 3) == [[0, 2, 4, 4]] * 3
    assert random_clip(1, 3, 8, generator()) == [0, 0, 0]


def pyslowfast_start(delta, clip_idx, num_clips, use_offset):
    """The start of slowfast/datasets/decoder.py get_start_end_idx (its two test modes)."""
    if not use_offset:
        return delta * clip_idx / num_clips
    if num_clips == 1:
        return math.floor(delta / 2)
    return clip_idx * math.floor(delta / (num_clips - 1))


@pytest.mark.parametrize("num_clips", [1, 2, 3, 4, 10])
def test_test_clip_starts_against_pyslowfast_modes(num_clips):
    # As sampling.uniform_clips says: the offset mode's starts where K - 1 divides delta,
    # less than K - 1 frames later otherwise; the default mode's only for the first clip.
    for num_frames in (1, 30, 57, 64, 66, 250, 301):
        for num_samples, stride in ((8, 8), (32, 2), (4, 1.5)):
            delta = max(num_frames - clip_size(num_samples, stride), 0)
            starts = [clip[0] for clip in uniform_clips(num_frames, num_samples, stride, num_clips)]
            offset = [pyslowfast_start(delta, k, num_clips, True) for k in range(num_clips)]
            if num_clips == 1 or delta % (num_clips - 1) == 0:
                assert starts == offset
            assert all(0 <= ours - theirs < max(num_clips - 1, 1) for ours, theirs in zip(starts, offset))
            assert starts[0] == pyslowfast_start(delta, 0, num_clips, False) or num_clips == 1
    if num_clips == 4:  # delta 10: the last clip ends the video, the offset mode's a frame short
        assert uniform_clips(67, 8, 8, 4)[-1][0] == 10 != pyslowfast_start(10, 3, 4, True) == 9


def test_centre_clip_follows_pyslowfast():
    # delta = 100 - 57 = 43, start = 43 // 2
    assert uniform_clips(100, 8, 8, 1) == [list(range(21, 21 + 57, 8))]


def test_test_clips_spread_from_start_to_end():
    clips = uniform_clips(100, 4, 2, 3)  # clip_size 7, delta 93: starts 0, 46, 93
    assert [clip[0] for clip in clips] == [0, 46, 93]
    assert clips[-1][-1] == 99
    assert len(uniform_clips(300, 8, 8, 10)) == 10
    with pytest.raises(ValueError):
        uniform_clips(100, 4, 2, 0)


def test_target_fps_strides_in_time_not_in_frames():
    # 8 frames of a 30 fps clip: every 8th frame at 30 fps, every 6.67th at 25, 8 * 2 at 60.
    assert frame_stride(8, 30.0, 30.0) == 8
    assert frame_stride(8, 60.0, 30.0) == 16
    assert frame_stride(8, 25.0, 30.0) == pytest.approx(8 * 25 / 30)
    assert frame_stride(8, 25.0, 0) == 8  # TARGET_FPS 0: frames of the video itself
    assert frame_stride(8, 0.0, 30.0) == 8  # unknown rate: frames of the video
    # fractional strides: frame j at start + floor(j * tau); spans in seconds agree across rates
    assert clip_indices(0, 4, 8 * 25 / 30, 1000) == [0, 6, 13, 20]
    assert clip_size(4, 8 * 25 / 30) == 21
    seconds_30 = clip_indices(0, 8, frame_stride(8, 30.0, 30.0), 1000)[-1] / 30.0
    seconds_60 = clip_indices(0, 8, frame_stride(8, 60.0, 30.0), 1000)[-1] / 60.0
    assert seconds_30 == seconds_60
