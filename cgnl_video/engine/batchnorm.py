"""BatchNorm options of training: SyncBatchNorm (``BN.NORM_TYPE``) and precise statistics.

``BN.USE_PRECISE_STATS`` (PySlowFast): before each validation and after the last epoch,
every BatchNorm's running mean / variance is recomputed with fvcore's
``update_bn_stats`` over ``BN.NUM_BATCHES_PRECISE`` training batches, with the
weights fixed: the population statistics of those batches instead of a running
average taken while the weights moved. Under torchrun the statistics are then
averaged over processes.
"""

import logging

import torch
import torch.nn as nn
from fvcore.common.config import CfgNode
from fvcore.nn.precise_bn import get_bn_modules, update_bn_stats

from cgnl_video.engine import distributed as du
from cgnl_video.engine.normalize import InputNormalizer
from cgnl_video.engine.precision import autocast_context

logger = logging.getLogger(__name__)


def convert_norm(cfg: CfgNode, model: nn.Module) -> nn.Module:
    """``model`` with ``BN.NORM_TYPE`` norms: SyncBatchNorm converted. The ``BN`` keys were checked
    before the run started: their values by ``config/validation.py``, SyncBatchNorm's need of
    several GPU processes by ``engine/preflight.py``."""
    if cfg.BN.NORM_TYPE == "sync_batchnorm":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def update_precise_bn(cfg: CfgNode, model: nn.Module, loader, normalize: InputNormalizer) -> None:
    """Recomputes BatchNorm statistics over training batches; a no-op without ``BN.USE_PRECISE_STATS``.

    Args:
        model: the model (unwrapped: every process runs the same number of batches and the
            statistics are averaged here); left in train mode.
        loader: the training loader, batches with ``video`` = uint8 ``B x 3 x T x H x W``.
        normalize: the device-side input step (``engine/normalize.py``).
    """
    if not cfg.BN.USE_PRECISE_STATS:
        return
    num_batches = min(cfg.BN.NUM_BATCHES_PRECISE, len(loader))
    model.train()
    layers = get_bn_modules(model)
    # fvcore assigns new tensors; the statistics go back into the original buffers, which
    # DistributedDataParallel holds on to (it broadcasts them from rank 0 at each forward).
    buffers = [(bn.running_mean, bn.running_var) for bn in layers]
    clips = (normalize(batch["video"]) for batch in loader)
    with torch.no_grad(), autocast_context(cfg, normalize.device):
        update_bn_stats(model, clips, num_batches)
        for bn, (mean, var) in zip(layers, buffers):
            mean.copy_(du.all_reduce_sum(bn.running_mean) / du.world_size())
            var.copy_(du.all_reduce_sum(bn.running_var) / du.world_size())
            bn.running_mean, bn.running_var = mean, var
    logger.info("precise BN: statistics of %d BatchNorm layers recomputed over %d batches",
                len(layers), num_batches)
