"""Optimiser and learning-rate schedule."""

import math
from pathlib import Path

import pytest
import torch

from cgnl_video.config import load_config
from cgnl_video.engine.optim import build_optimizer, build_scheduler, lr_at_epoch
from cgnl_video.errors import ConfigError
from cgnl_video.models import NonLocalBlock, build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "MiniKinetics"


def cfg_with(*opts):
    return load_config(None, list(opts))


def test_warmup_then_cosine():
    cfg = cfg_with("SOLVER.BASE_LR", "0.4", "SOLVER.WARMUP_EPOCHS", "2.0", "SOLVER.WARMUP_START_LR",
                   "0.0", "SOLVER.MAX_EPOCH", "10", "SOLVER.COSINE_END_LR", "0.0")
    assert lr_at_epoch(cfg, 0.0) == 0.0
    cosine_at_2 = 0.2 * (1 + math.cos(math.pi * 0.2))
    assert lr_at_epoch(cfg, 1.0) == pytest.approx(cosine_at_2 / 2)
    assert lr_at_epoch(cfg, 5.0) == pytest.approx(0.2)
    assert lr_at_epoch(cfg, 10.0) == pytest.approx(0.0)


def test_steps_policy():
    cfg = cfg_with("SOLVER.LR_POLICY", "steps", "SOLVER.STEPS", "[3, 6]", "SOLVER.LRS", "[0.1, 0.01]",
                   "SOLVER.BASE_LR", "1.0")
    assert [lr_at_epoch(cfg, e) for e in (0, 2.9, 3, 6.5)] == pytest.approx([1.0, 1.0, 0.1, 0.01])


def test_schedule_steps_per_iteration_and_resumes_with_the_new_config():
    cfg = cfg_with("SOLVER.BASE_LR", "0.1", "SOLVER.MAX_EPOCH", "4")
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, iters_per_epoch=5)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr_at_epoch(cfg, 2.0))
    faster = cfg_with("SOLVER.BASE_LR", "0.2", "SOLVER.MAX_EPOCH", "4")
    resumed_optimizer = build_optimizer(model, faster)
    build_scheduler(resumed_optimizer, faster, iters_per_epoch=5).load_state_dict(scheduler.state_dict())
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(lr_at_epoch(faster, 2.0))


def test_no_weight_decay_on_norms_and_biases():
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4))
    groups = build_optimizer(model, cfg_with("SOLVER.ZERO_WD_1D_PARAM", "True")).param_groups
    assert [len(g["params"]) for g in groups] == [1, 3]
    assert groups[1]["weight_decay"] == 0.0 and groups[0]["weight_decay"] == 1e-4
    assert groups[0]["nesterov"] is True and groups[0]["momentum"] == 0.9


def test_no_weight_decay_catches_every_norm_and_bias_of_the_net():
    """BatchNorm (backbone, NL block), CGNL's GroupNorm and all biases; conv / linear weights decay."""
    cfg = cfg_with("RESNET.DEPTH", "18", "RESNET.WIDTH_PER_GROUP", "8", "NONLOCAL.LOCATION",
                   "[[], [0], [], []]", "CGNL.GROUPS", "2", "SOLVER.ZERO_WD_1D_PARAM", "True")
    model = build_model(cfg)
    stage = model.blocks[4].res_blocks  # res4: add an NL block beside res3's CGNL block
    stage.insert(1, NonLocalBlock(stage[0].branch2.conv_b.out_channels, 4))
    norms = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)
    expected = {id(p) for m in model.modules() for n, p in m.named_parameters(recurse=False)
                if isinstance(m, norms) or n == "bias"}
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    decay, no_decay = build_optimizer(model, cfg).param_groups
    assert {id(p) for p in no_decay["params"]} == expected and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and decay["weight_decay"] == 1e-4
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_minikinetics_configs_exclude_norms_and_biases_from_weight_decay():
    for path in sorted(CONFIGS.glob("*.yaml")):
        assert load_config(str(path)).SOLVER.ZERO_WD_1D_PARAM, path.name


@pytest.mark.parametrize("opts, key", [
    (["SOLVER.LR_POLICY", "linear"], "SOLVER.LR_POLICY"),
    (["SOLVER.LR_POLICY", "steps", "SOLVER.STEPS", "[1]"], "SOLVER.STEPS"),
    (["SOLVER.MAX_EPOCH", "0"], "SOLVER.MAX_EPOCH"),
])
def test_bad_solver_values_name_the_key(opts, key):
    with pytest.raises(ConfigError, match=key):
        build_optimizer(torch.nn.Linear(2, 2), cfg_with(*opts))
