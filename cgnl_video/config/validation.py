"""One validation pass over a merged config, before any work: each bad setting is one line.

Two passes, both raising :class:`ConfigError` with ``FILE: KEY=value: expected ...``:

* :func:`validate_values` (run by :func:`~cgnl_video.config.loading.load_config`): pure value
  checks. ``FILE`` is where the key was set (a YAML file of the ``_BASE_`` chain, or the
  command line). Single-key rules are the table :data:`VALUE_RULES` (add a
  :func:`at_least` / :func:`one_of` / :class:`Rule` line there); checks over several keys are
  the functions of :data:`CROSS_CHECKS`, each owned by the module that uses the keys.
* :func:`validate_inputs` (run by the training and test engines before anything is written):
  the files a run reads. ``FILE`` is the file at fault.
"""

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from fvcore.common.config import CfgNode

from cgnl_video.config.loading import ConfigError
from cgnl_video.datasets.batching import micro_batch_size
from cgnl_video.datasets.decoders import BACKENDS
from cgnl_video.datasets.lists import CLASSES_FILE, ListFormatError, list_file, read_classes, read_video_list
from cgnl_video.datasets.transforms import check_jitter_scales
from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.engine.meters import ENSEMBLE_METHODS
from cgnl_video.engine.optim import check_solver_config
from cgnl_video.engine.precision import check_precision_config
from cgnl_video.models.build import check_model_config
from cgnl_video.models.pretrained import load_2d_state_dict

DEFAULTS = "defaults"  # the origin of a key no file or override set


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
    one_of("DATA.DECODING_BACKEND", BACKENDS),
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
    at_least("TRAIN.LOG_PERIOD", 1),
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
    at_least("RNG_SEED", 0),
]


def check_jitter_config(cfg: CfgNode) -> None:
    """``DATA.TRAIN_JITTER_SCALES`` against ``DATA.TRAIN_CROP_SIZE`` (the rule of the transform)."""
    try:
        check_jitter_scales(cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE)
    except ValueError as err:
        raise ConfigError(str(err), key="DATA.TRAIN_JITTER_SCALES") from None


# Checks over several keys: each raises ConfigError(message naming the key, key=KEY).
CROSS_CHECKS: List[Callable[[CfgNode], None]] = [
    check_model_config, check_solver_config, check_precision_config, check_jitter_config,
]


def _value(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _origin(key: str, origins: Mapping[str, str]) -> str:
    match = re.match(r"[A-Z0-9_.]+", key or "")
    return origins.get(match.group() if match else key, DEFAULTS)


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


def _input_error(path: str, key: str, value, reason: str) -> ConfigError:
    return ConfigError(f"{path}: {key}={value!r}: {reason}", key=key)


def _splits(cfg: CfgNode, tool: str) -> List[str]:
    """The list files ``tool`` ("train" or "test") reads."""
    if tool == "test":
        return ["test"]
    return ["train", "val"] if cfg.TRAIN.EVAL_PERIOD > 0 else ["train"]


def check_num_classes(cfg: CfgNode) -> list:
    """Returns the class names; ConfigError when ``MODEL.NUM_CLASSES`` disagrees with classes.txt."""
    path = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, CLASSES_FILE)
    if not os.path.isfile(path):
        raise _input_error(path, "DATA.PATH_TO_DATA_DIR", cfg.DATA.PATH_TO_DATA_DIR, f"no {CLASSES_FILE} in it")
    try:
        names = read_classes(path)
    except ListFormatError as err:
        raise _input_error(f"{err.path}:{err.line}", "DATA.PATH_TO_DATA_DIR",
                           cfg.DATA.PATH_TO_DATA_DIR, err.reason) from None
    if len(names) != cfg.MODEL.NUM_CLASSES:
        raise _input_error(path, "MODEL.NUM_CLASSES", cfg.MODEL.NUM_CLASSES,
                           f"expected {len(names)} ({CLASSES_FILE} names {len(names)} classes)")
    return names


