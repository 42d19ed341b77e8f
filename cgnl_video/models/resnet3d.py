"""Inflated 3D ResNet (I3D) 18/34/50/101 with non-local blocks, on pytorchvideo blocks.

Layout for an input ``B x 3 x T x H x W``; the stem and the two temporal poolings are
arguments (defaults: PySlowFast ``I3D_8x8_R50`` = pytorchvideo ``i3d_r50``):

=========  ==========================================  ==========================
name       layers                                      output (R50, defaults)
=========  ==========================================  ==========================
stem       conv 5x7x7 stride 1x2x2, max-pool 1x3x3      64 x T x H/4 x W/4
           stride 1x2x2 pad 0x1x1
res2       residual blocks, conv_a 3x1x1               256 x T x H/4 x W/4
pool1      max-pool, kernel = stride (2x1x1)           256 x T/2 x H/4 x W/4
res3       conv_a 3x1x1 / 1x1x1 alternating, /2        512 x T/2 x H/8 x W/8
res4       conv_a 3x1x1 / 1x1x1 alternating, /2        1024 x T/2 x H/16 x W/16
res5       conv_a 1x1x1 / 3x1x1 alternating, /2        2048 x T/2 x H/32 x W/32
head       global average pool, dropout, linear        NUM_CLASSES
=========  ==========================================  ==========================

The non-local reference's 32-frame I3D (facebookresearch/video-nonlocal-net,
``lib/models/resnet_video_org.py``) is ``stem_temporal_stride=2``, stem pool 2x3x3 stride
2x2x2 without padding (its ``pool1``) and ``pool1=(2, 1, 1)`` (its ``pool2``): a 32-frame
clip runs res2 at T = 8 and res3-res5 at T = 4. ``pool1`` is PySlowFast's name
(``_POOL1`` in ``video_model_builder.py``) for the pool after res2.

Basic-block nets (18/34) put the temporal kernel in their first 3x3 convolution
(``k x 3 x 3``) and have a quarter of the widths. Non-local blocks (NL or CGNL)
are inserted into a stage's ``res_blocks`` after the residual blocks listed in
``NONLOCAL.LOCATION`` (0-based, as the reference's ``idx % nonlocal_mod``). Without
non-local blocks and with the default layout the R50 has exactly the module names and
shapes of pytorchvideo's ``i3d_r50`` (with a global-average head); the stem and pool
arguments change no parameter shape but the stem kernel's temporal size.
"""

from functools import partial
from typing import Callable, Sequence, Tuple

import torch.nn as nn
from pytorchvideo.models.head import create_res_basic_head
from pytorchvideo.models.net import Net
from pytorchvideo.models.resnet import ResStage, create_bottleneck_block, create_res_stage
from pytorchvideo.models.stem import create_res_basic_stem

from cgnl_video.choices import STAGE_DEPTHS

# A (T, H, W) size.
Triple = Sequence[int]
# Names of ``model.blocks`` in order.
BLOCK_NAMES = ("stem", "res2", "pool1", "res3", "res4", "res5", "head")
# Index in ``model.blocks`` of each residual stage res2..res5.
STAGE_INDICES = (1, 3, 4, 5)
# I3D temporal kernel sizes of each stage's conv_a, repeated over its blocks.
I3D_TEMPORAL_KERNELS = ((3,), (3, 1), (3, 1), (1, 3))
# State-dict prefix of the classifier head (skipped when fine-tuning to other classes): the one
# way the code finds the head (its linear layer: :func:`classifier`).
HEAD_PREFIX = f"blocks.{BLOCK_NAMES.index('head')}."


def classifier(model: Net) -> nn.Linear:
    """The linear layer of ``model``'s head (its input: the pooled backbone features)."""
    return model.blocks[BLOCK_NAMES.index("head")].proj


def uses_bottleneck(depth: int) -> bool:
    """R50/R101 use bottleneck blocks, R18/R34 basic blocks."""
    return depth >= 50


class BasicBlock(nn.Module):
    """ResNet basic block branch: conv_a (k x 3 x 3) -> BN -> ReLU -> conv_b (1x3x3) -> BN.

    ``B x C_in x T x H x W`` -> ``B x C_out x T / st x H / s x W / s``.
    """

    def __init__(self, conv_a: nn.Module, norm_a: nn.Module, conv_b: nn.Module, norm_b: nn.Module):
        super().__init__()
        self.conv_a, self.norm_a, self.act_a = conv_a, norm_a, nn.ReLU()
        self.conv_b, self.norm_b = conv_b, norm_b
        # Zero-initialised by pytorchvideo's ResNet init, as its bottleneck's norm_c.
        self.norm_b.block_final_bn = True

    def forward(self, x):
        return self.norm_b(self.conv_b(self.act_a(self.norm_a(self.conv_a(x)))))


