"""Pretrained starts: torchvision:NAME through the hub cache, pytorchvideo .pyth files, safety."""

import logging
import os
import random
from pathlib import Path

import pytest
import torch
import torchvision
from pytorchvideo.models.hub import i3d_r50

from cgnl_video.config import load_config
from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.models import CGNLBlock, build_model, load_inflated_weights
from cgnl_video.models.pretrained import (
    PretrainedError,
    read_state_dict,
    scratch_warning,
    torchvision_cache_path,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL_R18 = ["RESNET.DEPTH", "18", "RESNET.WIDTH_PER_GROUP", "64"]


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache: nothing downloaded, and no network here."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def test_torchvision_offline_names_the_url_and_the_path_then_loads_the_file_put_there(torch_home):
    model = build_model(load_config(None, SMALL_R18))
    expected_path = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert torchvision_cache_path("resnet18") == str(expected_path)
    with pytest.raises(PretrainedError) as err:
        load_inflated_weights(model, "torchvision:resnet18")
    message = str(err.value)
    assert "could not download https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert f"put it at {expected_path}" in message and "\n" not in message

    torch.manual_seed(0)
    net2d = torchvision.models.resnet18(weights=None)
    expected_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net2d.state_dict(), expected_path)  # the format of torchvision's own file
    unused = load_inflated_weights(model, "torchvision:resnet18")
    assert unused == ["fc.bias", "fc.weight"]  # 1000 ImageNet classes vs 400
    stem = model.blocks[0].conv.weight
    assert stem.shape[2] == 5
    torch.testing.assert_close(stem, net2d.conv1.weight.unsqueeze(2).repeat(1, 1, 5, 1, 1) / 5)
    conv_a = model.blocks[1].res_blocks[0].branch2.conv_a.weight  # 3x3x3 in a basic block
    torch.testing.assert_close(conv_a, net2d.layer1[0].conv1.weight.unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3)


def test_a_file_path_still_inflates(tmp_path):
    path = tmp_path / "r18.pth"
    net2d = torchvision.models.resnet18(weights=None)
    torch.save({"state_dict": net2d.state_dict()}, path)
    model = build_model(load_config(None, SMALL_R18))
    load_inflated_weights(model, str(path))
    torch.testing.assert_close(model.blocks[0].norm.running_var, net2d.bn1.running_var)


def test_unknown_torchvision_model_is_named():
    with pytest.raises(PretrainedError, match="torchvision:resnet152: unknown torchvision model"):
        load_inflated_weights(build_model(load_config()), "torchvision:resnet152")


@pytest.fixture(scope="module")
def kinetics_i3d(tmp_path_factory):
    """pytorchvideo's i3d_r50 (untrained, non-trivial BN statistics) saved as the model zoo's .pyth."""
    torch.manual_seed(1)
    model = i3d_r50(pretrained=False)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    state = model.state_dict()
    path = tmp_path_factory.mktemp("zoo") / "I3D_8x8_R50.pyth"
    torch.save({"model_state": state}, path)
    return str(path), state


