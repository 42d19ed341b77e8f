"""Scores of one video from its views: the test harness and the Recognizer share this.

``V x C x T x H x W`` uint8 views go through the model in chunks of at most
``TEST.MAX_VIEWS_PER_BATCH``; their softmax scores are combined by ``TEST.ENSEMBLE_METHOD``.
"""

import torch
import torch.nn as nn
from fvcore.common.config import CfgNode

from cgnl_video.engine.meters import aggregate_views
from cgnl_video.engine.normalize import InputNormalizer
from cgnl_video.engine.precision import autocast_context


@torch.no_grad()
def video_scores(model: nn.Module, views: torch.Tensor, cfg: CfgNode, normalize: InputNormalizer) -> torch.Tensor:
    """uint8 ``V x C x T x H x W`` views -> ``NUM_CLASSES`` aggregated softmax scores."""
    chunks = []
    for chunk in views.split(cfg.TEST.MAX_VIEWS_PER_BATCH):
        with autocast_context(cfg, normalize.device):
            logits = model(normalize(chunk))
        chunks.append(logits.float().softmax(dim=1).cpu())
    return aggregate_views(torch.cat(chunks), cfg.TEST.ENSEMBLE_METHOD)
