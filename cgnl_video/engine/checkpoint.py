"""The checkpoint format and every decision about it: what is saved and restored, resume or
initialise, which checkpoint a test uses.

A checkpoint is a dict of tensors and plain Python values (so that
``torch.load(..., weights_only=True)`` reads it): the :class:`TrainState` entries ``model``,
``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (epochs completed), plus ``rng`` (one RNG
state per process, in rank order), ``world_size``, ``cfg`` (YAML text) and ``classes``
(names). Files are ``OUTPUT_DIR/checkpoints/checkpoint_epoch_NNNNN.pyth``. Each file also
holds ``checksum``: the sha256 of its other entries (tensor bytes, dtypes, shapes and
values), checked on load, so flipped bytes are reported like a truncated file.

Starting a run: the newest loadable checkpoint in ``OUTPUT_DIR`` when ``TRAIN.AUTO_RESUME``
(made with a compatible config: :func:`resume_point`, loaded under the run lock before the run
writes); else ``TRAIN.CHECKPOINT_FILE_PATH``, continued (its epoch, schedule position,
optimiser and RNG states) or, with ``TRAIN.CHECKPOINT_EPOCH_RESET``, only its weights (a
classifier of another shape skipped); else the inflation of ``TRAIN.CHECKPOINT_INFLATE``
(:func:`initial_point`, loaded by the engine's preflight). Each is loaded once, as a
:class:`Start` that :func:`initialise` applies.
"""

import hashlib
import io
import logging
import os
import random
import re
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import yaml
from fvcore.common.config import CfgNode

from cgnl_video.config.loading import flatten
from cgnl_video.errors import UserError
from cgnl_video.models import load_inflated_weights
from cgnl_video.models.caffe2 import read_caffe2
from cgnl_video.models.pretrained import (
    MODEL_KEYS,
    PretrainedError,
    adapt_to_model,
    load_2d_state_dict,
    load_weights_file,
    model_entry,
    scratch_warning,
    state_for_test,
)
from cgnl_video.models.resnet3d import HEAD_PREFIX
from cgnl_video.utils.io import atomic_write_bytes

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^checkpoint_epoch_(\d{5})\.pyth$")
CHECKSUM_KEY = "checksum"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used; the message names the file."""


def checkpoint_dir(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def checkpoint_path(output_dir: str, epoch: int) -> str:
    """Path of the checkpoint written after ``epoch`` epochs (1-based)."""
    return os.path.join(checkpoint_dir(output_dir), f"checkpoint_epoch_{epoch:05d}.pyth")


def list_checkpoints(output_dir: str) -> List[str]:
    """Checkpoint paths in ``output_dir``, oldest first."""
    folder = checkpoint_dir(output_dir)
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if _NAME.match(n)]


def continuation(output_dir: str) -> str:
    """How an interrupted training of ``output_dir`` continues: the checkpoint it resumes from."""
    paths = list_checkpoints(output_dir)
    if not paths:
        return "no checkpoint was written yet: training starts from the beginning"
    return f"training resumes from {paths[-1]}, the newest checkpoint (an older one if it is damaged)"


def _hash_value(digest, value) -> None:
    """Feeds ``value`` (nested dicts / lists / tuples of tensors and plain values) to ``digest``."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            _hash_value(digest, key)
            _hash_value(digest, item)
    elif isinstance(value, (list, tuple)):  # a round trip may turn one into the other
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _hash_value(digest, item)
    else:
        digest.update(f"V{value!r}".encode())


def state_checksum(state: Dict) -> str:
    """``sha256:HEX`` of every entry of ``state`` but the checksum itself."""
    digest = hashlib.sha256()
    _hash_value(digest, {k: v for k, v in state.items() if k != CHECKSUM_KEY})
    return f"sha256:{digest.hexdigest()}"


