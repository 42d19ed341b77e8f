"""``build_model(cfg)``: the network a config describes."""

from functools import partial

import torch.nn as nn
from fvcore.common.config import CfgNode
from pytorchvideo.models.weight_init import init_net_weights

from cgnl_video.config.loading import ConfigError
from cgnl_video.models import cgnl, nonlocal_block
from cgnl_video.models.cgnl import CGNLBlock
from cgnl_video.models.nonlocal_block import NonLocalBlock
from cgnl_video.models.resnet3d import STAGE_DEPTHS, create_resnet3d

NONLOCAL_TYPES = ("cgnl", "nl")


def _require(ok: bool, key: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {expected}", key=key.split("[")[0])


def check_model_config(cfg: CfgNode) -> None:
    """Raises :class:`ConfigError` naming the first model key with an unusable value."""
    depth = cfg.RESNET.DEPTH
    _require(depth in STAGE_DEPTHS, "RESNET.DEPTH", depth, f"one of {sorted(STAGE_DEPTHS)}")
    _require(cfg.MODEL.NUM_CLASSES > 0, "MODEL.NUM_CLASSES", cfg.MODEL.NUM_CLASSES, "> 0")
    location = cfg.NONLOCAL.LOCATION
    _require(len(location) == 4, "NONLOCAL.LOCATION", location, "4 lists (res2..res5)")
    for stage, (indices, depth_s) in enumerate(zip(location, STAGE_DEPTHS[depth])):
        _require(
            all(isinstance(i, int) and 0 <= i < depth_s for i in indices),
            f"NONLOCAL.LOCATION[{stage}] (res{stage + 2})", list(indices),
            f"block indices in [0, {depth_s - 1}] for RESNET.DEPTH={depth}",
        )
    _require(cfg.NONLOCAL.TYPE in NONLOCAL_TYPES, "NONLOCAL.TYPE", cfg.NONLOCAL.TYPE,
             f"one of {NONLOCAL_TYPES}")
    _require(cfg.NONLOCAL.KERNEL in nonlocal_block.KERNELS, "NONLOCAL.KERNEL",
             cfg.NONLOCAL.KERNEL, f"one of {nonlocal_block.KERNELS}")
    _require(len(cfg.NONLOCAL.POOL) in (0, 3), "NONLOCAL.POOL", cfg.NONLOCAL.POOL,
             "[] or [T, H, W]")
    _require(cfg.CGNL.KERNEL in cgnl.KERNELS, "CGNL.KERNEL", cfg.CGNL.KERNEL,
             f"one of {cgnl.KERNELS}")
    _require(cfg.CGNL.ORDER >= 0, "CGNL.ORDER", cfg.CGNL.ORDER, ">= 0")


def make_nonlocal_block(cfg: CfgNode, channels: int) -> nn.Module:
    """The non-local block of ``NONLOCAL.TYPE`` for a stage of ``channels``, inner C / 2."""
    if cfg.NONLOCAL.TYPE == "cgnl":
        try:
            return CGNLBlock(
                channels, channels // 2, groups=cfg.CGNL.GROUPS, kernel=cfg.CGNL.KERNEL,
                order=cfg.CGNL.ORDER, use_scale=cfg.CGNL.USE_SCALE,
            )
        except ValueError as err:
            raise ConfigError(f"CGNL.GROUPS={cfg.CGNL.GROUPS}: {err}") from err
    return NonLocalBlock(
        channels, channels // 2, kernel=cfg.NONLOCAL.KERNEL, pool_size=cfg.NONLOCAL.POOL or None
    )


def build_model(cfg: CfgNode) -> nn.Module:
    """Builds and initialises the I3D ResNet of ``cfg`` (``B x 3 x T x H x W`` -> logits)."""
    check_model_config(cfg)
    model = create_resnet3d(
        depth=cfg.RESNET.DEPTH,
        num_classes=cfg.MODEL.NUM_CLASSES,
        stem_width=cfg.RESNET.WIDTH_PER_GROUP,
        dropout_rate=cfg.MODEL.DROPOUT_RATE,
        nonlocal_location=cfg.NONLOCAL.LOCATION,
        make_nonlocal=partial(make_nonlocal_block, cfg),
    )
    # fvcore MSRA fill for convolutions, zero-gamma last BN per residual block.
    init_net_weights(model, init_std=cfg.MODEL.FC_INIT_STD, style="resnet")
    for module in model.modules():
        if isinstance(module, (CGNLBlock, NonLocalBlock)):
            module.reset_parameters()
    return model
