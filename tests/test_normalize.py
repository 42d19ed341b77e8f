"""The device-side input step: uint8 clips -> normalised float, against the formula."""

import pytest
import torch

from cgnl_video.config import get_cfg
from cgnl_video.engine.normalize import InputNormalizer, build_normalizer


def test_normalizer_matches_the_formula_per_channel():
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    clips = torch.randint(0, 256, (2, 3, 4, 5, 6), dtype=torch.uint8)
    out = InputNormalizer(mean, std, torch.device("cpu"))(clips)
    expected = (clips.double() / 255 - torch.tensor(mean).double().view(3, 1, 1, 1)) \
        / torch.tensor(std).double().view(3, 1, 1, 1)
    assert out.dtype == torch.float32 and out.shape == clips.shape
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)
    views = clips[:1]  # a test item's views V x C x T x H x W normalise the same way
    torch.testing.assert_close(InputNormalizer(mean, std, torch.device("cpu"))(views), out[:1])
    # views laid out channels-last (as the loader makes them) give the same, contiguous, floats
    last = clips.movedim(1, -1).contiguous().movedim(-1, 1)
    converted = InputNormalizer(mean, std, torch.device("cpu"))(last)
    assert converted.is_contiguous() and torch.equal(converted, out)


def test_normalizer_refuses_float_input_and_reads_the_config():
    cfg = get_cfg()
    normalize = build_normalizer(cfg, torch.device("cpu"))
    with pytest.raises(TypeError, match="uint8"):
        normalize(torch.zeros(1, 3, 1, 2, 2))
    white = normalize(torch.full((1, 3, 1, 2, 2), 255, dtype=torch.uint8))
    assert white[0, 0, 0, 0, 0].item() == pytest.approx((1 - cfg.DATA.MEAN[0]) / cfg.DATA.STD[0], rel=1e-6)
