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

# --- Stem and temporal pooling (issue 12). Defaults: PySlowFast I3D 8x8 (= pytorchvideo
# i3d_r50). The non-local reference's 32-frame I3D (video-nonlocal-net resnet_video_org.py):
# STEM_TEMPORAL_STRIDE 2, STEM_POOL_KERNEL [2, 3, 3], STEM_POOL_STRIDE [2, 2, 2],
# STEM_POOL_PADDING [0, 0, 0], POOL1 [2, 1, 1] (configs/MiniKinetics/I3D_32x2_*). ---
# Temporal kernel size of the stem convolution (k x 7 x 7, padded k // 2); odd.
_C.RESNET.STEM_TEMPORAL_KERNEL = 5
# Temporal stride of the stem convolution (its spatial stride is 2).
_C.RESNET.STEM_TEMPORAL_STRIDE = 1
# Stem max-pool kernel [T, H, W] (the reference's "pool1").
_C.RESNET.STEM_POOL_KERNEL = [1, 3, 3]
# Stem max-pool stride [T, H, W].
_C.RESNET.STEM_POOL_STRIDE = [1, 2, 2]
# Stem max-pool zero padding [T, H, W], each at most half the kernel.
_C.RESNET.STEM_POOL_PADDING = [0, 1, 1]
# Max-pool after res2, kernel = stride [T, H, W] (PySlowFast's _POOL1; the reference's "pool2").
_C.RESNET.POOL1 = [2, 1, 1]

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
# NonLocalBlock max-pool subsampling, as [T, H, W] (the paper's [1, 2, 2]): phi and g
# are computed from the max-pooled block input (PySlowFast); empty for none.
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
# Folder holding train.csv, val.csv, test.csv (lines "relative/path LABEL") and classes.txt.
_C.DATA.PATH_TO_DATA_DIR = ""
# Folder the list files' relative video paths are joined to.
_C.DATA.PATH_PREFIX = ""
# Separator between a list line's path and its label (the label follows the last one).
_C.DATA.PATH_LABEL_SEPARATOR = " "
# Video decoding backend: "decord" or "pyav".
_C.DATA.DECODING_BACKEND = "decord"
# Temporal stride tau between the frames of a clip (in video frames; in frames of a
# DATA.TARGET_FPS video when that is > 0).
_C.DATA.SAMPLING_RATE = 8
# Frame rate the sampling stride refers to (PySlowFast): a clip takes a frame every
# SAMPLING_RATE / TARGET_FPS seconds whatever the video's rate (24, 25, 30 fps ...);
# 0 = every SAMPLING_RATE decoded frames.
_C.DATA.TARGET_FPS = 0.0
# Training scale jitter: the short side is resized to a random size in [min, max].
_C.DATA.TRAIN_JITTER_SCALES = [256, 320]
# Random horizontal flips in training. Turn off for classes that a mirror image changes
# (left vs right motion, clockwise vs anticlockwise rotation), as for Something-Something.
_C.DATA.RANDOM_FLIP = True
# Per-channel (RGB) mean subtracted from frames scaled to [0, 1]: match the weights a config
# starts from (Kinetics / pytorchvideo checkpoints: these; ImageNet: 0.485, 0.456, 0.406).
_C.DATA.MEAN = [0.45, 0.45, 0.45]
# Per-channel (RGB) standard deviation frames are divided by, after the mean (ImageNet:
# 0.229, 0.224, 0.225).
_C.DATA.STD = [0.225, 0.225, 0.225]
# Training: undecodable videos replaced by random others, per item, before giving up.
_C.DATA.MAX_DECODE_RETRIES = 10
# Training stops when more than this fraction of the training list has failed to decode
# (the failures are in OUTPUT_DIR/bad_videos.tsv).
_C.DATA.MAX_BAD_FRACTION = 0.05
# Seconds (integer) one decoding call (open or read) may take; the decoding then runs in a child process
# that is killed past it, or that may crash, costing one video (0 = decode in-process, unguarded).
_C.DATA.DECODE_TIMEOUT = 60
# Decoding threads per DataLoader worker (decord num_threads, PyAV thread_count).
_C.DATA.DECODING_THREADS = 1
# SQLite file keeping each video's probe verdict (what decodes it right, its frame count), so
# that a file is probed once, not at every open; a changed file is probed again. Shared by
# runs and processes; one that cannot be written is skipped. "" = probe at every open.
# (cgnl_video/decoding/probe_cache.py)
_C.DATA.PROBE_CACHE = "~/.cache/cgnl_video/probes.sqlite3"

# ---------------------------------------------------------------------------
# Data loader
# ---------------------------------------------------------------------------
_C.DATA_LOADER = CfgNode()
# Number of DataLoader worker processes (0 = load in the main process).
_C.DATA_LOADER.NUM_WORKERS = 8
# Copy batches to pinned memory (only when a CUDA device is present).
_C.DATA_LOADER.PIN_MEMORY = True

# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------
_C.TRAIN = CfgNode()
# Clips per optimiser step over all processes and accumulation steps (the global batch,
# as in PySlowFast); each process loads BATCH_SIZE / (world size x ACCUMULATION_STEPS).
_C.TRAIN.BATCH_SIZE = 64
# Micro-batches whose gradients are accumulated before each optimiser step (a large
# global batch on few or small GPUs); same model as one step on the whole batch.
_C.TRAIN.ACCUMULATION_STEPS = 1
# Validate (single view) every this many epochs, and after the last; 0 = never.
_C.TRAIN.EVAL_PERIOD = 1
# Save a checkpoint every this many epochs, and after the last.
_C.TRAIN.CHECKPOINT_PERIOD = 1
# Continue from the newest loadable checkpoint in OUTPUT_DIR/checkpoints.
_C.TRAIN.AUTO_RESUME = True
# Initialise from this checkpoint: ours, or a pytorchvideo / PySlowFast .pyth ("model_state",
# e.g. the Kinetics-400 I3D_8x8_R50.pyth); heads of another shape are skipped.
_C.TRAIN.CHECKPOINT_FILE_PATH = ""
# Format of the CHECKPOINT_FILE_PATH files: "pytorch" or "caffe2" (PySlowFast's key: the
# non-local reference's / PySlowFast model zoo's .pkl, weights only); a .pkl holding a dict
# with "blobs" is recognised as Caffe2 either way.
_C.TRAIN.CHECKPOINT_TYPE = "pytorch"
# With CHECKPOINT_FILE_PATH: True starts at epoch 0 with a new optimiser (fine-tuning);
# False continues that run (its epoch, schedule position and optimiser state).
_C.TRAIN.CHECKPOINT_EPOCH_RESET = True
# Initialise the backbone from 2D ImageNet weights (inflated): "torchvision:resnet50" (or
# resnet18/34/101; downloaded once into the torch hub cache) or a torchvision state dict file.
_C.TRAIN.CHECKPOINT_INFLATE = ""
# Random initialisation is intended: no warning when neither checkpoint key above is set.
_C.TRAIN.FROM_SCRATCH = False
# Autocast precision: "none", "bf16" or "fp16" (fp16 on GPU only; fp32 on CPU).
_C.TRAIN.MIXED_PRECISION = "none"
# Write a train_iter line to stats.jsonl every this many iterations.
_C.TRAIN.LOG_PERIOD = 10

# ---------------------------------------------------------------------------
# Testing (multi-view)
# ---------------------------------------------------------------------------
_C.TEST = CfgNode()
# Videos per test batch, and clips per validation batch, over all processes (each process
# loads BATCH_SIZE / world size, at least 1); a test video carries all of its views;
# 1 per process with FULLY_CONVOLUTIONAL.
_C.TEST.BATCH_SIZE = 8
# K: clips per test video, spread uniformly over it.
_C.TEST.NUM_ENSEMBLE_VIEWS = 10
# S: crops per test clip along the long side (1 = centre, 3 = both ends and centre).
_C.TEST.NUM_SPATIAL_CROPS = 3
# Test on the whole frame resized to TEST_CROP_SIZE short side (no crop, S = 1).
_C.TEST.FULLY_CONVOLUTIONAL = False
# Checkpoint to test; empty = the newest in OUTPUT_DIR/checkpoints.
_C.TEST.CHECKPOINT_FILE_PATH = ""
# Most views of one video sent through the model at once.
_C.TEST.MAX_VIEWS_PER_BATCH = 10
# How a video's view scores (softmax) are combined: "sum" or "max".
_C.TEST.ENSEMBLE_METHOD = "sum"

# ---------------------------------------------------------------------------
# Optimiser and learning-rate schedule (SGD)
# ---------------------------------------------------------------------------
_C.SOLVER = CfgNode()
# Peak learning rate (after warmup).
_C.SOLVER.BASE_LR = 0.1
# Schedule after warmup: "cosine" or "steps".
_C.SOLVER.LR_POLICY = "cosine"
# "steps": epochs at which the rate becomes BASE_LR x the matching LRS entry.
_C.SOLVER.STEPS = []
# "steps": relative rates, one per STEPS entry.
_C.SOLVER.LRS = []
# "cosine": rate reached at MAX_EPOCH.
_C.SOLVER.COSINE_END_LR = 0.0
# Number of training epochs.
_C.SOLVER.MAX_EPOCH = 100
# SGD momentum.
_C.SOLVER.MOMENTUM = 0.9
# Nesterov momentum.
_C.SOLVER.NESTEROV = True
# L2 weight decay.
_C.SOLVER.WEIGHT_DECAY = 1e-4
# No weight decay on 1-D parameters (norm weights and biases).
_C.SOLVER.ZERO_WD_1D_PARAM = False
# Linear warmup length in epochs (may be fractional).
_C.SOLVER.WARMUP_EPOCHS = 0.0
# Learning rate at the start of warmup.
_C.SOLVER.WARMUP_START_LR = 0.01
# Label smoothing of the cross-entropy loss (0 = none).
_C.SOLVER.LABEL_SMOOTHING = 0.0
# Clip the gradient L2 norm to this value; 0 = no clipping.
_C.SOLVER.CLIP_GRAD_L2NORM = 0.0

# ---------------------------------------------------------------------------
# BatchNorm
# ---------------------------------------------------------------------------
_C.BN = CfgNode()
# Freeze BatchNorm running statistics during training (small-batch fine-tuning).
_C.BN.FREEZE = False
# "batchnorm" or "sync_batchnorm" (statistics over all GPUs; torchrun on GPU only).
_C.BN.NORM_TYPE = "batchnorm"
# Recompute BatchNorm statistics over training batches before each validation and at the end.
_C.BN.USE_PRECISE_STATS = False
# Training batches used by BN.USE_PRECISE_STATS (at most one epoch's).
_C.BN.NUM_BATCHES_PRECISE = 200

# ---------------------------------------------------------------------------
# Misc
# ---------------------------------------------------------------------------
# Folder for every file a run writes (checkpoints, logs, results).
_C.OUTPUT_DIR = "./output"
# Seed of every random number generator (data order, augmentation, workers).
_C.RNG_SEED = 1


def get_cfg() -> CfgNode:
    """Returns a copy of the default config (safe to modify)."""
    return _C.clone()
