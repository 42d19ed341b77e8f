"""Checkpoints: atomic writes, weights_only loads, fallback past damaged files, head skipping."""

import logging
import os
import random

import numpy as np
import pytest
import torch

from cgnl_video.config import load_config
from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.models import build_model

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
