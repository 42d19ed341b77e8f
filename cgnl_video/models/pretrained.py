"""Where initial weights come from: torchvision ImageNet ResNets, checkpoint files.

Sources a config names:

- ``TRAIN.CHECKPOINT_INFLATE``: ``torchvision:resnet{18,34,50,101}`` (torchvision's
  ``IMAGENET1K_V1`` weights, downloaded once into ``torch.hub.get_dir()/checkpoints``)
  or the path of a torchvision ResNet state dict file; inflated to 3D by
  :mod:`cgnl_video.models.inflate`.
- ``TRAIN.CHECKPOINT_FILE_PATH``: a checkpoint of ours (``model`` entry), a
  pytorchvideo / PySlowFast ``.pyth`` (``model_state`` entry, e.g. the model zoo's
  Kinetics-400 ``I3D_8x8_R50.pyth``) or a plain state dict. A checkpoint of the plain
  backbone (no non-local blocks) loads into a model with non-local blocks: residual
  blocks are matched by their index among residual blocks, and the non-local blocks
  keep their identity initialisation. The non-local reference's and PySlowFast's Caffe2
  pickles (``.pkl``, ``{"blobs": ...}``) are mapped by :mod:`cgnl_video.models.caffe2`.

Every file is read with ``torch.load(weights_only=True)``, or the Caffe2 reader's restricted
unpickler; one that needs unsafe unpickling (Python objects other than tensors, arrays and
plain values) is refused.
"""

import logging
import os
import pickle
import re
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torchvision
from fvcore.common.config import CfgNode
from pytorchvideo.models.resnet import ResBlock

from cgnl_video.errors import UserError
from cgnl_video.models.caffe2 import Caffe2Blobs, caffe2_state_dict
from cgnl_video.models.resnet3d import HEAD_PREFIX, STAGE_INDICES

logger = logging.getLogger(__name__)

TORCHVISION_PREFIX = "torchvision:"
TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
# Entries holding a model's state dict: ours, pytorchvideo / PySlowFast, common wrappers.
MODEL_KEYS = ("model", "model_state", "state_dict")

StateDict = Dict[str, torch.Tensor]


class PretrainedError(UserError, ValueError):
    """Weights that cannot be obtained or used; the message names the file, URL or key."""


def parse_source(source: str) -> Tuple[str, str]:
    """``"torchvision:resnet50"`` -> ``("torchvision", "resnet50")``; a path -> ``("file", path)``."""
    if not source.startswith(TORCHVISION_PREFIX):
        return "file", source
    name = source[len(TORCHVISION_PREFIX):]
    if name not in TORCHVISION_RESNETS:
        raise PretrainedError(
            f"{source}: unknown torchvision model; expected torchvision:NAME with NAME one of "
            f"{', '.join(TORCHVISION_RESNETS)}"
        )
    return "torchvision", name


def describe_load_error(path: str, err: Exception) -> str:
    """One line saying why ``torch.load(path, weights_only=True)`` failed."""
    if isinstance(err, pickle.UnpicklingError):
        return (
            f"{path}: refused, it needs unsafe unpickling (it holds Python objects other than "
            f"tensors and plain values, which could run arbitrary code; only weights_only files "
            f"are read). Re-save just its state dict from a trusted environment."
        )
    return f"{path}: unreadable ({type(err).__name__}: {err})"


def model_entry(state) -> Optional[StateDict]:
    """The state dict inside a loaded checkpoint (under a ``MODEL_KEYS`` entry), else None."""
    if isinstance(state, dict):
        for key in MODEL_KEYS:
            if isinstance(state.get(key), dict):
                return state[key]
    return None