def atomic_save(obj: Dict, path: str) -> None:
    """Saves ``obj`` with its checksum: serialised in memory, then written to a temp file in
    the same folder and renamed (a full disk raises DiskFullError; ``path`` stays intact)."""
    buffer = io.BytesIO()
    torch.save({**obj, CHECKSUM_KEY: state_checksum(obj)}, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def load_file(path: str, checkpoint_type: str = "pytorch") -> Dict:
    """Reads a checkpoint (``models/pretrained.py``'s ``load_weights_file``: ``weights_only``)
    and checks its checksum (files written before checksums, and other code bases' files,
    have none); a missing or damaged file raises CheckpointError.

    The model's state dict is under ``model`` in the returned dict, also for
    pytorchvideo / PySlowFast files (``model_state``). A Caffe2 pickle (recognised, or
    required by ``checkpoint_type`` ``caffe2``) gives its blobs there, mapped onto a model by
    :func:`adapt_to_model` / :func:`state_for_test`.
    """
    blobs = read_caffe2(path, required=checkpoint_type == "caffe2")
    if blobs is not None:
        return {"model": blobs}
    try:
        state = load_weights_file(path, kind="checkpoint")
    except PretrainedError as err:  # missing, truncated, unsafe pickles, foreign objects
        raise CheckpointError(str(err)) from err
    model = model_entry(state)  # ours: 'model'; pytorchvideo / PySlowFast .pyth: 'model_state'
    if model is None:
        raise CheckpointError(f"{path}: not a checkpoint (no {' / '.join(MODEL_KEYS)} entry)")
    stored = state.pop(CHECKSUM_KEY, None)
    if stored is not None and stored != state_checksum(state):
        raise CheckpointError(f"{path}: damaged checkpoint (checksum mismatch: its bytes changed after saving)")
    return {**state, "model": model}


def rng_state() -> Dict:
    """Python, NumPy and torch RNG states as weights_only-loadable values."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Dict) -> None:
    """Restores what :func:`rng_state` returned."""
    random.setstate(_as_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    """``random.setstate`` needs tuples where a round trip may have given lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper, or the model itself."""
    return model.module if hasattr(model, "module") else model


def newest_loadable(output_dir: str) -> Tuple[Optional[str], Optional[Dict]]:
    """The newest checkpoint that loads, skipping (and logging) damaged ones; never deletes."""
    for path in reversed(list_checkpoints(output_dir)):
        try:
            return path, load_file(path)
        except CheckpointError as err:
            logger.warning("skipping damaged checkpoint: %s", err)
    return None, None


def load_matching_weights(model: nn.Module, state: Dict[str, torch.Tensor], source: str) -> List[str]:
    """Loads the entries of ``state`` whose names and shapes match ``model``.

    For fine-tuning: the classifier head of another dataset is skipped. Returns the
    skipped keys (logged); raises CheckpointError when any other key is missing,
    unexpected or of another shape (another architecture).
    """
    own = unwrap(model).state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(
        f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape) if k in own else 'absent'}"
        for k, v in state.items() if k not in matching
    )
    unmatched = sorted(k for k in set(own) ^ set(state) | set(state) - set(matching)
                       if not k.startswith(HEAD_PREFIX))
    if unmatched:
        raise CheckpointError(
            f"{source}: does not fit the model; missing, unexpected or mismatched: {unmatched[:8]}"
        )
    unwrap(model).load_state_dict(matching, strict=False)
    if skipped:
        logger.info("%s: skipped keys: %s", source, "; ".join(skipped))
    return skipped


@dataclass
class TrainState:
    """What a training run is: the model (unwrapped), its optimiser, schedule and GradScaler,
    and the number of epochs completed. ``state_dict`` / ``load_state_dict`` as torch modules."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # IterationSchedule: state_dict / load_state_dict
    scaler: torch.amp.GradScaler
    epoch: int = 0

    def state_dict(self) -> Dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: Dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = state["epoch"]


def save_checkpoint(state: TrainState, cfg: CfgNode, rng_states: List[Dict], classes: List[str]) -> str:
    """Writes ``checkpoint_epoch_{state.epoch:05d}.pyth`` atomically (rank 0 only).

    ``rng_states``: every process's :func:`rng_state`, in rank order; ``classes``: the class
    names (so that inference needs no list files). A file already there (a damaged checkpoint
    that resuming skipped) is kept as ``.prev``.
    """
    path = checkpoint_path(cfg.OUTPUT_DIR, state.epoch)
    bad = next((k for k, v in state.model.state_dict().items() if v.is_floating_point() and not v.isfinite().all()), None)
    if bad is not None:  # never written: the previous checkpoint stays the newest (issue 14)
        raise CheckpointError(f"{path}: not written, the weight {bad} is not finite (check SOLVER.BASE_LR and the loss)")
    if os.path.lexists(path):  # a link is moved, never followed
        os.replace(path, path + ".prev")
    extra = {"rng": rng_states, "world_size": len(rng_states), "cfg": cfg.dump(), "classes": list(classes)}
    atomic_save({**state.state_dict(), **extra}, path)
    return path


def _restore(state: TrainState, checkpoint: Dict, rank: int, source: str) -> None:
    """Loads a whole run from ``checkpoint`` into ``state``, and this rank's RNG state."""
    try:
        state.load_state_dict(checkpoint)
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{source}: cannot continue this run from it ({type(err).__name__}: {err})") from err
    rng = checkpoint.get("rng")
    rng = [rng] if isinstance(rng, dict) else rng or []  # one dict: written by a single process
    if rank < len(rng):
        set_rng_state(rng[rank])
    else:
        logger.warning("%s: no RNG state saved for rank %d (saved by %d processes); keeping this "
                       "process's seed", source, rank, len(rng))


class Start(NamedTuple):
    """What a training run starts from, loaded once: ``how`` (``resume``, ``file`` or ``inflate``),
    ``source`` (the file, or ``torchvision:NAME``) and ``loaded`` (a checkpoint of
    :func:`load_file`; a 2D state dict for ``inflate``)."""

    how: str
    source: str
    loaded: Dict


def resume_point(cfg: CfgNode) -> Optional[Start]:
    """With ``TRAIN.AUTO_RESUME``, the newest loadable checkpoint of ``OUTPUT_DIR`` (damaged ones
    skipped and logged), made with a compatible config (:func:`check_resume_compatible`, else
    CheckpointError); None when there is none. The main process calls it under the run lock,
    before anything is written."""
    if not cfg.TRAIN.AUTO_RESUME:
        return None
    path, checkpoint = newest_loadable(cfg.OUTPUT_DIR)
    if checkpoint is None:
        return None
    check_resume_compatible(cfg, checkpoint.get("cfg"), path)
    return Start("resume", path, checkpoint)


def initial_point(cfg: CfgNode) -> Optional[Start]:
    """``TRAIN.CHECKPOINT_FILE_PATH`` (:func:`load_file`) or else ``TRAIN.CHECKPOINT_INFLATE``
    (``load_2d_state_dict``), loaded; None when neither is set (random initialisation)."""
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        path = cfg.TRAIN.CHECKPOINT_FILE_PATH
        return Start("file", path, load_file(path, cfg.TRAIN.CHECKPOINT_TYPE))
    if cfg.TRAIN.CHECKPOINT_INFLATE:
        return Start("inflate", cfg.TRAIN.CHECKPOINT_INFLATE, load_2d_state_dict(cfg.TRAIN.CHECKPOINT_INFLATE))
    return None


def initialise(state: TrainState, cfg: CfgNode, start: Optional[Start], rank: int = 0) -> str:
    """Resumes or initialises ``state`` from ``start`` (random weights when None), as the
    module docstring says; returns what was done."""
    if start is None:
        warning = scratch_warning(cfg)
        if warning:
            logger.warning(warning)
        return "initialised at random"
    if start.how == "inflate":
        unused = load_inflated_weights(state.model, start.source, start.loaded)
        return f"inflated {start.source}; unused 2D keys: {unused}"
    if start.how == "file" and cfg.TRAIN.CHECKPOINT_EPOCH_RESET:
        weights = adapt_to_model(state.model, start.loaded["model"], start.source)
        load_matching_weights(state.model, weights, start.source)
        return f"initialised from the weights of {start.source} (epoch reset to 0)"
    _restore(state, start.loaded, rank, start.source)
    if start.how == "resume":
        return f"resumed from {start.source} (epoch {state.epoch})"
    return f"continuing the run of {start.source} from epoch {state.epoch}"


def load_test_checkpoint(cfg: CfgNode) -> Tuple[str, Dict]:
    """The checkpoint to test and its :func:`load_file` contents, loaded once:
    ``TEST.CHECKPOINT_FILE_PATH``, or the newest loadable checkpoint in ``OUTPUT_DIR`` (a
    damaged newer one skipped and logged, as resuming does)."""
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        return cfg.TEST.CHECKPOINT_FILE_PATH, load_file(cfg.TEST.CHECKPOINT_FILE_PATH)
    if os.path.exists(cfg.OUTPUT_DIR) and not os.path.isdir(cfg.OUTPUT_DIR):
        raise CheckpointError(f"OUTPUT_DIR={cfg.OUTPUT_DIR!r}: is a file, not a run folder, and "
                              f"TEST.CHECKPOINT_FILE_PATH is empty")
    path, checkpoint = newest_loadable(cfg.OUTPUT_DIR)
    if path is None and list_checkpoints(cfg.OUTPUT_DIR):
        raise CheckpointError(f"every checkpoint in {checkpoint_dir(cfg.OUTPUT_DIR)} is damaged")
    if path is None:
        raise CheckpointError(
            f"no checkpoint in {checkpoint_dir(cfg.OUTPUT_DIR)} and TEST.CHECKPOINT_FILE_PATH is empty"
        )
    return path, checkpoint


def load_for_test(model: nn.Module, path: str, checkpoint: Optional[Dict] = None) -> Dict:
    """Loads every weight of ``path`` (``checkpoint``: its :func:`load_file` content, when
    already loaded) into ``model`` and returns the checkpoint; a shape mismatch names both shapes."""
    checkpoint = load_file(path) if checkpoint is None else checkpoint
    state = state_for_test(model, checkpoint["model"], path)
    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(own[key].shape)} in the model (MODEL.NUM_CLASSES or architecture differ)"
            )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return checkpoint


