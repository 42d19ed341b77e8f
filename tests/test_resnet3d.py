"""The I3D ResNet: architecture against pytorchvideo's i3d_r50, block placement, shapes."""

import os

import pytest
import torch
import torch.nn as nn
from pytorchvideo.models.hub import i3d_r50
from pytorchvideo.models.resnet import create_resnet
from pytorchvideo.models.stem import create_res_basic_stem

from cgnl_video.config import load_config
from cgnl_video.config.validation import check_temporal_layout, temporal_sizes
from cgnl_video.errors import ConfigError
from cgnl_video.models import CGNLBlock, build_model
from cgnl_video.models.complexity import block_table, count_gflops, count_params
from cgnl_video.models.resnet3d import BLOCK_NAMES

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
MINIKINETICS = os.path.join(CONFIGS, "MiniKinetics")


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


# --- The reference layouts, built independently (issue 12) ---------------------------------
# conv_a temporal kernels per stage of the reference's I3D (video-nonlocal-net
# lib/models/resnet_video_org.py obtain_arc, arcs 2 / 4: use_temp_convs 1 -> 3x1x1), cycled.
REFERENCE_CONV_A = (((3, 1, 1),), ((3, 1, 1), (1, 1, 1)), ((3, 1, 1), (1, 1, 1)),
                    ((1, 1, 1), (3, 1, 1)))


def reference_i3d(depth, stem_stride, pool_kernel, pool_stride, pool_padding):
    """pytorchvideo's ``create_resnet`` with the stem conv 5x7x7 (stride stem_stride x 2 x 2),
    the stem pool given, pool2 2x1x1 after res2 and a global average pool (the reference's
    ``pool5``, 4 x 7 x 7 at 224 px): ``resnet_video_org.py`` (32 frames) or PySlowFast's I3D 8x8."""

    def stem(**kwargs):  # create_resnet pads the stem pool k // 2; the reference pads 0
        return create_res_basic_stem(**{**kwargs, "pool_padding": pool_padding})

    return create_resnet(
        model_depth=depth, model_num_class=200, stem_conv_kernel_size=(5, 7, 7),
        stem_conv_stride=(stem_stride, 2, 2), stem_pool_kernel_size=pool_kernel,
        stem_pool_stride=pool_stride, stem=stem, stage1_pool=nn.MaxPool3d,
        stage1_pool_kernel_size=(2, 1, 1), stage_conv_a_kernel_size=REFERENCE_CONV_A,
        head_pool=nn.AdaptiveAvgPool3d, head_output_size=(1, 1, 1),
    )


REFERENCE_32x2 = dict(stem_stride=2, pool_kernel=(2, 3, 3), pool_stride=(2, 2, 2), pool_padding=(0, 0, 0))
PYSLOWFAST_8x8 = dict(stem_stride=1, pool_kernel=(1, 3, 3), pool_stride=(1, 2, 2), pool_padding=(0, 1, 1))


@pytest.mark.parametrize("config, layout, frames", [
    ("I3D_32x2_R50.yaml", REFERENCE_32x2, 32),
    ("I3D_32x2_R101.yaml", REFERENCE_32x2, 32),
    ("I3D_8x8_R101.yaml", PYSLOWFAST_8x8, 8),
])
def test_configs_count_as_the_reference_layout(config, layout, frames):
    cfg = load_config(os.path.join(MINIKINETICS, config))
    ours, theirs = build_model(cfg), reference_i3d(cfg.RESNET.DEPTH, **layout)
    assert count_params(ours) == count_params(theirs)
    # 112 px keeps the count fast and still tells the layouts apart (the stem pool's padding
    # gives 27 or 28 px at res2); docs/REPRODUCE.md has the 224 px figures.
    shape = (3, frames, 112, 112)
    rows, reference_rows = block_table(ours, shape, BLOCK_NAMES), block_table(theirs, shape, BLOCK_NAMES)
    for row, reference_row in zip(rows, reference_rows):  # block by block: output, params, GFLOPs
        assert row["output"] == reference_row["output"]
        assert row["params_m"] == pytest.approx(reference_row["params_m"], rel=1e-9)
        assert row["gflops"] == pytest.approx(reference_row["gflops"], rel=1e-4)
    assert rows[1]["output"][1:] == ((8, 27, 27) if layout is REFERENCE_32x2 else (8, 28, 28))