def test_kinetics_i3d_pyth_loads_into_r50_with_a_cgnl_block(kinetics_i3d, caplog):
    path, source = kinetics_i3d
    caplog.set_level(logging.INFO)
    cfg = load_config(str(CONFIGS / "MiniKinetics" / "I3D_8x8_R50_CGNL1.yaml"),
                      ["TRAIN.AUTO_RESUME", "False", "TRAIN.CHECKPOINT_FILE_PATH", path])
    model = build_model(cfg)
    state = ckpt.TrainState(model, None, None, None)  # fine-tuning reads the weights only
    assert ckpt.initialise(state, cfg, ckpt.initial_point(cfg)).startswith("initialised from the weights") and state.epoch == 0
    own = model.state_dict()
    compared = 0
    for key, value in source.items():
        if key.startswith("blocks.6."):
            continue
        # The CGNL block sits at res4 position 5: res4's last residual block moves to 6.
        key = key.replace("blocks.4.res_blocks.5.", "blocks.4.res_blocks.6.")
        assert torch.equal(own[key], value), key
        compared += 1
    assert compared == len(source) - 2  # every backbone tensor
    assert "blocks.6.proj.weight (400, 2048) vs model (200, 2048)" in caplog.text  # head skipped
    assert "keep their initialisation: blocks.4.res_blocks.5" in caplog.text
    block = model.blocks[4].res_blocks[5]
    assert isinstance(block, CGNLBlock)
    x = torch.randn(1, 1024, 2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(block.eval()(x), x)  # still the identity


def test_our_own_layout_is_not_renamed(kinetics_i3d, tmp_path):
    """A checkpoint of ours with the CGNL block loads position for position."""
    cfg = load_config(str(CONFIGS / "MiniKinetics" / "I3D_8x8_R50_CGNL1.yaml"))
    source = build_model(cfg)
    torch.nn.init.normal_(source.blocks[4].res_blocks[5].gn.weight)
    path = tmp_path / "ours.pyth"
    ckpt.atomic_save({"model": source.state_dict(), "epoch": 3}, str(path))
    target = build_model(cfg)
    cfg.merge_from_list(["TRAIN.AUTO_RESUME", "False", "TRAIN.CHECKPOINT_FILE_PATH", str(path)])
    ckpt.initialise(ckpt.TrainState(target, None, None, None), cfg, ckpt.initial_point(cfg))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


@pytest.mark.parametrize("wrapper", ["model", "model_state"])
def test_a_file_needing_unsafe_unpickling_is_refused_with_the_reason(tmp_path, wrapper):
    path = tmp_path / "evil.pyth"
    torch.save({wrapper: {"w": torch.zeros(1)}, "payload": random.Random()}, path)
    with pytest.raises(ckpt.CheckpointError, match=r"evil\.pyth: refused, it needs unsafe unpickling"):
        ckpt.load_file(str(path))
    with pytest.raises(PretrainedError, match=r"evil\.pyth: refused, it needs unsafe unpickling"):
        read_state_dict(str(path))


def test_a_file_without_a_state_dict_is_named(tmp_path):
    path = tmp_path / "notes.pyth"
    torch.save({"epoch": 3}, path)
    with pytest.raises(PretrainedError, match=r"notes\.pyth: no state dict"):
        read_state_dict(str(path))
    with pytest.raises(ckpt.CheckpointError, match=r"notes\.pyth: not a checkpoint"):
        ckpt.load_file(str(path))


def test_configs_name_their_start_and_scratch_training_warns():
    for path in sorted((CONFIGS / "MiniKinetics").glob("*.yaml")):
        cfg = load_config(str(path))
        assert cfg.TRAIN.CHECKPOINT_INFLATE == f"torchvision:resnet{cfg.RESNET.DEPTH}", path.name
        assert scratch_warning(cfg) is None
    assert scratch_warning(load_config(str(CONFIGS / "demo" / "synthetic_cgnl.yaml"))) is None
    emptied = load_config(str(CONFIGS / "MiniKinetics" / "I3D_8x8_R50.yaml"),
                          ["TRAIN.CHECKPOINT_INFLATE", ""])
    message = scratch_warning(emptied)
    assert "TRAIN.CHECKPOINT_FILE_PATH" in message and "TRAIN.CHECKPOINT_INFLATE" in message


def test_normalisation_matches_the_weights_each_config_starts_from():
    imagenet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    kinetics = ([0.45] * 3, [0.225] * 3)
    configs = {path: load_config(str(path)) for path in sorted(CONFIGS.glob("*/*.yaml"))}
    # a start written by another config's run: that config's normalisation
    runs = {cfg.OUTPUT_DIR + "/checkpoints/": (cfg.DATA.MEAN, cfg.DATA.STD) for cfg in configs.values()}
    for path, cfg in configs.items():
        start = cfg.TRAIN.CHECKPOINT_FILE_PATH or cfg.TRAIN.CHECKPOINT_INFLATE
        if start.startswith("torchvision:") or start.startswith("output/MiniKinetics/"):
            expected = imagenet  # inflated from ImageNet, or fine-tuned from such a model
        elif start.endswith("I3D_8x8_R50.pyth"):
            expected = kinetics
        elif os.path.dirname(start) + "/" in runs:
            expected = runs[os.path.dirname(start) + "/"]
        else:
            assert cfg.TRAIN.FROM_SCRATCH, path
            continue
        assert (cfg.DATA.MEAN, cfg.DATA.STD) == expected, path