# Config keys (sections or single keys) that make the network: a test must share them with its
# checkpoint (MODEL.DROPOUT_RATE and MODEL.FC_INIT_STD only act in training).
ARCHITECTURE_KEYS = ("MODEL.NUM_CLASSES", "RESNET", "NONLOCAL", "CGNL")
# What a resumed run must share with its checkpoint: what shapes the network and its input
# clips. The others (SOLVER.*, TRAIN.BATCH_SIZE, paths, logging) may change.
RESUME_KEYS = ("MODEL", "RESNET", "NONLOCAL", "CGNL", "DATA.NUM_FRAMES", "DATA.SAMPLING_RATE")


def saved_config(checkpoint: Dict) -> Optional[str]:
    """The config (YAML text) saved in a checkpoint of ours (:func:`save_checkpoint`, which also
    stores ``classes``); None for other files (PySlowFast's ``cfg`` has a schema of its own)."""
    return checkpoint.get("cfg") if "classes" in checkpoint else None


def _differing(cfg: CfgNode, saved_yaml: Optional[str], keys: Sequence[str]) -> List[str]:
    """``KEY=saved in the checkpoint but current now`` for each key under ``keys`` (sections or
    single keys) whose value differs between ``cfg`` and a checkpoint's saved config (YAML
    text; none without one)."""
    if not saved_yaml:
        return []
    saved, current = flatten(yaml.safe_load(saved_yaml) or {}), flatten(cfg)

    def chosen(name: str) -> bool:
        return any(name == key or name.startswith(key + ".") for key in keys)

    return [f"{key}={saved[key]!r} in the checkpoint but {current[key]!r} now"
            for key in sorted(current) if chosen(key) and key in saved
            and _normalised(saved[key]) != _normalised(current[key])]


