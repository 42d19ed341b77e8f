"""Checkpoints: atomic writes, weights_only loads, fallback past damaged files, head skipping."""

import logging
import os
import random
import struct
import zipfile

import numpy as np
import pytest
import torch

from cgnl_video.config import load_config
from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.models import build_model
from cgnl_video.models.resnet3d import HEAD_PREFIX, classifier

SMALL = ["RESNET.DEPTH", "18", "RESNET.WIDTH_PER_GROUP", "8"]


def small_model(num_classes):
    return build_model(load_config(None, SMALL + ["MODEL.NUM_CLASSES", str(num_classes)]))


def save(output_dir, epoch, model):
    path = ckpt.checkpoint_path(str(output_dir), epoch)
    ckpt.atomic_save({"model": model.state_dict(), "epoch": epoch, "rng": ckpt.rng_state()}, path)
    return path


def test_newest_loadable_skips_a_truncated_checkpoint_and_keeps_it(tmp_path):
    model = small_model(5)
    first = save(tmp_path, 1, model)
    second = save(tmp_path, 2, model)
    with open(second, "r+b") as handle:
        handle.truncate(os.path.getsize(second) // 2)
    path, state = ckpt.newest_loadable(str(tmp_path))
    assert path == first and state["epoch"] == 1
    assert os.path.exists(second)  # nothing deleted


def test_failed_save_leaves_the_previous_file_intact(tmp_path):
    path = save(tmp_path, 1, small_model(5))
    before = open(path, "rb").read()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.atomic_save({"model": {}, "bad": Unpicklable()}, path)
    assert open(path, "rb").read() == before
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]


