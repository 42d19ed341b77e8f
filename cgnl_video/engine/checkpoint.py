"""Checkpoints: atomic saves, ``weights_only`` loads, resume with fallback, head-skipping init.

A checkpoint is a dict of tensors and plain Python values (so that
``torch.load(..., weights_only=True)`` reads it): ``model``, ``optimizer``,
``scheduler``, ``scaler``, ``epoch`` (epochs completed), ``rng`` and ``cfg`` (YAML text).
Files are ``OUTPUT_DIR/checkpoints/checkpoint_epoch_NNNNN.pyth``.
"""

import logging
import os
import random
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from cgnl_video.models.pretrained import MODEL_KEYS, describe_load_error, model_entry
from cgnl_video.models.resnet3d import HEAD_PREFIX
from cgnl_video.utils.io import atomic_output

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^checkpoint_epoch_(\d{5})\.pyth$")


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


def atomic_save(obj, path: str) -> None:
    """``torch.save`` through a temp file in the same folder, then ``os.replace``."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())


def load_file(path: str) -> Dict:
    """Reads a checkpoint with ``weights_only=True``; a damaged file raises CheckpointError.

    The model's state dict is under ``model`` in the returned dict, also for
    pytorchvideo / PySlowFast files (``model_state``).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: checkpoint not found") from err
    except Exception as err:  # truncated zip, pickle errors, foreign objects
        raise CheckpointError(describe_load_error(path, err)) from err
    model = model_entry(state)  # ours: 'model'; pytorchvideo / PySlowFast .pyth: 'model_state'
    if model is None:
        raise CheckpointError(f"{path}: not a checkpoint (no {' / '.join(MODEL_KEYS)} entry)")
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
    """The newest checkpoint that loads, skipping (and reporting) damaged ones; never deletes."""
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
