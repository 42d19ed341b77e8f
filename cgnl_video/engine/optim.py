"""SGD and the learning-rate schedule from ``SOLVER.*`` (PySlowFast semantics).

The rate is a function of the fractional epoch: linear warmup from
``SOLVER.WARMUP_START_LR`` over ``SOLVER.WARMUP_EPOCHS``, then ``cosine`` (from
``BASE_LR`` to ``COSINE_END_LR`` at ``MAX_EPOCH``) or ``steps`` (``BASE_LR`` times
``LRS[i]`` from epoch ``STEPS[i]`` on). :class:`IterationSchedule`, stepped once per
iteration, applies it; its state (the epoch position) resumes with the checkpoint.
"""

import math
from typing import List

import torch
import torch.nn as nn
from fvcore.common.config import CfgNode

from cgnl_video.config.validation import check_solver_config


def lr_at_epoch(cfg: CfgNode, epoch: float) -> float:
    """Learning rate at fractional ``epoch`` (0 = start of training)."""
    solver = cfg.SOLVER
    lr = _policy_lr(solver, epoch)
    if epoch < solver.WARMUP_EPOCHS:
        end = _policy_lr(solver, solver.WARMUP_EPOCHS)
        lr = solver.WARMUP_START_LR + (end - solver.WARMUP_START_LR) * epoch / solver.WARMUP_EPOCHS
    return lr


def _policy_lr(solver: CfgNode, epoch: float) -> float:
    if solver.LR_POLICY == "cosine":
        progress = min(epoch / solver.MAX_EPOCH, 1.0)
        return solver.COSINE_END_LR + (solver.BASE_LR - solver.COSINE_END_LR) * (
            1 + math.cos(math.pi * progress)) / 2
    factor = 1.0
    for step, relative in zip(solver.STEPS, solver.LRS):
        if epoch >= step:
            factor = relative
    return solver.BASE_LR * factor


def param_groups(model: nn.Module, cfg: CfgNode) -> List[dict]:
    """Weight decay on weights; none on norm parameters and biases with ``SOLVER.ZERO_WD_1D_PARAM``."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if cfg.SOLVER.ZERO_WD_1D_PARAM and param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.SOLVER.WEIGHT_DECAY}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: CfgNode) -> torch.optim.Optimizer:
    """SGD with ``SOLVER.MOMENTUM`` / ``NESTEROV`` / ``WEIGHT_DECAY`` at ``BASE_LR``."""
    check_solver_config(cfg)
    return torch.optim.SGD(
        param_groups(model, cfg), lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
        nesterov=cfg.SOLVER.NESTEROV,
    )


class IterationSchedule:
    """Sets every parameter group's rate to :func:`lr_at_epoch` of the current position, the
    fractional epoch ``iteration / iters_per_epoch`` (PySlowFast's ``tools/train_net.py``:
    ``get_epoch_lr(cur_epoch + float(cur_iter) / data_size, cfg)``).

    Its state is the position only: a resumed run follows the config it is given (a changed
    ``SOLVER.BASE_LR`` takes effect) from the epoch it stopped at, whatever its batch (a changed
    ``TRAIN.BATCH_SIZE`` changes ``iters_per_epoch``, not the epoch).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: CfgNode, iters_per_epoch: int):
        self.optimizer, self.cfg, self.iters_per_epoch = optimizer, cfg, iters_per_epoch
        self.iteration = 0  # optimiser steps at ``iters_per_epoch`` per epoch since the start
        self._apply()

    def _apply(self) -> None:
        lr = lr_at_epoch(self.cfg, self.iteration / self.iters_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        self.iteration += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"epoch": self.iteration / self.iters_per_epoch}

    def load_state_dict(self, state: dict) -> None:
        if "epoch" in state:
            self.iteration = round(state["epoch"] * self.iters_per_epoch)
        else:  # written before the position was saved: an iteration count, at the same batch
            self.iteration = state["iteration"]
        self._apply()


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: CfgNode, iters_per_epoch: int) -> IterationSchedule:
    """The per-iteration schedule of ``cfg`` for ``optimizer``."""
    return IterationSchedule(optimizer, cfg, iters_per_epoch)
