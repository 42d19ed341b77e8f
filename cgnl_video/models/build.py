"""``build_model(cfg)``: the network a config describes."""

from functools import partial

import torch.nn as nn
from fvcore.common.config import CfgNode
from pytorchvideo.models.weight_init import init_net_weights

from cgnl_video.config.validation import check_model_config
from cgnl_video.models.cgnl import CGNLBlock
from cgnl_video.models.nonlocal_block import NonLocalBlock
from cgnl_video.models.resnet3d import create_resnet3d


def make_nonlocal_block(cfg: CfgNode, channels: int) -> nn.Module:
    """The non-local block of ``NONLOCAL.TYPE`` for a stage of ``channels``, inner C / 2
    (``CGNL.GROUPS`` divides it: ``config/validation.py``'s ``check_cgnl_groups``)."""
    if cfg.NONLOCAL.TYPE == "cgnl":
        return CGNLBlock(
            channels, channels // 2, groups=cfg.CGNL.GROUPS, kernel=cfg.CGNL.KERNEL,
            order=cfg.CGNL.ORDER, use_scale=cfg.CGNL.USE_SCALE,
        )
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
        stem_temporal_kernel=cfg.RESNET.STEM_TEMPORAL_KERNEL,
        stem_temporal_stride=cfg.RESNET.STEM_TEMPORAL_STRIDE,
        stem_pool_kernel=cfg.RESNET.STEM_POOL_KERNEL,
        stem_pool_stride=cfg.RESNET.STEM_POOL_STRIDE,
        stem_pool_padding=cfg.RESNET.STEM_POOL_PADDING,
        pool1=cfg.RESNET.POOL1,
    )
    # fvcore MSRA fill for convolutions, zero-gamma last BN per residual block.
    init_net_weights(model, init_std=cfg.MODEL.FC_INIT_STD, style="resnet")
    for module in model.modules():
        if isinstance(module, (CGNLBlock, NonLocalBlock)):
            module.reset_parameters()
    return model
