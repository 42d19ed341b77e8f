"""BN options: precise BatchNorm statistics (fvcore) and SyncBatchNorm (the BN keys' checks:
tests/test_validation.py)."""

import torch
from conftest import tiny_opts

from cgnl_video.config import load_config
from cgnl_video.engine import train as train_module
from cgnl_video.engine.batchnorm import convert_norm, update_precise_bn
from cgnl_video.engine.checkpoint import checkpoint_path, load_file
from cgnl_video.engine.normalize import InputNormalizer
from cgnl_video.models import build_model

CPU = torch.device("cpu")
NORMALIZE = InputNormalizer([0.45] * 3, [0.225] * 3, CPU)
TINY = ["RESNET.DEPTH", "18", "RESNET.WIDTH_PER_GROUP", "8", "MODEL.NUM_CLASSES", "3",
        "NONLOCAL.TYPE", "nl", "NONLOCAL.LOCATION", "[[], [], [0], []]"]


def test_precise_bn_gives_the_statistics_of_the_batches(monkeypatch):
    cfg = load_config(None, TINY + ["BN.USE_PRECISE_STATS", "True", "BN.NUM_BATCHES_PRECISE", "3"])
    torch.manual_seed(0)
    model = build_model(cfg)
    for p in model.parameters():  # NL block not the identity, so its BN sees a non-trivial input
        p.data.normal_(0, 0.1)
    loader = [{"video": torch.randint(0, 256, (2, 3, 4, 32, 32), dtype=torch.uint8)} for _ in range(4)]
    layers = {"stem": model.blocks[0].norm, "res3": model.blocks[3].res_blocks[1].branch2.norm_b,
              "nl": model.blocks[4].res_blocks[1].bn}
    buffers = {name: bn.running_var for name, bn in layers.items()}
    seen = {name: [] for name in layers}
    for name, bn in layers.items():
        bn.register_forward_pre_hook(lambda m, inputs, name=name: seen[name].append(inputs[0].double()))
    update_precise_bn(cfg, model, loader, NORMALIZE)
    for name, bn in layers.items():
        assert len(seen[name]) == 3  # NUM_BATCHES_PRECISE of the 4 batches
        x = torch.cat(seen[name]).transpose(0, 1).flatten(1)  # C x (3 batches' positions)
        torch.testing.assert_close(bn.running_mean.double(), x.mean(1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.running_var.double(), x.var(1, unbiased=False), rtol=1e-5, atol=1e-5)
        assert bn.running_var is buffers[name]  # the same buffer (DDP keeps references)
    assert bn.momentum == 0.1  # restored


def test_precise_bn_is_off_by_default():
    cfg = load_config(None, TINY)
    model = build_model(cfg)
    before = model.blocks[0].norm.running_var.clone()
    update_precise_bn(cfg, model, [{"video": torch.zeros(1, 3, 4, 32, 32, dtype=torch.uint8)}], NORMALIZE)
    assert torch.equal(model.blocks[0].norm.running_var, before)


def test_the_train_loop_recomputes_the_statistics(data_dir, tmp_path, monkeypatch):
    calls = []

    def spy(cfg, model, loader, normalize):
        calls.append(cfg.BN.USE_PRECISE_STATS)
        update_precise_bn(cfg, model, loader, normalize)

    monkeypatch.setattr(train_module, "update_precise_bn", spy)
    states = {}
    for precise in ("False", "True"):
        out = str(tmp_path / precise)
        opts = {"SOLVER.MAX_EPOCH": 2, "TRAIN.EVAL_PERIOD": 0, "BN.USE_PRECISE_STATS": precise}
        train_module.train(load_config(None, tiny_opts(data_dir, out, **opts)))
        states[precise] = load_file(checkpoint_path(out, 2))["model"]
    assert calls == [False, True]  # once per run: at the end (no validation)
    key = "blocks.0.norm.running_var"
    assert torch.equal(states["False"]["blocks.0.conv.weight"], states["True"]["blocks.0.conv.weight"])
    assert not torch.allclose(states["False"][key], states["True"][key])


def test_sync_batchnorm_is_converted():
    cfg = load_config(None, TINY + ["BN.NORM_TYPE", "sync_batchnorm"])
    model = convert_norm(cfg, build_model(cfg))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)


def test_batchnorm_leaves_the_model_as_is():
    cfg = load_config(None, TINY)
    model = build_model(cfg)
    assert convert_norm(cfg, model) is model
