"""One validation pass over a merged config, before any work: each bad setting is one line.

Two passes, both raising :class:`ConfigError` with ``FILE: KEY=value: expected ...``:

* :func:`validate_values` (run by :func:`~cgnl_video.config.loading.load_config`): pure value
  checks. ``FILE`` is where the key was set (a YAML file of the ``_BASE_`` chain, or the
  command line). Single-key rules are the table :data:`VALUE_RULES` (add a
  :func:`at_least` / :func:`one_of` / :class:`Rule` line there); checks over several keys are
  the functions of :data:`CROSS_CHECKS`, defined here and called again by the modules that
  use the keys. This module imports no framework (the allowed values are in
  :mod:`cgnl_video.choices`), so that a bad setting answers in a fraction of a second.
* :func:`cgnl_video.engine.preflight.validate_inputs` (run by the training and test engines
  before anything is written): the files a run reads (``FILE`` is the file at fault), and the
  rules that depend on the processes of the run (torchrun's world size, GPUs), named by
  :func:`key_error` like the value checks.
"""

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence

from fvcore.common.config import CfgNode

from cgnl_video.choices import (
    CGNL_KERNELS,
    CHECKPOINT_TYPES,
    DECODING_BACKENDS,
    ENSEMBLE_METHODS,
    LR_POLICIES,
    NL_KERNELS,
    NONLOCAL_TYPES,
    NORM_TYPES,
    PRECISIONS,
    STAGE_DEPTHS,
)
from cgnl_video.errors import ConfigError

DEFAULTS = "defaults"  # the origin of a key no file or override set
# Where load_config keeps the origins on the config (outside its keys, as yacs keeps its flags).
_ORIGINS = "__origins__"


@dataclass(frozen=True)
class Rule:
    """``key``'s value must satisfy ``ok``; ``expected`` says what in the message."""

    key: str
    ok: Callable[[Any], bool]
    expected: str


def at_least(key: str, low: float) -> Rule:
    return Rule(key, lambda value: value >= low, f">= {low}")


def in_range(key: str, low: float, high: float) -> Rule:
    """``low <= value < high``."""
    return Rule(key, lambda value: low <= value < high, f"in [{low}, {high})")


def one_of(key: str, choices: Sequence) -> Rule:
    return Rule(key, lambda value: value in choices, f"one of {tuple(choices)}")


def length(key: str, size: int, item_ok: Callable[[Any], bool] = lambda item: True,
           items: str = "values") -> Rule:
    return Rule(key, lambda value: len(value) == size and all(map(item_ok, value)), f"{size} {items}")


VALUE_RULES: List[Rule] = [
    at_least("MODEL.NUM_CLASSES", 1),
    in_range("MODEL.DROPOUT_RATE", 0, 1),
    at_least("RESNET.WIDTH_PER_GROUP", 1),
    at_least("CGNL.GROUPS", 1),
    at_least("DATA.NUM_FRAMES", 1),
    at_least("DATA.SAMPLING_RATE", 0),
    at_least("DATA.TRAIN_CROP_SIZE", 1),
    at_least("DATA.TEST_CROP_SIZE", 1),
    one_of("DATA.DECODING_BACKEND", DECODING_BACKENDS),
    Rule("DATA.PATH_LABEL_SEPARATOR", lambda value: len(value) > 0, "a non-empty string"),
    length("DATA.MEAN", 3, items="values (R, G, B)"),
    length("DATA.STD", 3, lambda item: item > 0, "values > 0 (R, G, B)"),
    at_least("DATA.MAX_DECODE_RETRIES", 0),
    in_range("DATA.MAX_BAD_FRACTION", 0, 1),
    at_least("DATA.TARGET_FPS", 0),
    at_least("DATA.DECODE_TIMEOUT", 0),
    at_least("DATA.DECODING_THREADS", 1),
    at_least("DATA_LOADER.NUM_WORKERS", 0),
    at_least("TRAIN.BATCH_SIZE", 1),
    at_least("TRAIN.ACCUMULATION_STEPS", 1),
    at_least("TRAIN.EVAL_PERIOD", 0),
    at_least("TRAIN.CHECKPOINT_PERIOD", 1),
    one_of("TRAIN.CHECKPOINT_TYPE", CHECKPOINT_TYPES),
    at_least("TRAIN.LOG_PERIOD", 1),
    one_of("TRAIN.MIXED_PRECISION", PRECISIONS),
    at_least("TEST.BATCH_SIZE", 1),
    at_least("TEST.NUM_ENSEMBLE_VIEWS", 1),
    at_least("TEST.NUM_SPATIAL_CROPS", 1),
    at_least("TEST.MAX_VIEWS_PER_BATCH", 1),
    one_of("TEST.ENSEMBLE_METHOD", ENSEMBLE_METHODS),
    at_least("SOLVER.MOMENTUM", 0),
    at_least("SOLVER.WEIGHT_DECAY", 0),
    at_least("SOLVER.WARMUP_EPOCHS", 0),
    in_range("SOLVER.LABEL_SMOOTHING", 0, 1),
    at_least("SOLVER.CLIP_GRAD_L2NORM", 0),
    one_of("BN.NORM_TYPE", NORM_TYPES),
    at_least("RNG_SEED", 0),
]