def check_resume_compatible(cfg: CfgNode, checkpoint_cfg_yaml: Optional[str], source: str) -> None:
    """Raises CheckpointError naming every RESUME_KEYS key whose value differs between ``cfg``
    and the checkpoint's saved config (YAML text; None, for a checkpoint without one, passes)."""
    differing = _differing(cfg, checkpoint_cfg_yaml, RESUME_KEYS)
    if differing:
        raise CheckpointError(
            f"{source}: made with another config, not resumed: {'; '.join(differing)} "
            f"(use another OUTPUT_DIR, or the same settings)")


def check_test_compatible(cfg: CfgNode, checkpoint: Dict, source: str) -> None:
    """Raises CheckpointError naming every ARCHITECTURE_KEYS key whose value differs between
    ``cfg`` and the checkpoint's saved config: its weights may load into another network (a
    kernel or pooling without weights of its own) and then test something else."""
    differing = _differing(cfg, saved_config(checkpoint), ARCHITECTURE_KEYS)
    if differing:
        raise CheckpointError(
            f"{source}: trained as another network than the config builds, not tested: {'; '.join(differing)} "
            f"(test with the config it was trained with, or the same settings)")


def _normalised(value):
    """Lists and tuples alike (YAML gives lists, configs may hold tuples)."""
    return [_normalised(v) for v in value] if isinstance(value, (list, tuple)) else value