def test_load_refuses_arbitrary_pickles(tmp_path):
    path = str(tmp_path / "evil.pyth")
    torch.save({"model": {}, "payload": random.Random()}, path)
    with pytest.raises(ckpt.CheckpointError, match="evil.pyth: refused, it needs unsafe unpickling"):
        ckpt.load_file(path)


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    path = save(tmp_path, 1, small_model(5))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.set_rng_state(ckpt.load_file(path)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_fine_tuning_skips_the_head_of_another_dataset(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    source = small_model(200)
    state = ckpt.load_file(save(tmp_path, 3, source))["model"]
    target = small_model(101)
    skipped = ckpt.load_matching_weights(target, state, "mk200.pyth")
    assert [s.split()[0] for s in skipped] == ["blocks.6.proj.bias", "blocks.6.proj.weight"]
    assert "(200, 64) vs model (101, 64)" in skipped[1]
    torch.testing.assert_close(target.blocks[0].conv.weight, source.blocks[0].conv.weight)
    assert "skipped keys" in caplog.text


def test_another_architecture_is_refused(tmp_path):
    state = build_model(load_config(None, ["RESNET.DEPTH", "34", "RESNET.WIDTH_PER_GROUP", "8"])).state_dict()
    with pytest.raises(ckpt.CheckpointError, match="r34.pyth: does not fit"):
        ckpt.load_matching_weights(small_model(5), state, "r34.pyth")


def test_checkpoints_are_listed_in_epoch_order(tmp_path):
    model = small_model(2)
    for epoch in (10, 2, 1):
        save(tmp_path, epoch, model)
    (tmp_path / "checkpoints" / "notes.txt").write_text("x")
    names = [os.path.basename(p) for p in ckpt.list_checkpoints(str(tmp_path))]
    assert names == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth",
                     "checkpoint_epoch_00010.pyth"]


def test_train_state_round_trips_with_one_rng_state_per_process(tmp_path):
    from cgnl_video.engine.optim import build_optimizer, build_scheduler

    cfg = load_config(None, SMALL + ["MODEL.NUM_CLASSES", "3", "OUTPUT_DIR", str(tmp_path), "SOLVER.BASE_LR", "0.2"])

    def fresh_state():
        model = build_model(cfg)
        optimizer = build_optimizer(model, cfg)
        return ckpt.TrainState(model, optimizer, build_scheduler(optimizer, cfg, 10), torch.amp.GradScaler("cpu", enabled=False))

    state = fresh_state()
    state.model(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    state.optimizer.step()
    state.scheduler.step()
    state.epoch = 4
    torch.manual_seed(11)
    rank0 = ckpt.rng_state()
    torch.manual_seed(22)
    rank1 = ckpt.rng_state()
    path = ckpt.save_checkpoint(state, cfg, [rank0, rank1], ["a", "b", "c"])
    restored = fresh_state()
    checkpoint = ckpt.load_file(path)
    ckpt._restore(restored, checkpoint, rank=1, source=path)
    assert restored.epoch == 4 and restored.scheduler.iteration == 1 and checkpoint["world_size"] == 2
    assert checkpoint["classes"] == ["a", "b", "c"]
    assert all(torch.equal(a, b) for a, b in zip(restored.model.state_dict().values(), state.model.state_dict().values()))
    assert restored.optimizer.state_dict()["state"].keys() == state.optimizer.state_dict()["state"].keys()
    torch.manual_seed(22)
    expected = torch.rand(3)
    ckpt._restore(restored, checkpoint, rank=1, source=path)
    assert torch.equal(torch.rand(3), expected)  # rank 1 continues rank 1's generator, not rank 0's


def test_the_head_prefix_names_exactly_the_classifier():
    model = small_model(5)
    linears = [module for module in model.modules() if isinstance(module, torch.nn.Linear)]
    assert classifier(model) is linears[-1] and classifier(model).out_features == 5
    assert sorted(k for k in model.state_dict() if k.startswith(HEAD_PREFIX)) == \
        ["blocks.6.proj.bias", "blocks.6.proj.weight"]


def flip_tensor_bytes(path):
    """Flips bytes in the middle of the largest tensor's data (not in the zip's bookkeeping)."""
    with zipfile.ZipFile(path) as archive:
        entry = max(archive.infolist(), key=lambda info: info.file_size)
    with open(path, "r+b") as handle:
        handle.seek(entry.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", handle.read(4))
        handle.seek(entry.header_offset + 30 + name_length + extra_length + entry.file_size // 2)
        data = handle.read(4)
        handle.seek(-4, os.SEEK_CUR)
        handle.write(bytes(b ^ 0xFF for b in data))


def test_flipped_bytes_fail_the_checksum_and_are_skipped(tmp_path):
    model = small_model(5)
    first = save(tmp_path, 1, model)
    second = save(tmp_path, 2, model)
    torch.load(second, weights_only=True)  # a plain torch.load still reads our files
    flip_tensor_bytes(second)
    torch.load(second, weights_only=True)  # torch does not notice
    with pytest.raises(ckpt.CheckpointError, match="checkpoint_epoch_00002.pyth: damaged checkpoint .*checksum"):
        ckpt.load_file(second)
    path, state = ckpt.newest_loadable(str(tmp_path))
    assert path == first and "checksum" not in state


def test_resume_check_names_every_differing_key():
    cfg = load_config(None, SMALL)
    other = load_config(None, ["RESNET.DEPTH", "34", "RESNET.WIDTH_PER_GROUP", "8", "CGNL.GROUPS", "4",
                               "SOLVER.BASE_LR", "0.5"])
    ckpt.check_resume_compatible(cfg, cfg.dump(), "same.pyth")
    ckpt.check_resume_compatible(cfg, None, "old.pyth")  # written before configs were saved
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.check_resume_compatible(cfg, other.dump(), "other.pyth")
    message = str(err.value)
    assert message.startswith("other.pyth: made with another config")
    assert "CGNL.GROUPS=4 in the checkpoint but 8 now" in message
    assert "RESNET.DEPTH=34 in the checkpoint but 18 now" in message
    assert "SOLVER" not in message  # the schedule may change on resume