# --- Bounds and finiteness (issue 14): a value the run cannot use ends in one line. ---
MAX_NUM_FRAMES = 1024  # frames of one clip: far above any config (the reference: 32 / 128)
SEED_LIMIT = 2**32  # numpy's seeds are below it


def float_keys(cfg: CfgNode, prefix: str = "") -> List[str]:
    """Every key of ``cfg`` holding a float or a list of floats."""
    keys = []
    for name, value in cfg.items():
        key = prefix + name
        if isinstance(value, CfgNode):
            keys += float_keys(value, key + ".")
        elif isinstance(value, float) or (isinstance(value, (list, tuple)) and value
                                          and all(isinstance(v, float) for v in value)):
            keys.append(key)
    return keys


def _finite(value) -> bool:
    values = value if isinstance(value, (list, tuple)) else [value]
    return all(math.isfinite(v) for v in values)


def check_finite(cfg: CfgNode) -> None:
    """Every float setting (``SOLVER.BASE_LR``, ``DATA.MEAN`` ...) is a finite number."""
    for key in float_keys(cfg):
        value = _value(cfg, key)
        _require(_finite(value), key, value, "a finite number")


VALUE_RULES.extend([
    Rule("DATA.NUM_FRAMES", lambda value: value <= MAX_NUM_FRAMES, f"<= {MAX_NUM_FRAMES}"),
    Rule("RNG_SEED", lambda value: value < SEED_LIMIT, f"< 2**32 ({SEED_LIMIT})"),
    Rule("OUTPUT_DIR", lambda value: bool(value.strip()), "a folder name (not empty)"),
    Rule("NONLOCAL.POOL", lambda value: all(isinstance(v, int) and v >= 1 for v in value),
         "[] or 3 integers >= 1 [T, H, W]"),
])

# --- The stem and temporal pooling keys (RESNET.STEM_*, RESNET.POOL1; issue 12). ---
def _triple(key: str, low: int) -> Rule:
    return length(key, 3, lambda item: isinstance(item, int) and item >= low, f"integers >= {low} [T, H, W]")


VALUE_RULES.extend([
    Rule("RESNET.STEM_TEMPORAL_KERNEL", lambda value: value >= 1 and value % 2 == 1, "an odd number >= 1"),
    at_least("RESNET.STEM_TEMPORAL_STRIDE", 1),
    _triple("RESNET.STEM_POOL_KERNEL", 1),
    _triple("RESNET.STEM_POOL_STRIDE", 1),
    _triple("RESNET.STEM_POOL_PADDING", 0),
    _triple("RESNET.POOL1", 1),
])


