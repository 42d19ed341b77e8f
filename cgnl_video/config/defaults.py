"""Every cgnl-video option, with its default and one comment each.

This file is the one documented source of configuration (PySlowFast style). YAML
files under ``configs/`` override these values (with ``_BASE_`` inheritance) and
command lines override those with trailing ``KEY VALUE`` pairs; see
:mod:`cgnl_video.config.loading`.
"""

from fvcore.common.config import CfgNode

_C = CfgNode()

# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------
_C.MODEL = CfgNode()
# Number of output classes of the linear head.
_C.MODEL.NUM_CLASSES = 400
# Dropout rate before the linear head.
_C.MODEL.DROPOUT_RATE = 0.5
# Standard deviation of the normal initialisation of the linear head.
_C.MODEL.FC_INIT_STD = 0.01

# ---------------------------------------------------------------------------
# Inflated 3D ResNet backbone (I3D temporal kernel pattern)
# ---------------------------------------------------------------------------
_C.RESNET = CfgNode()
# Depth: 18 or 34 (basic blocks), 50 or 101 (bottleneck blocks).
_C.RESNET.DEPTH = 50
# Width of the stem output; stage widths follow as in ResNet (64 -> 256 ... 2048
# for bottleneck nets, 64 -> 64 ... 512 for basic-block nets).
_C.RESNET.WIDTH_PER_GROUP = 64

# ---------------------------------------------------------------------------
# Non-local blocks (NL or CGNL), inserted between residual blocks
# ---------------------------------------------------------------------------
_C.NONLOCAL = CfgNode()
# Per stage (res2, res3, res4, res5), the indices of the residual blocks after
# which a non-local block is inserted. [[], [], [4], []] is the CGNL paper's
# "1 block" (res4, after its second-to-last residual block, for R50);
# [[], [1, 3], [1, 3, 5], []] is the non-local paper's "5 blocks".
_C.NONLOCAL.LOCATION = [[], [], [], []]
# Which block to insert: "cgnl" (CGNLBlock) or "nl" (NonLocalBlock).
_C.NONLOCAL.TYPE = "cgnl"
# NonLocalBlock pairwise function: "embedded_gaussian" (softmax) or "dot".
_C.NONLOCAL.KERNEL = "embedded_gaussian"
# NonLocalBlock max-pool subsampling of phi and g, as [T, H, W] (e.g. [1, 2, 2]);
# empty for none.
_C.NONLOCAL.POOL = []

# ---------------------------------------------------------------------------
# Compact generalized non-local block options (used when NONLOCAL.TYPE = cgnl)
# ---------------------------------------------------------------------------
_C.CGNL = CfgNode()
# Pairwise kernel: "dot", "gaussian" (Gaussian RBF) or "embedded_gaussian".
_C.CGNL.KERNEL = "dot"
# Number of channel groups; each group is one generalized non-local operation.
_C.CGNL.GROUPS = 8
# Taylor expansion order P of the gaussian / embedded_gaussian kernels.
_C.CGNL.ORDER = 3
# Divide the pairwise kernel by sqrt(channels per group x T x H x W).
_C.CGNL.USE_SCALE = False

# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------
_C.DATA = CfgNode()
# Number of frames T of an input clip.
_C.DATA.NUM_FRAMES = 8
# Spatial size of a training crop.
_C.DATA.TRAIN_CROP_SIZE = 224
# Spatial size of a test view.
_C.DATA.TEST_CROP_SIZE = 256

# ---------------------------------------------------------------------------
# Misc
# ---------------------------------------------------------------------------
# Folder for every file a run writes (checkpoints, logs, results).
_C.OUTPUT_DIR = "./output"


def get_cfg() -> CfgNode:
    """Returns a copy of the default config (safe to modify)."""
    return _C.clone()
