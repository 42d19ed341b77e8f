"""The training loop: epochs of SGD, periodic validation, checkpoints, logs and plots.

Flow of one run (``tools/train_net.py``): read and check the inputs once
(``engine/preflight.py``: ``classes.txt`` against ``MODEL.NUM_CLASSES``, the lists, the
checkpoint to start from), set up the process (torchrun, seeds, the run lock; the checkpoint
to resume from loaded under it), save the merged config, build the model and its
:class:`~cgnl_video.engine.checkpoint.TrainState`, resume or initialise it
(``engine/checkpoint.py``), then per epoch: train, validate every ``TRAIN.EVAL_PERIOD``
epochs (precise BatchNorm statistics first, and after the last epoch, with
``BN.USE_PRECISE_STATS``), checkpoint every ``TRAIN.CHECKPOINT_PERIOD`` epochs, append stats
and redraw the curves.

Batches: ``TRAIN.BATCH_SIZE`` is the global batch of one optimiser step; each of the
``world_size`` processes loads ``BATCH_SIZE / (world_size x TRAIN.ACCUMULATION_STEPS)``
clips per micro-batch and the gradients of ``ACCUMULATION_STEPS`` micro-batches are summed
(DDP averages over processes) before the step: the same model whatever the layout.
"""

import contextlib
import logging
import math
import os
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

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
from cgnl_video.engine.normalize import InputNormalizer, build_normalizer
from cgnl_video.engine.optim import build_optimizer, build_scheduler
from cgnl_video.engine.precision import autocast_context, build_grad_scaler
from cgnl_video.engine.preflight import Inputs, validate_inputs
from cgnl_video.engine.quarantine import Quarantine
from cgnl_video.engine.reporting import StatsWriter, plot_training_curves
from cgnl_video.engine.run_setup import setup_run
from cgnl_video.errors import UserError
from cgnl_video.models import build_model

logger = logging.getLogger(__name__)


class NonFiniteLossError(UserError, RuntimeError):
    """Training stopped on a NaN / infinite loss; the message names the iteration."""