def pooled_size(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Output length of a convolution / max-pool (floor mode); < 1 when the input is too short."""
    return (size + 2 * padding - kernel) // stride + 1 if size + 2 * padding >= kernel else 0


def temporal_sizes(resnet: CfgNode, num_frames: int) -> List[int]:
    """T after the stem conv, the stem pool (= res2) and pool1 (= res3..res5) for a clip of
    ``num_frames`` frames under the ``RESNET`` keys."""
    kernel = resnet.STEM_TEMPORAL_KERNEL
    conv = pooled_size(num_frames, kernel, resnet.STEM_TEMPORAL_STRIDE, kernel // 2)
    pool = pooled_size(conv, resnet.STEM_POOL_KERNEL[0], resnet.STEM_POOL_STRIDE[0],
                       resnet.STEM_POOL_PADDING[0])
    return [conv, pool, pooled_size(pool, resnet.POOL1[0], resnet.POOL1[0])]


def check_temporal_layout(cfg: CfgNode) -> None:
    """The stem pool's padding fits its kernel, and a ``DATA.NUM_FRAMES`` clip keeps T >= 1."""
    resnet = cfg.RESNET
    _require(all(2 * p <= k for p, k in zip(resnet.STEM_POOL_PADDING, resnet.STEM_POOL_KERNEL)),
             "RESNET.STEM_POOL_PADDING", resnet.STEM_POOL_PADDING,
             f"at most half of RESNET.STEM_POOL_KERNEL={resnet.STEM_POOL_KERNEL}")
    sizes = temporal_sizes(resnet, cfg.DATA.NUM_FRAMES)
    _require(min(sizes) >= 1, "DATA.NUM_FRAMES", cfg.DATA.NUM_FRAMES,
             f"enough frames for the stem and pools (T = {sizes} after the stem conv, stem pool, "
             f"pool1 with the RESNET.STEM_* / RESNET.POOL1 keys)")
    check_nonlocal_pool(cfg, sizes)


def check_nonlocal_pool(cfg: CfgNode, sizes: List[int]) -> None:
    """``NONLOCAL.POOL``'s T fits the clip length of every stage holding a non-local block
    (res2: T after the stem pool; res3..res5: after pool1), or the max-pool has no input."""
    pool = cfg.NONLOCAL.POOL
    lengths = [sizes[1]] + [sizes[2]] * 3
    short = [f"res{stage + 2}: T={lengths[stage]}" for stage, indices in enumerate(cfg.NONLOCAL.LOCATION)
             if indices and pool and pool[0] > lengths[stage]]
    _require(not short, "NONLOCAL.POOL", pool,
             f"a temporal size within the clip of each stage with a block ({', '.join(short)}; "
             f"DATA.NUM_FRAMES={cfg.DATA.NUM_FRAMES})")


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
    _require(cfg.NONLOCAL.KERNEL in NL_KERNELS, "NONLOCAL.KERNEL",
             cfg.NONLOCAL.KERNEL, f"one of {NL_KERNELS}")
    _require(len(cfg.NONLOCAL.POOL) in (0, 3), "NONLOCAL.POOL", cfg.NONLOCAL.POOL,
             "[] or [T, H, W]")
    _require(cfg.CGNL.KERNEL in CGNL_KERNELS, "CGNL.KERNEL", cfg.CGNL.KERNEL,
             f"one of {CGNL_KERNELS}")
    _require(cfg.CGNL.ORDER >= 0, "CGNL.ORDER", cfg.CGNL.ORDER, ">= 0")
    check_temporal_layout(cfg)
    if cfg.NONLOCAL.TYPE == "cgnl":
        check_cgnl_groups(cfg)


def stage_widths(depth: int, width_per_group: int) -> List[int]:
    """Output channels of res2..res5, as ``models/resnet3d.py``'s ``create_resnet3d`` builds
    them (``width x 2^stage``, x4 for the bottleneck blocks of depth >= 50); computed here
    without torch (tests/test_validation.py checks them against the built model)."""
    expansion = 4 if depth >= 50 else 1
    return [width_per_group * 2**stage * expansion for stage in range(4)]


def check_cgnl_groups(cfg: CfgNode) -> None:
    """``CGNL.GROUPS`` divides the inner width (channels // 2, ``models/build.py``) of every
    stage holding a CGNL block (it then divides the stage's channels too)."""
    widths = stage_widths(cfg.RESNET.DEPTH, cfg.RESNET.WIDTH_PER_GROUP)
    inner = {f"res{stage + 2}": widths[stage] // 2
             for stage, indices in enumerate(cfg.NONLOCAL.LOCATION) if indices}
    groups = cfg.CGNL.GROUPS
    _require(all(width % groups == 0 for width in inner.values()), "CGNL.GROUPS", groups,
             "a divisor of the inner width of every stage with a CGNL block ("
             + ", ".join(f"{name}: {width}" for name, width in inner.items()) + ")")


def check_solver_config(cfg: CfgNode) -> None:
    """Raises ConfigError naming the first unusable ``SOLVER`` key."""
    solver = cfg.SOLVER
    if solver.LR_POLICY not in LR_POLICIES:
        raise ConfigError(f"SOLVER.LR_POLICY={solver.LR_POLICY!r}: expected one of {LR_POLICIES}",
                          key="SOLVER.LR_POLICY")
    if solver.LR_POLICY == "steps" and len(solver.STEPS) != len(solver.LRS):
        raise ConfigError(f"SOLVER.STEPS={solver.STEPS} and SOLVER.LRS={solver.LRS}: need equal lengths",
                          key="SOLVER.STEPS")
    if solver.MAX_EPOCH < 1:
        raise ConfigError(f"SOLVER.MAX_EPOCH={solver.MAX_EPOCH}: expected >= 1", key="SOLVER.MAX_EPOCH")
    if solver.BASE_LR <= 0:
        raise ConfigError(f"SOLVER.BASE_LR={solver.BASE_LR}: expected > 0", key="SOLVER.BASE_LR")


def check_train_batch_config(cfg: CfgNode) -> None:
    """``TRAIN.BATCH_SIZE`` (the global batch) splits evenly over ``TRAIN.ACCUMULATION_STEPS``
    (the split over processes, which depends on torchrun, is checked by the engine's preflight)."""
    batch, steps = cfg.TRAIN.BATCH_SIZE, cfg.TRAIN.ACCUMULATION_STEPS
    _require(batch % steps == 0, "TRAIN.BATCH_SIZE", batch,
             f"a multiple of TRAIN.ACCUMULATION_STEPS {steps} (the global batch of one optimiser step)")


def check_bn_config(cfg: CfgNode) -> None:
    """``BN.USE_PRECISE_STATS`` against ``BN.FREEZE`` and ``BN.NUM_BATCHES_PRECISE``."""
    bn = cfg.BN
    if not bn.USE_PRECISE_STATS:
        return
    _require(not bn.FREEZE, "BN.FREEZE", bn.FREEZE,
             "False with BN.USE_PRECISE_STATS=True (frozen statistics are not recomputed)")
    _require(bn.NUM_BATCHES_PRECISE >= 1, "BN.NUM_BATCHES_PRECISE", bn.NUM_BATCHES_PRECISE,
             ">= 1 with BN.USE_PRECISE_STATS=True")


def check_jitter_scales(jitter_scales: Sequence[int], crop_size: int) -> None:
    """Raises ValueError unless the scales are ``[min, max]``, ascending, not below ``crop_size``."""
    if len(jitter_scales) != 2 or not crop_size <= jitter_scales[0] <= jitter_scales[1]:
        raise ValueError(
            f"DATA.TRAIN_JITTER_SCALES={list(jitter_scales)}: expected [min, max], ascending, "
            f"min >= DATA.TRAIN_CROP_SIZE={crop_size}"
        )


def check_jitter_config(cfg: CfgNode) -> None:
    """``DATA.TRAIN_JITTER_SCALES`` against ``DATA.TRAIN_CROP_SIZE`` (the rule of the transform)."""
    try:
        check_jitter_scales(cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE)
    except ValueError as err:
        raise ConfigError(str(err), key="DATA.TRAIN_JITTER_SCALES") from None


# Checks over several keys: each raises ConfigError(message naming the key, key=KEY).
def check_checkpoint_type(cfg: CfgNode) -> None:
    """A Caffe2 pickle holds weights only: no run to continue (``CHECKPOINT_EPOCH_RESET``)."""
    if cfg.TRAIN.CHECKPOINT_TYPE == "caffe2" and not cfg.TRAIN.CHECKPOINT_EPOCH_RESET:
        raise ConfigError("TRAIN.CHECKPOINT_EPOCH_RESET=False: expected True with "
                          "TRAIN.CHECKPOINT_TYPE=caffe2 (a Caffe2 pickle holds weights only, no run "
                          "to continue)", key="TRAIN.CHECKPOINT_EPOCH_RESET")


CROSS_CHECKS: List[Callable[[CfgNode], None]] = [
    check_finite, check_model_config, check_solver_config, check_train_batch_config, check_bn_config,
    check_jitter_config, check_checkpoint_type,
]


def _value(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _origin(key: str, origins: Mapping[str, str]) -> str:
    match = re.match(r"[A-Z0-9_.]+", key or "")
    return origins.get(match.group() if match else key, DEFAULTS)


def keep_origins(cfg: CfgNode, origins: Mapping[str, str]) -> None:
    """Remembers on ``cfg`` the file (or ``command line``) that set each key, for :func:`key_error`."""
    cfg.__dict__[_ORIGINS] = dict(origins)


def key_error(cfg: CfgNode, key: str, message: str) -> ConfigError:
    """``ORIGIN: message`` for a rule on ``key`` that needs more than the config (the processes
    of the run: ``engine/preflight.py``); ORIGIN as :func:`validate_values` names it."""
    return ConfigError(f"{_origin(key, cfg.__dict__.get(_ORIGINS, {}))}: {message}", key=key)


def validate_values(cfg: CfgNode, origins: Optional[Mapping[str, str]] = None) -> None:
    """Raises ConfigError ``ORIGIN: KEY=value: expected ...`` for the first unusable value.

    ``origins`` maps a key to the file (or ``command line``) that set it.
    """
    origins = origins or {}
    for rule in VALUE_RULES:
        value = _value(cfg, rule.key)
        if not rule.ok(value):
            raise ConfigError(f"{_origin(rule.key, origins)}: {rule.key}={value!r}: expected {rule.expected}",
                              key=rule.key)
    for check in CROSS_CHECKS:
        try:
            check(cfg)
        except ConfigError as err:
            raise ConfigError(f"{_origin(err.key, origins)}: {err}", key=err.key) from None
