"""A video's views from one open video: K clips x S crops clip-major against a slow reference,
train views a function of the item's generator, the union of the clips read once."""

import pytest
import torch

from cgnl_video.config import get_cfg
from cgnl_video.datasets.transforms import MultiViewTransform, TrainTransform
from cgnl_video.datasets.views import Views, build_views
from cgnl_video.decoding.frames import FramesVideo

NUM_FRAMES, HEIGHT, WIDTH = 32, 40, 120
T, RATE = 4, 2  # clips span (T - 1) * RATE + 1 = 7 frames


@pytest.fixture
def frames():
    """Random uint8 frames N x H x W x 3: any misplaced pixel shows."""
    return torch.randint(0, 256, (NUM_FRAMES, HEIGHT, WIDTH, 3), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def test_test_views_are_k_clips_times_s_crops_clip_major(frames):
    views = Views(MultiViewTransform(HEIGHT, 3, False), num_frames=T, sampling_rate=RATE, num_clips=2)
    out = views(FramesVideo(frames.numpy()))
    assert out.shape == (6, 3, T, HEIGHT, HEIGHT) and out.dtype == torch.uint8
    # Slow reference: clips start at 0 and the last start (32 - 7 = 25); crops of 40 at 0, 40, 80.
    for v in range(6):
        clip, crop = v // 3, v % 3
        start, left = (0, 25)[clip], (0, 40, 80)[crop]
        expected = torch.stack([frames[start + RATE * j, :, left:left + HEIGHT] for j in range(T)])
        assert torch.equal(out[v], expected.permute(3, 0, 1, 2)), f"view {v}"
    assert out.shape == views.failed_shape
    # laid out channels-last (V x T x H x W x C in memory), as they were cut from the frames
    assert out.movedim(1, -1).is_contiguous()


def test_train_views_are_a_function_of_the_items_generator(frames):
    transform = TrainTransform([HEIGHT, HEIGHT], 32)
    views = Views(transform, num_frames=T, sampling_rate=RATE, train=True)
    video = FramesVideo(frames)
    out = views(video, torch.Generator().manual_seed(5))
    assert out.shape == (1, 3, T, 32, 32)
    assert torch.equal(out, views(video, torch.Generator().manual_seed(5)))
    assert not torch.equal(out, views(video, torch.Generator().manual_seed(6)))
    # The clip start is the generator's first draw (uniform over 0..25), then the transform's.
    reference = torch.Generator().manual_seed(5)
    start = int(torch.randint(NUM_FRAMES - 7 + 1, (), generator=reference))
    clip = frames[start:start + 7:RATE]
    assert torch.equal(out, transform(clip, torch.arange(T)[None], reference))
    with pytest.raises(ValueError, match="item's generator"):
        views(video)


class CountingVideo(FramesVideo):
    """Frames in memory that record every ``get`` and whether they were closed."""

    def __init__(self, frames):
        super().__init__(frames)
        self.calls, self.closed = [], False

    def get(self, indices, region=None):
        self.calls.append(list(indices))
        return super().get(indices, region)

    def close(self):
        self.closed = True


def test_read_opens_once_scaled_to_the_short_side_and_reads_the_union_once(frames):
    cfg = get_cfg()
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TEST_CROP_SIZE = T, RATE, HEIGHT
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 3, 1  # starts 0, 12, 25
    views = build_views(cfg, "test")
    opened = []

    def opener(path, short_side=None):
        opened.append((path, short_side, CountingVideo(frames)))
        return opened[-1][2]

    out = views.read(opener, "clip.mp4")
    assert out.shape == (3, 3, T, HEIGHT, HEIGHT)
    (path, short_side, video), = opened
    assert (path, short_side, video.closed) == ("clip.mp4", HEIGHT, True)
    assert video.calls == [[0, 2, 4, 6, 12, 14, 16, 18, 25, 27, 29, 31]]


def test_build_views_by_split():
    cfg = get_cfg()
    assert build_views(cfg, "train").train and build_views(cfg, "train").num_clips == 1
    assert build_views(cfg, "val").failed_shape == (1, 3, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE,
                                                    cfg.DATA.TEST_CROP_SIZE)
    test = build_views(cfg, "test")
    assert test.failed_shape[0] == cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    assert test.short_side == cfg.DATA.TEST_CROP_SIZE