def _list_size(cfg: CfgNode, split: str, num_classes: int) -> int:
    """Videos in ``split``'s list; ConfigError when it is missing, unreadable or empty."""
    path, data_dir = list_file(cfg.DATA.PATH_TO_DATA_DIR, split), cfg.DATA.PATH_TO_DATA_DIR
    if not os.path.isfile(path):
        raise _input_error(path, "DATA.PATH_TO_DATA_DIR", data_dir, f"no {split} list in it")
    try:
        records = read_video_list(path, separator=cfg.DATA.PATH_LABEL_SEPARATOR,
                                  num_classes=num_classes, warn_duplicates=False)
    except ListFormatError as err:
        raise _input_error(f"{err.path}:{err.line}", "DATA.PATH_TO_DATA_DIR", data_dir, err.reason) from None
    if not records:
        raise _input_error(path, "DATA.PATH_TO_DATA_DIR", data_dir, "no videos listed")
    return len(records)


def _check_train_batch(cfg: CfgNode, num_videos: int) -> None:
    """A training epoch (last partial batch dropped) needs one full global batch, and the global
    batch must split evenly over the processes (torchrun's WORLD_SIZE) and accumulation steps."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        micro_batch_size(cfg.TRAIN.BATCH_SIZE, processes, cfg.TRAIN.ACCUMULATION_STEPS)
    except ValueError as err:
        raise ConfigError(str(err), key="TRAIN.BATCH_SIZE") from None
    if num_videos < cfg.TRAIN.BATCH_SIZE:
        path = list_file(cfg.DATA.PATH_TO_DATA_DIR, "train")
        raise _input_error(path, "TRAIN.BATCH_SIZE", cfg.TRAIN.BATCH_SIZE,
                           f"expected <= {num_videos}, the training videos listed (one global batch)")


def _check_init_files(cfg: CfgNode) -> None:
    """The files a fresh (not resumed) training run initialises from must load."""
    if cfg.TRAIN.AUTO_RESUME and ckpt.list_checkpoints(cfg.OUTPUT_DIR):
        return  # resuming: they are not read
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        _check_loads(ckpt.load_file, "TRAIN.CHECKPOINT_FILE_PATH", cfg.TRAIN.CHECKPOINT_FILE_PATH)
    elif cfg.TRAIN.CHECKPOINT_INFLATE:
        _check_loads(load_2d_state_dict, "TRAIN.CHECKPOINT_INFLATE", cfg.TRAIN.CHECKPOINT_INFLATE)


def _check_loads(load: Callable[[str], Any], key: str, path: str) -> None:
    """``load(path)`` must succeed; its error (which starts with the path) becomes a ConfigError."""
    try:
        load(path)
    except (OSError, ValueError, ckpt.CheckpointError) as err:
        raise _input_error(path, key, path, str(err).removeprefix(f"{path}: ")) from None


def validate_inputs(cfg: CfgNode, tool: str) -> None:
    """Checks what ``tool`` ("train" or "test") will read, before it writes anything: classes.txt
    against ``MODEL.NUM_CLASSES``, the list files (present, UTF-8, well formed, not empty),
    the training batch against the training set, the checkpoint files named by the config."""
    num_classes = len(check_num_classes(cfg))
    sizes: Dict[str, int] = {split: _list_size(cfg, split, num_classes) for split in _splits(cfg, tool)}
    if tool == "train":
        _check_train_batch(cfg, sizes["train"])
        _check_init_files(cfg)
    elif cfg.TEST.CHECKPOINT_FILE_PATH and not os.path.isfile(cfg.TEST.CHECKPOINT_FILE_PATH):
        raise _input_error(cfg.TEST.CHECKPOINT_FILE_PATH, "TEST.CHECKPOINT_FILE_PATH",
                           cfg.TEST.CHECKPOINT_FILE_PATH, "file not found")
