"""Train and multi-view test transforms: uint8 views, shapes, flips, crop positions, view order,
item-owned randomness."""

import pytest
import torch

from cgnl_video.config import get_cfg
from cgnl_video.datasets.transforms import MultiViewTransform, TrainTransform, build_transform, crop_offsets


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def flat_frames(levels, height=48, width=64) -> torch.Tensor:
    """uint8 ``N x H x W x 3``, frame ``i`` flat at ``levels[i]``."""
    return torch.tensor(levels, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, height, width, 3).contiguous()


def gradient_frames(height: int, width: int) -> torch.Tensor:
    """One uint8 frame ``1 x H x W x 3`` whose value grows along its long side."""
    ramp = torch.linspace(0, 255, max(height, width)).round().to(torch.uint8)
    frame = ramp.view(1, -1).expand(height, width) if width >= height else ramp.view(-1, 1).expand(height, width)
    return frame[None, :, :, None].expand(1, height, width, 3).contiguous()


def test_train_views_are_uint8_crops():
    transform = TrainTransform([36, 44], 32)
    views = transform(flat_frames([50, 100, 150, 200]), torch.tensor([[0, 1, 2, 3]]), gen())
    assert views.dtype == torch.uint8 and views.shape == (1, 3, 4, 32, 32)
    assert views[0, :, :, 5, 7].tolist() == [[50, 100, 150, 200]] * 3
    assert transform.short_side == 44


def test_train_views_are_a_function_of_the_generator_only():
    transform = TrainTransform([48, 64], 48)
    frames, clips = gradient_frames(64, 80), torch.tensor([[0]])
    first = [transform(frames, clips, gen(seed)) for seed in range(6)]
    torch.manual_seed(99)  # the global generator plays no part
    assert all(torch.equal(transform(frames, clips, gen(seed)), first[seed]) for seed in range(6))
    assert len({view.sum().item() for view in first}) > 1  # different seeds, different views


@pytest.mark.parametrize("flip, expected", [(True, {True, False}), (False, {True})])
def test_train_flips_sometimes_unless_disabled(flip, expected):
    half = torch.zeros(1, 40, 40, 3, dtype=torch.uint8)
    half[:, :, 20:] = 255  # right half white
    transform, g = TrainTransform([40, 40], 40, flip=flip), gen()
    right_is_white = {bool(transform(half, torch.tensor([[0]]), g)[0, 0, 0, 0, -1] > 0) for _ in range(20)}
    assert right_is_white == expected


def test_train_scale_jitter_changes_the_field_of_view():
    # A 64-wide ramp scaled to short side 48..64 then cropped to 48: the wider the scale,
    # the smaller the ramp's span inside the crop.
    transform, g = TrainTransform([48, 64], 48), gen()
    frame = gradient_frames(64, 64)
    spans = set()
    for _ in range(30):
        row = transform(frame, torch.tensor([[0]]), g)[0, 0, 0, 24].float()
        spans.add(round((row.max() - row.min()).item()))
    assert len(spans) > 3


@pytest.mark.parametrize("height, width", [(64, 90), (90, 64), (40, 40)])
def test_train_crops_match_resizing_the_whole_frame_then_cropping(height, width):
    # Slow reference: the same draws (scale, top, left, flip), the whole frame resized to the
    # scale (torchvision), then cropped. The transform cuts the region first and resizes it
    # alone: the same field of view, rounding to whole source pixels aside.
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    smooth = 128 + 60 * torch.sin(ys / 9.0) * torch.cos(xs / 13.0)
    frame = smooth.round().to(torch.uint8)[None, :, :, None].expand(1, height, width, 3).contiguous()
    transform = TrainTransform([48, 64], 40)
    for seed in range(10):
        out = transform(frame, torch.tensor([[0]]), gen(seed))[0, :, 0].float()
        g = gen(seed)
        scale = 48 + int(torch.randint(17, (), generator=g))
        resized = torch.nn.functional.interpolate(frame.permute(0, 3, 1, 2).float(), size=(
            (scale, int(scale * width / height)) if height <= width else (int(scale * height / width), scale)),
            mode="bilinear", antialias=True, align_corners=False)[0]
        top = int(torch.randint(resized.shape[1] - 40 + 1, (), generator=g))
        left = int(torch.randint(resized.shape[2] - 40 + 1, (), generator=g))
        expected = resized[:, top:top + 40, left:left + 40]
        if int(torch.randint(2, (), generator=g)):
            expected = expected.flip(-1)
        assert (out - expected).abs().mean() < 3.0, seed  # levels of 0-255; a misplaced crop is ~30 off


def test_bad_train_settings_are_rejected():
    with pytest.raises(ValueError, match="TRAIN_JITTER_SCALES"):
        TrainTransform([200, 256], 224 + 100)
    with pytest.raises(ValueError, match="NUM_SPATIAL_CROPS"):
        MultiViewTransform(32, 0, False)


def test_crop_offsets_span_the_long_side():
    assert crop_offsets(340, 256, 3) == [0, 42, 84]
    assert crop_offsets(300, 256, 1) == [22]
    assert crop_offsets(256, 256, 3) == [0, 0, 0]


@pytest.mark.parametrize("height, width", [(48, 96), (96, 48)])
def test_three_crops_run_from_one_end_to_the_other(height, width):
    transform = MultiViewTransform(24, 3, False)
    views = transform(gradient_frames(height, width), torch.tensor([[0]]))
    assert views.shape == (3, 3, 1, 24, 24) and views.dtype == torch.uint8
    means = views.float().mean(dim=(1, 2, 3, 4)) / 255
    assert means[0] < 0.3 < means[1] < 0.7 < means[2]
    centre = MultiViewTransform(24, 1, False)(gradient_frames(height, width), torch.tensor([[0]]))
    assert torch.equal(centre[0], views[1])


def test_fully_convolutional_keeps_the_whole_resized_frame():
    transform = MultiViewTransform(24, 3, True)
    views = transform(flat_frames([10, 20]), torch.tensor([[0, 1], [1, 0]]))
    assert transform.num_crops == 1
    assert views.shape == (2, 3, 2, 24, 32)


def test_views_are_clip_major():
    transform = MultiViewTransform(24, 3, False)
    clips = torch.tensor([[0, 1], [2, 3]])
    views = transform(flat_frames([10, 60, 110, 160]), clips)
    assert views.shape == (6, 3, 2, 24, 24)
    levels = views.float().mean(dim=(1, 3, 4))  # V x T
    for v in range(6):
        expected = torch.tensor([10.0 + 50 * int(i) for i in clips[v // 3]])
        assert torch.equal(levels[v], expected)


def test_build_transform_by_split():
    cfg = get_cfg()
    assert isinstance(build_transform(cfg, "train"), TrainTransform)
    assert build_transform(cfg, "val").num_crops == 1
    assert build_transform(cfg, "test").num_crops == cfg.TEST.NUM_SPATIAL_CROPS
    cfg.TEST.FULLY_CONVOLUTIONAL = True
    assert build_transform(cfg, "test").num_crops == 1
    assert build_transform(cfg, "val").num_crops == 1
    with pytest.raises(ValueError, match="unknown split"):
        build_transform(cfg, "dev")