def create_basic_block(
    *,
    dim_in: int,
    dim_out: int,
    conv_a_kernel_size: Tuple[int, int, int],
    conv_a_stride: Tuple[int, int, int],
    conv_b_stride: Tuple[int, int, int],
    norm: Callable = nn.BatchNorm3d,
    **_unused,
) -> BasicBlock:
    """Builds a :class:`BasicBlock` from pytorchvideo's bottleneck-builder arguments.

    Only the temporal size of ``conv_a_kernel_size`` is used; the stride is the
    temporal stride of conv_a with the spatial stride of conv_b.
    """
    kt = conv_a_kernel_size[0]
    stride = (conv_a_stride[0], conv_b_stride[1], conv_b_stride[2])
    conv_a = nn.Conv3d(dim_in, dim_out, (kt, 3, 3), stride, (kt // 2, 1, 1), bias=False)
    conv_b = nn.Conv3d(dim_out, dim_out, (1, 3, 3), 1, (0, 1, 1), bias=False)
    return BasicBlock(conv_a, norm(dim_out), conv_b, norm(dim_out))


def create_stage(
    depth: int, dim_in: int, dim_inner: int, dim_out: int, spatial_stride: int,
    temporal_kernels: Sequence[int], bottleneck: bool,
) -> ResStage:
    """One residual stage (pytorchvideo ``create_res_stage``), stride on its first block."""
    return create_res_stage(
        depth=depth,
        dim_in=dim_in,
        dim_inner=dim_inner,
        dim_out=dim_out,
        bottleneck=create_bottleneck_block if bottleneck else create_basic_block,
        conv_a_kernel_size=[(k, 1, 1) for k in temporal_kernels],
        conv_a_stride=(1, 1, 1),
        conv_a_padding=[(k // 2, 0, 0) for k in temporal_kernels],
        conv_b_kernel_size=(1, 3, 3),
        conv_b_stride=(1, spatial_stride, spatial_stride),
        conv_b_padding=(0, 1, 1),
    )


def insert_after(stage: ResStage, location: Sequence[int], make_block: Callable) -> None:
    """Inserts a new ``make_block()`` after each residual block index in ``location``."""
    blocks = []
    for index, res_block in enumerate(stage.res_blocks):
        blocks.append(res_block)
        if index in location:
            blocks.append(make_block())
    stage.res_blocks = nn.ModuleList(blocks)


def create_stem(width: int, temporal_kernel: int, temporal_stride: int, pool_kernel: Triple,
                pool_stride: Triple, pool_padding: Triple) -> nn.Module:
    """Conv ``temporal_kernel x 7 x 7`` (stride ``temporal_stride x 2 x 2``, padded ``k // 2``),
    BN, ReLU, max-pool: ``B x 3 x T x H x W`` -> ``B x width x T' x H' x W'``."""
    kernel = (temporal_kernel, 7, 7)
    return create_res_basic_stem(
        in_channels=3,
        out_channels=width,
        conv_kernel_size=kernel,
        conv_stride=(temporal_stride, 2, 2),
        conv_padding=tuple(k // 2 for k in kernel),
        pool=nn.MaxPool3d,
        pool_kernel_size=tuple(pool_kernel),
        pool_stride=tuple(pool_stride),
        pool_padding=tuple(pool_padding),
    )


def create_resnet3d(
    depth: int,
    num_classes: int,
    stem_width: int = 64,
    dropout_rate: float = 0.5,
    nonlocal_location: Sequence[Sequence[int]] = ((), (), (), ()),
    make_nonlocal: Callable = None,
    stem_temporal_kernel: int = 5,
    stem_temporal_stride: int = 1,
    stem_pool_kernel: Triple = (1, 3, 3),
    stem_pool_stride: Triple = (1, 2, 2),
    stem_pool_padding: Triple = (0, 1, 1),
    pool1: Triple = (2, 1, 1),
) -> Net:
    """Builds the inflated 3D ResNet; see the module docstring for its layout.

    Args:
        depth: 18, 34, 50 or 101.
        num_classes: outputs of the linear head.
        stem_width: stem output channels (64 in ResNet).
        dropout_rate: dropout before the head.
        nonlocal_location: per stage res2..res5, residual block indices after
            which ``make_nonlocal(channels)`` is inserted.
        make_nonlocal: builds a non-local block for a stage of ``channels``.
        stem_temporal_kernel, stem_temporal_stride: the stem convolution's temporal size
            and stride.
        stem_pool_kernel, stem_pool_stride, stem_pool_padding: the stem max-pool, (T, H, W).
        pool1: kernel and stride (T, H, W) of the max-pool after res2.
    Returns:
        a pytorchvideo ``Net``: ``B x 3 x T x H x W`` -> ``B x num_classes``.
    """
    bottleneck = uses_bottleneck(depth)
    expansion = 4 if bottleneck else 1
    blocks = [create_stem(stem_width, stem_temporal_kernel, stem_temporal_stride,
                          stem_pool_kernel, stem_pool_stride, stem_pool_padding)]
    dim_in = stem_width
    for index, stage_depth in enumerate(STAGE_DEPTHS[depth]):
        dim_inner = stem_width * 2**index
        dim_out = dim_inner * expansion
        stage = create_stage(
            stage_depth, dim_in, dim_inner, dim_out, 1 if index == 0 else 2,
            I3D_TEMPORAL_KERNELS[index], bottleneck,
        )
        if nonlocal_location[index]:
            insert_after(stage, nonlocal_location[index], partial(make_nonlocal, dim_out))
        blocks.append(stage)
        if index == 0:
            blocks.append(nn.MaxPool3d(tuple(pool1), stride=tuple(pool1)))
        dim_in = dim_out
    blocks.append(
        create_res_basic_head(
            in_features=dim_in,
            out_features=num_classes,
            pool=nn.AdaptiveAvgPool3d,
            output_size=(1, 1, 1),
            dropout_rate=dropout_rate,
        )
    )
    return Net(blocks=nn.ModuleList(blocks))