def test_32x2_r50_has_the_published_parameter_count():
    # mmaction2 configs/recognition/i3d/metafile.yml, i3d_r50_32x2x1: 28043472 (400 classes).
    cfg = load_config(os.path.join(MINIKINETICS, "I3D_32x2_R50.yaml"), ["MODEL.NUM_CLASSES", "400"])
    with torch.device("meta"):
        assert count_params(build_model(cfg)) == 28043472


def test_8x8_r50_config_is_pytorchvideo_i3d_r50(reference):
    with torch.device("meta"):
        model = build_model(load_config(os.path.join(MINIKINETICS, "I3D_8x8_R50.yaml")))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("blocks.6.")}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items() if not k.startswith("blocks.6.")}
    assert ours == theirs
    assert [type(m) for m in model.blocks[:-1].modules()] == [type(m) for m in reference.blocks[:-1].modules()]
    assert model.blocks[0].pool.padding == tuple(reference.blocks[0].pool.padding) == (0, 1, 1)


@pytest.mark.parametrize("config, frames, res2_t, res3_t", [
    ("I3D_32x2_R50.yaml", 32, 8, 4),  # the reference: res2 at T = 8, res3-res5 at T = 4
    ("I3D_32x2_R50.yaml", 8, 2, 1),
    ("I3D_8x8_R50.yaml", 8, 8, 4),
    ("I3D_8x8_R50.yaml", 32, 32, 16),
])
def test_stage_output_sizes(config, frames, res2_t, res3_t):
    cfg = load_config(os.path.join(MINIKINETICS, config))
    rows = {row["name"]: row["output"] for row in block_table(build_model(cfg), (3, frames, 64, 64), BLOCK_NAMES)}
    assert [rows[name][:2] for name in ("res2", "res3", "res4", "res5")] == [
        (256, res2_t), (512, res3_t), (1024, res3_t), (2048, res3_t)]
    assert temporal_sizes(cfg.RESNET, frames)[1:] == [res2_t, res3_t]


@pytest.mark.parametrize("config, fewest", [("I3D_32x2_R50.yaml", 7), ("I3D_8x8_R50.yaml", 2)])
def test_frame_check_accepts_exactly_the_clips_the_network_runs(config, fewest):
    cfg = load_config(os.path.join(MINIKINETICS, config),
                      ["RESNET.DEPTH", "18", "RESNET.WIDTH_PER_GROUP", "4", "MODEL.NUM_CLASSES", "3"])
    model = build_model(cfg).eval()
    cfg.defrost()
    accepted = []
    for frames in range(1, 10):
        cfg.DATA.NUM_FRAMES = frames
        try:
            check_temporal_layout(cfg)
            accepted.append(frames)
        except ConfigError as err:
            assert "DATA.NUM_FRAMES" in str(err)
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, frames, 32, 32))
            runs = True
        except RuntimeError:
            runs = False
        assert (frames in accepted) == runs, frames
    assert accepted == list(range(fewest, 10))


@pytest.mark.parametrize("opts, message", [
    (["RESNET.STEM_TEMPORAL_KERNEL", "4"], "RESNET.STEM_TEMPORAL_KERNEL=4: expected an odd"),
    (["RESNET.STEM_TEMPORAL_STRIDE", "0"], "RESNET.STEM_TEMPORAL_STRIDE=0"),
    (["RESNET.STEM_POOL_KERNEL", "[1, 3]"], "RESNET.STEM_POOL_KERNEL"),
    (["RESNET.STEM_POOL_STRIDE", "[1, 0, 2]"], "RESNET.STEM_POOL_STRIDE"),
    (["RESNET.STEM_POOL_PADDING", "[1, 1, 1]"], "RESNET.STEM_POOL_PADDING=.*at most half"),
    (["RESNET.POOL1", "[2, 1]"], "RESNET.POOL1"),
    (["RESNET.STEM_TEMPORAL_STRIDE", "2", "RESNET.STEM_POOL_KERNEL", "[2, 3, 3]",
      "RESNET.STEM_POOL_STRIDE", "[2, 2, 2]", "DATA.NUM_FRAMES", "4"], "DATA.NUM_FRAMES=4"),
])
def test_bad_layout_values_name_the_key(opts, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, opts)
