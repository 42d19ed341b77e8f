"""The training loop: epochs of SGD, periodic validation, checkpoints, logs and plots.

Flow of one run (``tools/train_net.py``): set up the process (torchrun, seeds), save
the merged config, check ``MODEL.NUM_CLASSES`` against ``classes.txt``, build the
model / optimiser / schedule, initialise (auto-resume from ``OUTPUT_DIR``, else
``TRAIN.CHECKPOINT_FILE_PATH``, else ``TRAIN.CHECKPOINT_INFLATE``), then per epoch:
train, validate every ``TRAIN.EVAL_PERIOD`` epochs (precise BatchNorm statistics first,
and after the last epoch, with ``BN.USE_PRECISE_STATS``), checkpoint every
``TRAIN.CHECKPOINT_PERIOD`` epochs, append stats and redraw the curves.
"""

import logging
import math
import os
import time
from typing import Dict, NamedTuple, Optional

import torch
import torch.nn as nn
from fvcore.common.config import CfgNode
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cgnl_video.datasets import build_loader, set_loader_epoch
from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.engine import distributed as du
from cgnl_video.engine.batchnorm import convert_norm, update_precise_bn
from cgnl_video.engine.meters import ClassificationMeter
from cgnl_video.engine.optim import build_optimizer, build_scheduler
from cgnl_video.engine.precision import autocast_context, build_grad_scaler
from cgnl_video.engine.reporting import StatsWriter, plot_training_curves
from cgnl_video.engine.setup import check_num_classes, setup_run
from cgnl_video.models import build_model, load_inflated_weights
from cgnl_video.models.pretrained import adapt_to_model, scratch_warning

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training stopped on a NaN / infinite loss; the message names the iteration."""


def freeze_batchnorm_statistics(model: nn.Module) -> None:
    """Puts every BatchNorm in eval mode (running statistics frozen, affine still trained)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def initialise(cfg: CfgNode, model, optimizer, scheduler, scaler) -> int:
    """Restores a run or initialises weights; returns the epoch to start from (0-based)."""
    if cfg.TRAIN.AUTO_RESUME:
        path, state = ckpt.newest_loadable(cfg.OUTPUT_DIR)
        if state is not None:
            ckpt.unwrap(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            ckpt.set_rng_state(state["rng"])
            logger.info("resumed from %s (epoch %d)", path, state["epoch"])
            return state["epoch"]
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        path = cfg.TRAIN.CHECKPOINT_FILE_PATH
        state = ckpt.load_file(path)
        ckpt.load_matching_weights(model, adapt_to_model(ckpt.unwrap(model), state["model"], path), path)
        return 0 if cfg.TRAIN.CHECKPOINT_EPOCH_RESET else state.get("epoch", 0)
    if cfg.TRAIN.CHECKPOINT_INFLATE:
        unused = load_inflated_weights(ckpt.unwrap(model), cfg.TRAIN.CHECKPOINT_INFLATE)
        logger.info("inflated %s; unused 2D keys: %s", cfg.TRAIN.CHECKPOINT_INFLATE, unused)
    elif scratch_warning(cfg):
        logger.warning(scratch_warning(cfg))
    return 0


def save_checkpoint(cfg: CfgNode, epoch: int, model, optimizer, scheduler, scaler) -> str:
    """Writes ``checkpoint_epoch_{epoch:05d}.pyth`` atomically (rank 0 only).

    A file already there (a damaged checkpoint that resuming skipped) is kept as ``.prev``.
    """
    path = ckpt.checkpoint_path(cfg.OUTPUT_DIR, epoch)
    if os.path.exists(path):
        os.replace(path, path + ".prev")
    ckpt.atomic_save(
        {
            "model": ckpt.unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "rng": ckpt.rng_state(),
            "cfg": cfg.dump(),
        },
        path,
    )
    return path


def train_epoch(cfg, model, loader, optimizer, scheduler, scaler, epoch, device, writer) -> Dict:
    """One epoch over ``loader``; returns the epoch's mean loss, top-1 and clips/s (all ranks)."""
    model.train()
    if cfg.BN.FREEZE:
        freeze_batchnorm_statistics(model)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.SOLVER.LABEL_SMOOTHING)
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, clips
    start = time.perf_counter()
    progress = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
                    disable=not du.is_main_process(), dynamic_ncols=True)
    for iteration, batch in enumerate(progress):
        clips = batch["video"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        with autocast_context(cfg, device):
            logits = model(clips)
            loss = criterion(logits.float(), labels)
        loss_value = loss.item()  # one device sync per iteration
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"loss is {loss_value} at epoch {epoch + 1}, iteration {iteration + 1}; "
                f"the last good checkpoint is kept in {ckpt.checkpoint_dir(cfg.OUTPUT_DIR)}"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.SOLVER.CLIP_GRAD_L2NORM > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.SOLVER.CLIP_GRAD_L2NORM)
        scaler.step(optimizer)
        scaler.update()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        batch_size = labels.shape[0]
        totals += torch.tensor([loss_value * batch_size,
                                (logits.argmax(1) == labels).sum().item(), batch_size])
        clips_per_s = totals[2].item() * du.world_size() / (time.perf_counter() - start)
        progress.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", clips_s=f"{clips_per_s:.1f}")
        if du.is_main_process() and (iteration + 1) % cfg.TRAIN.LOG_PERIOD == 0:
            step = epoch * len(loader) + iteration + 1
            writer.write({"type": "train_iter", "epoch": epoch + 1, "iter": iteration + 1,
                          "loss": loss_value, "lr": lr, "clips_per_s": clips_per_s}, step)
    totals = du.all_reduce_sum(totals)
    return {
        "loss": totals[0].item() / max(totals[2].item(), 1),
        "top1": totals[1].item() / max(totals[2].item(), 1),
        "lr": optimizer.param_groups[0]["lr"],
        "clips_per_s": totals[2].item() / (time.perf_counter() - start),
    }


