"""Before a run writes anything: the files it will read, checked once (one line per fault).

:func:`validate_inputs` (called by the training and test engines before ``setup_run``):
classes.txt against ``MODEL.NUM_CLASSES``, the list files (present, UTF-8, well formed, not
empty), the global training batch against the training set and its split over processes and
accumulation steps, the checkpoint files named by the config. Messages read
``FILE: KEY=value: reason`` (:class:`~cgnl_video.errors.ConfigError`).
"""

import os
from typing import Any, Callable, Dict, List

from fvcore.common.config import CfgNode

from cgnl_video.errors import ConfigError
from cgnl_video.datasets.batching import micro_batch_size
from cgnl_video.datasets.lists import CLASSES_FILE, ListFormatError, list_file, read_classes, read_video_list
from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.models.pretrained import load_2d_state_dict


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
