"""Checkpoints: atomic saves, ``weights_only`` loads, resume with fallback, head-skipping init.

A checkpoint is a dict of tensors and plain Python values (so that
``torch.load(..., weights_only=True)`` reads it): ``model``, ``optimizer``,
``scheduler``, ``scaler``, ``epoch`` (epochs completed), ``rng`` and ``cfg`` (YAML text).
Files are ``OUTPUT_DIR/checkpoints/checkpoint_epoch_NNNNN.pyth``. Each file also holds
``checksum``: the sha256 of its other entries (tensor bytes, dtypes, shapes and values),
checked on load, so flipped bytes are reported like a truncated file.
"""

import hashlib
import io
import logging
import os
import random
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import yaml
from fvcore.common.config import CfgNode

from cgnl_video.config.loading import flatten
from cgnl_video.models.resnet3d import HEAD_PREFIX
from cgnl_video.utils.io import atomic_write_bytes

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^checkpoint_epoch_(\d{5})\.pyth$")
CHECKSUM_KEY = "checksum"


class CheckpointError(RuntimeError):
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


def load_file(path: str) -> Dict:
    """Reads a checkpoint with ``weights_only=True`` and checks its checksum (files written
    before checksums have none); a damaged file raises CheckpointError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: checkpoint not found") from err
    except Exception as err:  # truncated zip, pickle errors, foreign objects
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a cgnl-video checkpoint (no 'model' entry)")
    stored = state.pop(CHECKSUM_KEY, None)
    if stored is not None and stored != state_checksum(state):
        raise CheckpointError(f"{path}: damaged checkpoint (checksum mismatch: its bytes changed after saving)")
    return state


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


def newest_loadable(output_dir: str, report: bool = True) -> Tuple[Optional[str], Optional[Dict]]:
    """The newest checkpoint that loads, skipping (and, with ``report``, logging) damaged ones;
    never deletes."""
    for path in reversed(list_checkpoints(output_dir)):
        try:
            return path, load_file(path)
        except CheckpointError as err:
            if report:
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


# Config keys (sections or single keys) a resumed run must share with its checkpoint: what
# shapes the network and its input clips. The others (SOLVER.*, paths, logging) may change.
RESUME_KEYS = ("MODEL", "RESNET", "NONLOCAL", "CGNL", "DATA.NUM_FRAMES", "DATA.SAMPLING_RATE")


def _resume_key(name: str) -> bool:
    return any(name == key or name.startswith(key + ".") for key in RESUME_KEYS)


def check_resume_compatible(cfg: CfgNode, checkpoint_cfg_yaml: Optional[str], source: str) -> None:
    """Raises CheckpointError naming every RESUME_KEYS key whose value differs between ``cfg``
    and the checkpoint's saved config (YAML text; None, for a checkpoint without one, passes)."""
    if not checkpoint_cfg_yaml:
        return
    saved = flatten(yaml.safe_load(checkpoint_cfg_yaml) or {})
    current = flatten(cfg)
    differing = [f"{key}={saved[key]!r} in the checkpoint but {current[key]!r} now"
                 for key in sorted(current) if _resume_key(key) and key in saved
                 and _normalised(saved[key]) != _normalised(current[key])]
    if differing:
        raise CheckpointError(
            f"{source}: made with another config, not resumed: {'; '.join(differing)} "
            f"(use another OUTPUT_DIR, or the same settings)")


def _normalised(value):
    """Lists and tuples alike (YAML gives lists, configs may hold tuples)."""
    return [_normalised(v) for v in value] if isinstance(value, (list, tuple)) else value


def check_resume_target(cfg: CfgNode) -> None:
    """With ``TRAIN.AUTO_RESUME``, checks that the checkpoint a run would resume from was made
    with a compatible config (:func:`check_resume_compatible`); call it before writing."""
    if cfg.TRAIN.AUTO_RESUME:
        path, state = newest_loadable(cfg.OUTPUT_DIR, report=False)  # resuming reports them
        if state is not None:
            check_resume_compatible(cfg, state.get("cfg"), path)
