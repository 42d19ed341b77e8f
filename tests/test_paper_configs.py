"""Every shipped config builds the network its row of the paper's table names (issue 12).

The expected block positions are derived here from the two cited rules, not copied from
the configs:

- 1 block: the CGNL authors' code (KaiyuYue/cgnl-network.pytorch, model/resnet.py,
  ``ResNet._make_layer``), which appends the block before layer3's block ``i`` when
  ``(i == 5 and blocks == 6) or (i == 22 and blocks == 23)``; layer3 is res4.
- 5 blocks: the non-local reference (facebookresearch/video-nonlocal-net,
  lib/models/resnet_video_org.py with resnet_helper.res_stage_nonlocal): after residual
  block ``idx`` when ``idx % layer_mod == layer_mod - 1``, NONLOCAL.LAYER_MOD = 2 in res3 and
  res4, except res4 of R101: ``layer_mod * 4 - 1``.
"""

import glob
import os
import re

import pytest
import torch

from cgnl_video.choices import STAGE_DEPTHS
from cgnl_video.config import load_config
from cgnl_video.config.validation import temporal_sizes
from cgnl_video.models import CGNLBlock, NonLocalBlock, build_model
from cgnl_video.models.resnet3d import STAGE_INDICES

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
RES3, RES4 = 1, 2  # indices of the stages in NONLOCAL.LOCATION (res2..res5)


def authors_one_block(depth):
    """{stage: [index after which]} of the CGNL authors' ``_make_layer`` rule."""
    blocks = STAGE_DEPTHS[depth][RES4]
    before = [i for i in range(1, blocks) if (i == 5 and blocks == 6) or (i == 22 and blocks == 23)]
    return {RES4: [i - 1 for i in before]}


def reference_five_blocks(depth):
    """{stage: [index after which]} of the reference's ``idx % layer_mod == layer_mod - 1``."""
    layer_mod = 2  # cfg.NONLOCAL.LAYER_MOD (lib/core/config.py)
    mods = {RES3: 2 if depth == 101 else layer_mod, RES4: layer_mod * 4 - 1 if depth == 101 else layer_mod}
    return {stage: [idx for idx in range(STAGE_DEPTHS[depth][stage]) if idx % mod == mod - 1]
            for stage, mod in mods.items()}


RULES = {"1": authors_one_block, "5": reference_five_blocks}
BLOCK_TYPES = {"NL": NonLocalBlock, "CGNL": CGNLBlock}
ROW = re.compile(r"I3D_(?P<clip>8x8|32x2)_R(?P<depth>50|101)(_(?P<kind>NL|CGNL)(?P<count>[15]))?")
PATHS = sorted(glob.glob(os.path.join(CONFIGS, "MiniKinetics", "*.yaml"))
               + glob.glob(os.path.join(CONFIGS, "UCF101", "*.yaml")))


def expected_row(path):
    """(clip, depth, block type or None, {stage: indices}) the file name promises."""
    row = ROW.match(os.path.basename(path))
    depth = int(row["depth"])
    if not row["kind"]:
        return row["clip"], depth, None, {}
    return row["clip"], depth, BLOCK_TYPES[row["kind"]], RULES[row["count"]](depth)


def test_every_row_of_the_paper_table_has_a_config():
    names = {os.path.basename(p)[:-5] for p in glob.glob(os.path.join(CONFIGS, "MiniKinetics", "*.yaml"))}
    rows = {f"I3D_{clip}_R{depth}{variant}" for clip in ("8x8", "32x2") for depth in (50, 101)
            for variant in ("", "_NL1", "_NL5", "_CGNL1", "_CGNL5")}
    assert names == rows


def test_the_rules_give_the_cited_positions():
    assert authors_one_block(50) == {RES4: [4]} and authors_one_block(101) == {RES4: [21]}
    assert reference_five_blocks(50) == {RES3: [1, 3], RES4: [1, 3, 5]}
    assert reference_five_blocks(101) == {RES3: [1, 3], RES4: [6, 13, 20]}


def placements(model):
    """{stage: [residual block index after which]} and the set of non-local block types."""
    where, types = {}, set()
    for stage, block_index in enumerate(STAGE_INDICES):
        residual = -1
        for block in model.blocks[block_index].res_blocks:
            if isinstance(block, (NonLocalBlock, CGNLBlock)):
                where.setdefault(stage, []).append(residual)
                types.add(type(block))
            else:
                residual += 1
    return where, types


@pytest.mark.parametrize("path", PATHS, ids=os.path.basename)
def test_config_builds_its_row(path):
    clip, depth, block_type, where = expected_row(path)
    cfg = load_config(path)
    with torch.device("meta"):
        model = build_model(cfg)
    found, types = placements(model)
    assert cfg.RESNET.DEPTH == depth
    assert found == where
    assert types == ({block_type} if block_type else set())
    residual_blocks = [sum(not isinstance(b, (NonLocalBlock, CGNLBlock)) for b in model.blocks[i].res_blocks)
                       for i in STAGE_INDICES]
    assert tuple(residual_blocks) == STAGE_DEPTHS[depth]
    # The clip: 32 x 2 on the reference's 32-frame layout, 8 x 8 on PySlowFast's; both run
    # res2 at T = 8 and res3-res5 at T = 4 (T after the stem conv, stem pool, pool1).
    frames = {"8x8": (8, 8), "32x2": (32, 2)}[clip]
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE) == frames
    assert temporal_sizes(cfg.RESNET, frames[0]) == ([16, 8, 4] if clip == "32x2" else [8, 8, 4])


@pytest.mark.parametrize("path", [p for p in PATHS if "MiniKinetics" in p], ids=os.path.basename)
def test_minikinetics_recipe_is_the_reference_schedule_in_epochs(path):
    # configs/DBG_kinetics_resnet_8gpu_c2d_nonlocal_400k.yaml: batch 64, lr 0.01, steps at
    # 150k / 300k of 400k iterations, no warm-up; Mini-Kinetics-200: 80,000 training videos.
    iterations_per_epoch = 80_000 / 64
    cfg = load_config(path)
    assert cfg.MODEL.NUM_CLASSES == 200
    assert (cfg.TRAIN.BATCH_SIZE, cfg.SOLVER.BASE_LR, cfg.SOLVER.WARMUP_EPOCHS) == (64, 0.01, 0.0)
    assert cfg.SOLVER.MAX_EPOCH == 400_000 / iterations_per_epoch
    assert cfg.SOLVER.STEPS == [150_000 / iterations_per_epoch, 300_000 / iterations_per_epoch]
    assert cfg.SOLVER.LRS == [0.1, 0.01]


@pytest.mark.parametrize("path", PATHS, ids=os.path.basename)
def test_config_header_names_its_source(path):
    with open(path) as f:
        header = "".join(line for line in f if line.startswith("#"))
    assert re.search(r"Source: |Recipe: ", header), path