@torch.no_grad()
def evaluate(cfg, model, loader, device) -> Dict:
    """Single-view top-1 / top-5 / mean class accuracy over ``loader`` (all ranks)."""
    model.eval()
    meter = ClassificationMeter(cfg.MODEL.NUM_CLASSES)
    for batch in tqdm(loader, desc="val", disable=not du.is_main_process(), dynamic_ncols=True):
        with autocast_context(cfg, device):
            logits = model(batch["video"].to(device, non_blocking=True))
        meter.update(logits.float().cpu(), batch["label"])
    meter.reduce(du.all_reduce_sum)
    return meter.summary()


class TrainResult(NamedTuple):
    model: nn.Module  # the trained model (unwrapped from DistributedDataParallel)
    val: Optional[Dict]  # the last validation summary, None without validation


def train(cfg: CfgNode) -> TrainResult:
    """Trains the model of ``cfg``."""
    device = setup_run(cfg, "config.yaml")
    check_num_classes(cfg)
    model = convert_norm(cfg, build_model(cfg).to(device), device)
    train_loader = build_loader(cfg, "train")
    validate = cfg.TRAIN.EVAL_PERIOD > 0
    val_loader = build_loader(cfg, "val") if validate else None
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, len(train_loader))
    scaler = build_grad_scaler(cfg, device)
    start_epoch = initialise(cfg, model, optimizer, scheduler, scaler)
    if du.is_distributed():
        model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    writer = StatsWriter(cfg.OUTPUT_DIR) if du.is_main_process() else None
    summary = None
    for epoch in range(start_epoch, cfg.SOLVER.MAX_EPOCH):
        set_loader_epoch(train_loader, epoch)
        record = train_epoch(cfg, model, train_loader, optimizer, scheduler, scaler, epoch, device, writer)
        last = epoch + 1 == cfg.SOLVER.MAX_EPOCH
        evaluated = validate and ((epoch + 1) % cfg.TRAIN.EVAL_PERIOD == 0 or last)
        if evaluated or last:
            update_precise_bn(cfg, model, train_loader, device)  # with BN.USE_PRECISE_STATS
        if evaluated:
            summary = evaluate(cfg, model, val_loader, device)
        if du.is_main_process():
            writer.write({"type": "train_epoch", "epoch": epoch + 1, **record}, epoch + 1)
            if evaluated:
                writer.write({"type": "val", "epoch": epoch + 1, **summary}, epoch + 1)
            if (epoch + 1) % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or last:
                save_checkpoint(cfg, epoch + 1, model, optimizer, scheduler, scaler)
            plot_training_curves(writer.read(), os.path.join(cfg.OUTPUT_DIR, "training_curves.png"))
        du.barrier()
    return TrainResult(ckpt.unwrap(model), summary)
