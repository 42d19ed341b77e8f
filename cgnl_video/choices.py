"""The allowed values of the config's enumerated keys, in one place that imports nothing:
validating a config (and answering ``--help``) loads no framework, and the lean decoding child
process loads no config machinery. The modules that use a key import its choices from here."""

# RESNET.DEPTH -> residual blocks of res2..res5.
STAGE_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# NONLOCAL.TYPE.
NONLOCAL_TYPES = ("cgnl", "nl")
# NONLOCAL.KERNEL (the NL block's pairwise function).
NL_KERNELS = ("embedded_gaussian", "dot")
# CGNL.KERNEL.
CGNL_KERNELS = ("dot", "gaussian", "embedded_gaussian")
# DATA.DECODING_BACKEND.
DECODING_BACKENDS = ("decord", "pyav")
# TEST.ENSEMBLE_METHOD: how a video's view scores are combined.
ENSEMBLE_METHODS = ("sum", "max")
# SOLVER.LR_POLICY.
LR_POLICIES = ("cosine", "steps")
# TRAIN.MIXED_PRECISION.
PRECISIONS = ("none", "bf16", "fp16")
# BN.NORM_TYPE.
NORM_TYPES = ("batchnorm", "sync_batchnorm")
# TRAIN.CHECKPOINT_TYPE (PySlowFast's values).
CHECKPOINT_TYPES = ("pytorch", "caffe2")
