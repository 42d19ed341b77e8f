"""The I3D ResNet: architecture against pytorchvideo's i3d_r50, block placement, shapes."""

import glob
import os

import pytest
import torch
import torch.nn as nn
from pytorchvideo.models.hub import i3d_r50

from cgnl_video.errors import ConfigError
from cgnl_video.config import load_config
from cgnl_video.models import CGNLBlock, NonLocalBlock, build_model
from cgnl_video.models.complexity import block_table, count_gflops, count_params
from cgnl_video.models.resnet3d import BLOCK_NAMES

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


@pytest.fixture(scope="module")
def reference():
    return i3d_r50(pretrained=False)


@pytest.fixture(scope="module")
def r50():
    return build_model(load_config())


def test_r50_has_exactly_pytorchvideo_i3d_r50_modules(r50, reference):
    ours = {k: tuple(v.shape) for k, v in r50.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert ours == theirs


@pytest.mark.parametrize("size, published_gflops", [(224, 28.5), (256, 37.3)])
def test_r50_counts_as_pytorchvideo_i3d_r50(r50, reference, size, published_gflops):
    shape = (3, 8, size, size)
    ours, theirs = count_gflops(r50, shape), count_gflops(reference, shape)
    assert ours == pytest.approx(theirs, rel=0.02)
    assert ours == pytest.approx(published_gflops, rel=0.02)
    assert count_params(r50) == count_params(reference)
    assert count_params(r50) / 1e6 == pytest.approx(28.04, rel=0.02)


def test_stage_table_adds_up(r50):
    rows = block_table(r50, (3, 8, 224, 224), BLOCK_NAMES)
    assert [r["name"] for r in rows] == list(BLOCK_NAMES)
    assert rows[4]["output"] == (1024, 4, 14, 14)  # res4: T/2 after pool1, H/16
    assert rows[5]["output"] == (2048, 4, 7, 7)
    assert sum(r["gflops"] for r in rows) == pytest.approx(count_gflops(r50, (3, 8, 224, 224)))
    assert sum(r["params_m"] for r in rows) == pytest.approx(count_params(r50) / 1e6)


def kinds(stage):
    return [type(b).__name__ for b in stage.res_blocks]


def test_one_block_placement_follows_the_authors():
    model = build_model(load_config(os.path.join(CONFIGS, "MiniKinetics", "I3D_8x8_R50_CGNL1.yaml")))
    assert kinds(model.blocks[4]) == ["ResBlock"] * 5 + ["CGNLBlock", "ResBlock"]
    assert sum(isinstance(m, CGNLBlock) for m in model.modules()) == 1
    assert model.blocks[4].res_blocks[5].theta.in_channels == 1024
    assert model.blocks[4].res_blocks[5].theta.out_channels == 512


def test_five_block_placement_is_every_other_block():
    model = build_model(load_config(os.path.join(CONFIGS, "MiniKinetics", "I3D_8x8_R50_NL5.yaml")))
    assert kinds(model.blocks[3]) == ["ResBlock", "ResBlock", "NonLocalBlock"] * 2
    assert kinds(model.blocks[4]) == ["ResBlock", "ResBlock", "NonLocalBlock"] * 3
    assert sum(isinstance(m, NonLocalBlock) for m in model.modules()) == 5


def test_r101_cgnl_sits_after_the_second_to_last_res4_block():
    cfg = load_config(os.path.join(CONFIGS, "MiniKinetics", "I3D_8x8_R101_CGNL1.yaml"))
    model = build_model(cfg)
    assert kinds(model.blocks[4])[-2:] == ["CGNLBlock", "ResBlock"]
    assert len(model.blocks[4].res_blocks) == 24


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIGS, "MiniKinetics", "*.yaml"))))
def test_every_minikinetics_config_builds_with_200_classes(path):
    cfg = load_config(path)
    assert cfg.MODEL.NUM_CLASSES == 200
    assert build_model(cfg).blocks[-1].proj.out_features == 200


@pytest.mark.parametrize("depth, nl_type", [(18, "cgnl"), (34, "nl"), (50, "cgnl")])
def test_logits_shape(depth, nl_type):
    cfg = load_config(None, ["RESNET.DEPTH", str(depth), "MODEL.NUM_CLASSES", "7",
                             "NONLOCAL.TYPE", nl_type, "NONLOCAL.LOCATION", "[[], [0], [1], []]",
                             "RESNET.WIDTH_PER_GROUP", "16"])
    assert build_model(cfg)(torch.randn(2, 3, 4, 32, 32)).shape == (2, 7)


def test_new_nonlocal_blocks_do_not_change_the_output():
    torch.manual_seed(0)
    cfg = load_config(None, ["RESNET.DEPTH", "18", "NONLOCAL.LOCATION", "[[], [1], [0, 1], []]",
                             "RESNET.WIDTH_PER_GROUP", "16"])
    model = build_model(cfg).eval()
    clip = torch.randn(1, 3, 4, 32, 32)
    with_blocks = model(clip)
    for stage in model.blocks[1:6]:
        if hasattr(stage, "res_blocks"):
            stage.res_blocks = nn.ModuleList(b for b in stage.res_blocks if not isinstance(b, CGNLBlock))
    torch.testing.assert_close(with_blocks, model(clip))


@pytest.mark.parametrize("opts, message", [
    (["RESNET.DEPTH", "42"], "RESNET.DEPTH=42"),
    (["NONLOCAL.LOCATION", "[[], [], [6], []]"], r"NONLOCAL.LOCATION\[2\] \(res4\)"),
    (["NONLOCAL.LOCATION", "[[], []]"], "NONLOCAL.LOCATION"),
    (["NONLOCAL.TYPE", "cgnlx"], "NONLOCAL.TYPE='cgnlx'"),
    (["CGNL.KERNEL", "rbf"], "CGNL.KERNEL='rbf'"),
    (["NONLOCAL.LOCATION", "[[], [], [1], []]", "CGNL.GROUPS", "7"], "CGNL.GROUPS=7"),
    (["NONLOCAL.POOL", "[2, 2]"], "NONLOCAL.POOL"),
])
def test_bad_model_values_name_the_key(opts, message):
    with pytest.raises(ConfigError, match=message):
        build_model(load_config(None, opts))