def freeze_batchnorm_statistics(model: nn.Module) -> None:
    """Puts every BatchNorm in eval mode (running statistics frozen, affine still trained)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


class EpochTotals:
    """Sums over an epoch's micro-batches on this process: loss x clips, correct, clips,
    data-wait and compute seconds."""

    def __init__(self):
        self.values = torch.zeros(5, dtype=torch.float64)

    def add(self, loss: float, correct: int, clips: int, dt_data: float, dt_net: float) -> None:
        self.values += torch.tensor([loss * clips, correct, clips, dt_data, dt_net], dtype=torch.float64)

    def summary(self, iterations: int, seconds: float) -> Dict:
        """Means over all processes (one all-reduce)."""
        loss, correct, clips, dt_data, dt_net = du.all_reduce_sum(self.values).tolist()
        per_iteration = max(iterations * du.world_size(), 1)
        return {"loss": loss / max(clips, 1), "top1": correct / max(clips, 1), "clips_per_s": clips / seconds,
                "dt_data": dt_data / per_iteration, "dt_net": dt_net / per_iteration}


def _optimiser_step(cfg: CfgNode, state: ckpt.TrainState) -> None:
    """Clips the gradient if configured, steps the optimiser and the schedule, clears the gradient."""
    if cfg.SOLVER.CLIP_GRAD_L2NORM > 0:
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(state.model.parameters(), cfg.SOLVER.CLIP_GRAD_L2NORM)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.optimizer.zero_grad(set_to_none=True)
    state.scheduler.step()


def train_epoch(cfg: CfgNode, net: nn.Module, state: ckpt.TrainState, loader, normalize: InputNormalizer,
                epoch: int, writer: Optional[StatsWriter]) -> Tuple[Dict, List[Tuple[str, str]]]:
    """One epoch over ``loader`` (micro-batches); ``net`` is ``state.model`` or its DDP wrapper.

    Returns the epoch's means over all processes (loss, top-1, clips/s, dt_data, dt_net) and
    this process's decoding failures ``(path, reason)``.
    """
    net.train()
    if cfg.BN.FREEZE:
        freeze_batchnorm_statistics(net)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.SOLVER.LABEL_SMOOTHING)
    accumulation = cfg.TRAIN.ACCUMULATION_STEPS
    totals, failures = EpochTotals(), []
    state.optimizer.zero_grad(set_to_none=True)
    start = last = time.perf_counter()
    progress = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
                    disable=not du.is_main_process(), dynamic_ncols=True)
    for iteration, batch in enumerate(progress):
        loaded = time.perf_counter()
        clips, labels = normalize(batch["video"]), batch["label"].to(normalize.device, non_blocking=True)
        stepping = (iteration + 1) % accumulation == 0
        # DDP all-reduces gradients only on the micro-batch that ends an optimiser step.
        sync = contextlib.nullcontext() if stepping or net is state.model else net.no_sync()
        with sync:
            with autocast_context(cfg, normalize.device):
                logits = net(clips)
                loss = criterion(logits.float(), labels)
            loss_value = loss.item()  # one device sync per micro-batch
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(
                    f"loss is {loss_value} at epoch {epoch + 1}, iteration {iteration + 1}; "
                    f"the last good checkpoint is kept in {ckpt.checkpoint_dir(cfg.OUTPUT_DIR)}"
                )
            state.scaler.scale(loss / accumulation).backward()
        lr = state.optimizer.param_groups[0]["lr"]
        if stepping:
            _optimiser_step(cfg, state)
        failures.extend(batch["failures"])
        now = time.perf_counter()
        dt_data, dt_net = loaded - last, now - loaded
        totals.add(loss_value, int((logits.argmax(1) == labels).sum()), len(labels), dt_data, dt_net)
        last = now
        progress.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", dt_data=f"{dt_data:.3f}",
                             dt_net=f"{dt_net:.3f}")
        if writer is not None and (iteration + 1) % cfg.TRAIN.LOG_PERIOD == 0:
            writer.write({"type": "train_iter", "epoch": epoch + 1, "iter": iteration + 1, "loss": loss_value,
                          "lr": lr, "dt_data": dt_data, "dt_net": dt_net}, epoch * len(loader) + iteration + 1)
    record = totals.summary(len(loader), time.perf_counter() - start)
    return {**record, "lr": state.optimizer.param_groups[0]["lr"]}, failures


@torch.no_grad()
def evaluate(cfg: CfgNode, model: nn.Module, loader, normalize: InputNormalizer) -> Dict:
    """Single-view top-1 / top-5 / mean class accuracy over ``loader`` (all processes), with the
    videos that failed to decode reported (``num_failed``, ``failed``), never replaced."""
    model.eval()
    meter, failed = ClassificationMeter(cfg.MODEL.NUM_CLASSES), []
    for batch in tqdm(loader, desc="val", disable=not du.is_main_process(), dynamic_ncols=True):
        good = ~batch["failed"]
        failed.extend(reason for reason, bad in zip(batch["reason"], batch["failed"]) if bad)
        if good.any():
            with autocast_context(cfg, normalize.device):
                logits = model(normalize(batch["video"][good]))
            meter.update(logits.float().cpu(), batch["label"][good])
    meter.reduce(du.all_reduce_sum)
    failed = du.gather_lists(failed)
    return {**meter.summary(), "num_videos": len(loader.dataset), "num_tested": meter.count,
            "num_failed": len(failed), "failed": failed}


class TrainResult(NamedTuple):
    model: nn.Module  # the trained model (unwrapped from DistributedDataParallel)
    val: Optional[Dict]  # the last validation summary, None without validation


def _layout(cfg: CfgNode, loader) -> Dict:
    """How the global batch is split, for the logs and stats.jsonl."""
    return {"world_size": du.world_size(), "batch_per_process": loader.batch_sampler.micro,
            "accumulation_steps": cfg.TRAIN.ACCUMULATION_STEPS, "global_batch": cfg.TRAIN.BATCH_SIZE}


def _start(cfg: CfgNode, inputs: Inputs, device: torch.device, resumed: Optional[ckpt.Start]):
    """The model (on ``device``, norms converted), the loaders (of the lists preflight read) and
    the :class:`~cgnl_video.engine.checkpoint.TrainState`, resumed or initialised; the loaded
    checkpoint is released on return."""
    model = convert_norm(cfg, build_model(cfg).to(device))
    train_loader = build_loader(cfg, "train", inputs.records["train"])
    val_loader = build_loader(cfg, "val", inputs.records["val"]) if cfg.TRAIN.EVAL_PERIOD > 0 else None
    optimizer = build_optimizer(model, cfg)
    state = ckpt.TrainState(model, optimizer, build_scheduler(optimizer, cfg, train_loader.batch_sampler.steps_per_epoch),
                            build_grad_scaler(cfg, device))
    # Last: the initialisation preflight skipped when a resume fell through (every checkpoint
    # damaged); None (nothing to load) otherwise.
    start = resumed or inputs.start or ckpt.initial_point(cfg)
    logger.info(ckpt.initialise(state, cfg, start, du.rank()))
    return state, train_loader, val_loader


def train(cfg: CfgNode) -> TrainResult:
    """Trains the model of ``cfg``."""
    inputs = validate_inputs(cfg, "train")
    device, resumed = setup_run(cfg, "config.yaml", before_write=ckpt.resume_point,
                                folders=[ckpt.checkpoint_dir(cfg.OUTPUT_DIR)])
    state, train_loader, val_loader = _start(cfg, inputs, device, resumed)
    class_names, model, validate = inputs.class_names, state.model, val_loader is not None
    del inputs, resumed  # the checkpoints they hold are not kept for the run's length
    layout = _layout(cfg, train_loader)
    logger.info("world size %(world_size)d x %(batch_per_process)d clips per process x %(accumulation_steps)d "
                "accumulation steps = global batch %(global_batch)d", layout)
    net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if du.is_distributed() else model
    normalize = build_normalizer(cfg, device)
    quarantine = Quarantine(cfg.OUTPUT_DIR, train_loader.dataset.records, cfg.DATA.MAX_BAD_FRACTION)
    writer = StatsWriter(cfg.OUTPUT_DIR, resume_epoch=state.epoch) if du.is_main_process() else None
    summary = None
    for epoch in range(state.epoch, cfg.SOLVER.MAX_EPOCH):
        set_loader_epoch(train_loader, epoch)
        train_loader.dataset.quarantined = quarantine.before(epoch + 1)
        record, failures = train_epoch(cfg, net, state, train_loader, normalize, epoch, writer)
        quarantine.add(du.gather_lists(failures), epoch + 1, write=du.is_main_process())
        state.epoch = last = epoch + 1
        evaluated = validate and (last % cfg.TRAIN.EVAL_PERIOD == 0 or last == cfg.SOLVER.MAX_EPOCH)
        if evaluated or last == cfg.SOLVER.MAX_EPOCH:
            update_precise_bn(cfg, model, train_loader, normalize)  # with BN.USE_PRECISE_STATS
        if evaluated:
            du.broadcast_buffers(model)
            summary = evaluate(cfg, model, val_loader, normalize)
        saving = last % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or last == cfg.SOLVER.MAX_EPOCH
        rng_states = du.gather_lists([ckpt.rng_state()]) if saving else []
        if writer is not None:
            writer.write({"type": "train_epoch", "epoch": last, **record, **layout}, last)
            if evaluated:
                writer.write({"type": "val", "epoch": last, **summary}, last)
            if saving:
                ckpt.save_checkpoint(state, cfg, rng_states, class_names)
            plot_training_curves(writer.read(), os.path.join(cfg.OUTPUT_DIR, "training_curves.png"))
        du.barrier()
    return TrainResult(model, summary)
