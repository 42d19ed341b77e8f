"""Before a run writes anything: the files it will read, read once and checked (one line per
fault), and returned for the run to use.

:func:`validate_inputs` (called by the training and test engines before ``setup_run``):
classes.txt against ``MODEL.NUM_CLASSES``, the list files (present, UTF-8, well formed, not
empty), the global training batch against the training set and its split over processes
(torchrun's ``WORLD_SIZE``), SyncBatchNorm against the processes and GPUs, the checkpoint
files named by the config (loaded). Messages read ``FILE: KEY=value: reason``
(:class:`~cgnl_video.errors.ConfigError`); ``FILE`` is the input at fault, or, for the rules
on the processes, the config file that set the key (``config/validation.py``'s ``key_error``).
"""

import os
from typing import Callable, Dict, List, NamedTuple, Optional, TypeVar

import torch
from fvcore.common.config import CfgNode

from cgnl_video.config.validation import key_error
from cgnl_video.data_prep.list_makers.locations import make_lists_command
from cgnl_video.datasets.batching import micro_batch_size
from cgnl_video.datasets.lists import (
    CLASSES_FILE,
    ListFormatError,
    VideoRecord,
    list_file,
    read_classes,
    read_video_list,
)
from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.engine.run_lock import check_not_in_use
from cgnl_video.errors import ConfigError
from cgnl_video.models.pretrained import PretrainedError

T = TypeVar("T")


class Inputs(NamedTuple):
    """What a run reads, read once: the class names, the records of each list it uses (by
    split), and the checkpoint it starts from (training: the ``TRAIN.CHECKPOINT_FILE_PATH`` /
    ``CHECKPOINT_INFLATE`` :class:`~cgnl_video.engine.checkpoint.Start`, None when resuming or
    at random; testing: ``Start("test", path, checkpoint)``)."""

    class_names: List[str]
    records: Dict[str, List[VideoRecord]]
    start: Optional[ckpt.Start]


def _input_error(path: str, key: str, value, reason: str) -> ConfigError:
    return ConfigError(f"{path}: {key}={value!r}: {reason}", key=key)


def _splits(cfg: CfgNode, tool: str) -> List[str]:
    """The list files ``tool`` ("train" or "test") reads."""
    if tool == "test":
        return ["test"]
    return ["train", "val"] if cfg.TRAIN.EVAL_PERIOD > 0 else ["train"]


def _read_class_names(cfg: CfgNode) -> List[str]:
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


def _read_list(cfg: CfgNode, split: str, num_classes: int) -> List[VideoRecord]:
    """The records of ``split``'s list; ConfigError when it is missing, unreadable or empty."""
    path, data_dir = list_file(cfg.DATA.PATH_TO_DATA_DIR, split), cfg.DATA.PATH_TO_DATA_DIR
    if not os.path.isfile(path):
        raise _input_error(path, "DATA.PATH_TO_DATA_DIR", data_dir, f"no {split} list in it")
    try:
        records = read_video_list(path, prefix=cfg.DATA.PATH_PREFIX, separator=cfg.DATA.PATH_LABEL_SEPARATOR,
                                  num_classes=num_classes)
    except ListFormatError as err:
        raise _input_error(f"{err.path}:{err.line}", "DATA.PATH_TO_DATA_DIR", data_dir, err.reason) from None
    if not records:
        raise _input_error(path, "DATA.PATH_TO_DATA_DIR", data_dir, "no videos listed")
    return records


