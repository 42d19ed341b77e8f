"""A config's model with its trained weights: what the Recognizer predicts with and
``tools/export.py`` exports (one loading path for both)."""

from typing import NamedTuple, Optional, Union

import torch
import torch.nn as nn
from fvcore.common.config import CfgNode

from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.models import build_model


class Trained(NamedTuple):
    model: nn.Module  # eval mode, on the device asked for
    checkpoint: str  # the file its weights came from
    saved: dict  # that file's contents (class names, epoch, ...)


def load_trained(cfg: CfgNode, checkpoint: Optional[str], device: Union[str, torch.device]) -> Trained:
    """The model of ``cfg`` with the weights of ``checkpoint`` (default: the config's test
    checkpoint, :func:`~cgnl_video.engine.checkpoint.load_test_checkpoint`), in eval mode."""
    path, loaded = (checkpoint, None) if checkpoint else ckpt.load_test_checkpoint(cfg)
    model = build_model(cfg)
    saved = ckpt.load_for_test(model, path, loaded)
    ckpt.check_test_compatible(cfg, saved, path)
    return Trained(model.to(device).eval(), path, saved)