def load_weights_file(path: str, kind: str = "weights file"):
    """What ``torch.load(path, weights_only=True)`` reads, on the CPU: the one reader of weight
    files (checkpoints of ours too: ``engine/checkpoint.py``'s ``load_file`` checks their format).

    Raises PretrainedError naming the file (a ``kind`` not found, unsafe or unreadable).
    """
    if not os.path.isfile(path):
        raise PretrainedError(f"{path}: {kind} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unsafe pickles, truncated or foreign files
        raise PretrainedError(describe_load_error(path, err)) from err


def read_state_dict(path: str) -> StateDict:
    """The model state dict in file ``path``: ours, a ``.pyth`` or a plain state dict.

    Raises PretrainedError naming the file when it is missing, unsafe or not a state dict.
    """
    state = load_weights_file(path)
    weights = model_entry(state)
    if weights is None and isinstance(state, dict) and all(torch.is_tensor(v) for v in state.values()):
        weights = state
    if not weights:
        kind = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise PretrainedError(
            f"{path}: no state dict (expected tensors, or one under {', '.join(MODEL_KEYS)}; got {kind})"
        )
    return weights


def torchvision_weights(name: str):
    """torchvision's ImageNet ``IMAGENET1K_V1`` weights enum of ResNet ``name``."""
    return torchvision.models.get_weight(f"ResNet{name[len('resnet'):]}_Weights.IMAGENET1K_V1")


def torchvision_cache_path(name: str) -> str:
    """Where torch.hub keeps (and looks for) the weights file of ResNet ``name``."""
    filename = os.path.basename(torchvision_weights(name).url)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def torchvision_state_dict(name: str) -> StateDict:
    """The ImageNet state dict of torchvision ResNet ``name``, downloaded once into the hub cache.

    Offline (download failed): PretrainedError naming the URL and the path to put the file at.
    """
    weights, path = torchvision_weights(name), torchvision_cache_path(name)
    if os.path.isfile(path):
        return read_state_dict(path)
    try:
        return weights.get_state_dict(progress=True, weights_only=True)
    except Exception as err:
        raise PretrainedError(
            f"{TORCHVISION_PREFIX}{name}: could not download {weights.url} "
            f"({type(err).__name__}: {err}); fetch that file and put it at {path}"
        ) from err


def load_2d_state_dict(source: str) -> StateDict:
    """A torchvision ResNet state dict from ``torchvision:NAME`` or a file path."""
    kind, name = parse_source(source)
    return torchvision_state_dict(name) if kind == "torchvision" else read_state_dict(name)


# ---------------------------------------------------------------------------
# A plain-backbone checkpoint into a model with non-local blocks
# ---------------------------------------------------------------------------


def residual_positions(model: nn.Module) -> Dict[int, List[int]]:
    """Per ``model.blocks`` stage index, the positions in ``res_blocks`` of its residual blocks."""
    return {
        stage: [i for i, block in enumerate(model.blocks[stage].res_blocks) if isinstance(block, ResBlock)]
        for stage in STAGE_INDICES
    }


_RES_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.res_blocks\.(\d+)\.(.*)$")


def _source_block_counts(state: StateDict) -> Dict[int, int]:
    """Per stage index, 1 + the largest ``res_blocks`` index among the keys of ``state``."""
    counts: Dict[int, int] = {}
    for key in state:
        match = _RES_BLOCK_KEY.match(key)
        if match:
            stage, index = int(match[1]), int(match[2])
            counts[stage] = max(counts.get(stage, 0), index + 1)
    return counts


def adapt_to_model(model: nn.Module, state: StateDict, source: str) -> StateDict:
    """``state`` in ``model``'s key layout, for :func:`cgnl_video.engine.checkpoint.load_matching_weights`.

    Caffe2 blobs are mapped for fine-tuning (:func:`~cgnl_video.models.caffe2.caffe2_state_dict`).
    When ``state`` is a plain backbone (its stages hold exactly the model's residual
    blocks, no non-local ones) and ``model`` has non-local blocks, residual block ``i``
    of a stage is renamed to its position in the model, and the non-local blocks'
    entries are the model's own (identity initialisation, logged). Otherwise ``state``
    is returned unchanged.
    """
    if isinstance(state, Caffe2Blobs):
        return caffe2_state_dict(model, state, source, fine_tuning=True)
    positions = residual_positions(model)
    plain = {stage: len(p) for stage, p in positions.items()}
    has_nonlocal = any(len(model.blocks[s].res_blocks) != n for s, n in plain.items())
    if not has_nonlocal or _source_block_counts(state) != plain:
        return state
    adapted = {}
    for key, value in state.items():
        match = _RES_BLOCK_KEY.match(key)
        if match and int(match[1]) in positions:
            stage = int(match[1])
            key = f"blocks.{stage}.res_blocks.{positions[stage][int(match[2])]}.{match[3]}"
        adapted[key] = value
    own = model.state_dict()
    kept = sorted(set(own) - set(adapted))
    adapted.update({key: own[key] for key in kept if not key.startswith(HEAD_PREFIX)})
    logger.info("%s: a backbone without non-local blocks; these keep their initialisation: %s",
                source, _module_names(kept))
    return adapted


def state_for_test(model: nn.Module, state, source: str) -> StateDict:
    """``state`` for testing ``model``: Caffe2 blobs mapped strictly (every tensor from its
    blob, the head included), any other state as it is."""
    if isinstance(state, Caffe2Blobs):
        return caffe2_state_dict(model, state, source, fine_tuning=False)
    return state


def _module_names(keys: List[str]) -> str:
    """``blocks.4.res_blocks.5.theta.weight`` ... -> ``blocks.4.res_blocks.5`` (once each)."""
    names = dict.fromkeys(".".join(key.split(".")[:4]) for key in keys)
    return ", ".join(names)


# ---------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------


def scratch_warning(cfg: CfgNode) -> Optional[str]:
    """A warning when training starts from random weights although the config does not say so."""
    if cfg.TRAIN.CHECKPOINT_FILE_PATH or cfg.TRAIN.CHECKPOINT_INFLATE or cfg.TRAIN.FROM_SCRATCH:
        return None
    return (
        "training from scratch: neither TRAIN.CHECKPOINT_FILE_PATH nor TRAIN.CHECKPOINT_INFLATE "
        "is set (e.g. TRAIN.CHECKPOINT_INFLATE torchvision:resnet50); set TRAIN.FROM_SCRATCH True "
        "if random initialisation is intended"
    )