def _processes() -> int:
    """The processes of the run: torchrun's ``WORLD_SIZE`` (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _check_train_batch(cfg: CfgNode, num_videos: int) -> None:
    """A training epoch (last partial batch dropped) needs one full global batch, and the global
    batch must split evenly over the processes and accumulation steps."""
    try:
        micro_batch_size(cfg.TRAIN.BATCH_SIZE, _processes(), cfg.TRAIN.ACCUMULATION_STEPS)
    except ConfigError as err:
        raise key_error(cfg, err.key, str(err)) from None
    if num_videos < cfg.TRAIN.BATCH_SIZE:
        path = list_file(cfg.DATA.PATH_TO_DATA_DIR, "train")
        raise _input_error(path, "TRAIN.BATCH_SIZE", cfg.TRAIN.BATCH_SIZE,
                           f"expected <= {num_videos}, the training videos listed (one global batch)")


def _check_sync_batchnorm(cfg: CfgNode) -> None:
    """``BN.NORM_TYPE=sync_batchnorm`` needs several GPU processes (torchrun)."""
    if cfg.BN.NORM_TYPE != "sync_batchnorm" or (torch.cuda.is_available() and _processes() > 1):
        return
    where = "on CPU" if not torch.cuda.is_available() else "without torchrun (a single process)"
    raise key_error(cfg, "BN.NORM_TYPE", f"BN.NORM_TYPE='sync_batchnorm': needs several GPU processes "
                                         f"under torchrun, but runs {where}; use BN.NORM_TYPE batchnorm")


def _loaded(load: Callable[[], T], path: str, key: str, value) -> T:
    """``load()`` of ``path`` (named by ``key=value``); its error (which starts with ``path``)
    becomes a ConfigError naming the file and the key."""
    try:
        return load()
    except (OSError, PretrainedError, ckpt.CheckpointError) as err:
        raise _input_error(path, key, value, str(err).removeprefix(f"{path}: ")) from None


def _check_lists_made(cfg: CfgNode, tool: str) -> None:
    """A ``data_lists/`` folder without the files ``tool`` reads: one line naming the
    ``make_lists`` command that writes them."""
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    names = [os.path.basename(list_file(data_dir, split)) for split in _splits(cfg, tool)] + [CLASSES_FILE]
    missing = [name for name in names if not os.path.isfile(os.path.join(data_dir, name))]
    command = make_lists_command(data_dir, cfg.DATA.PATH_PREFIX) if missing else None
    if command:
        what = "folder absent" if not os.path.isdir(data_dir) else f"no {missing[0]}"
        raise _input_error(data_dir, "DATA.PATH_TO_DATA_DIR", data_dir, f"lists not made ({what}); run: {command}")


def _train_start(cfg: CfgNode) -> Optional[ckpt.Start]:
    """The file a fresh (not resumed) training run initialises from, loaded; None when it
    resumes (that checkpoint is loaded under the run lock: ``checkpoint.resume_point``) or
    starts at random."""
    if cfg.TRAIN.AUTO_RESUME and ckpt.list_checkpoints(cfg.OUTPUT_DIR):
        return None
    train = cfg.TRAIN
    key = "TRAIN.CHECKPOINT_FILE_PATH" if train.CHECKPOINT_FILE_PATH else "TRAIN.CHECKPOINT_INFLATE"
    source = train.CHECKPOINT_FILE_PATH or train.CHECKPOINT_INFLATE
    return _loaded(lambda: ckpt.initial_point(cfg), source, key, source)


def _test_start(cfg: CfgNode) -> ckpt.Start:
    """The checkpoint a test uses (``checkpoint.load_test_checkpoint``), loaded: the file
    ``TEST.CHECKPOINT_FILE_PATH`` names (its errors name the key), else the newest loadable one of
    ``OUTPUT_DIR`` (damaged ones skipped; none left is a CheckpointError naming the folder)."""
    path = cfg.TEST.CHECKPOINT_FILE_PATH
    if path:
        return ckpt.Start("test", path, _loaded(lambda: ckpt.load_file(path), path, "TEST.CHECKPOINT_FILE_PATH", path))
    return ckpt.Start("test", *ckpt.load_test_checkpoint(cfg))


def validate_inputs(cfg: CfgNode, tool: str) -> Inputs:
    """Reads and checks what ``tool`` ("train" or "test") will read, before it writes anything:
    classes.txt against ``MODEL.NUM_CLASSES``, the list files (present, UTF-8, well formed, not
    empty), the training batch against the training set and the processes, SyncBatchNorm, the
    checkpoint files named by the config. Returns what it read. First, on the main process, that
    no other run holds ``OUTPUT_DIR`` (whose checkpoints a test reads here, before locking)."""
    if os.environ.get("RANK", "0") == "0":  # the process that will lock it (the group is not joined yet)
        check_not_in_use(cfg.OUTPUT_DIR)
    _check_lists_made(cfg, tool)
    class_names = _read_class_names(cfg)
    records = {split: _read_list(cfg, split, len(class_names)) for split in _splits(cfg, tool)}
    if tool == "train":
        _check_train_batch(cfg, len(records["train"]))
        _check_sync_batchnorm(cfg)
        return Inputs(class_names, records, _train_start(cfg))
    return Inputs(class_names, records, _test_start(cfg))
