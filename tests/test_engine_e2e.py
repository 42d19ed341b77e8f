"""The engine end to end through the real tools: train, resume, test, faults."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, TOOLS, tiny_opts
from conftest import run_tool as run

from cgnl_video.config import load_config
from cgnl_video.datasets.decoders import open_video
from cgnl_video.engine.checkpoint import CheckpointError, checkpoint_path, load_file, load_for_test
from cgnl_video.models import build_model

CONFIG_STUB = str(ROOT / "configs" / "demo" / "synthetic_cgnl.yaml")
# 3 epochs, the learning rate x 0.1 after epoch 1 and x 0.01 after epoch 2 (a schedule to restore on resume).
STEPPED = {"SOLVER.MAX_EPOCH": 3, "TRAIN.EVAL_PERIOD": 0, "SOLVER.LR_POLICY": "steps",
           "SOLVER.STEPS": "[1, 2]", "SOLVER.LRS": "[0.1, 0.01]"}


def records(output_dir, kind):
    with open(os.path.join(output_dir, "stats.jsonl")) as handle:
        return [r for r in map(json.loads, handle) if r["type"] == kind]


def model_state(output_dir, epoch):
    return load_file(checkpoint_path(output_dir, epoch))["model"]


def test_train_resume_and_multiview_test(resumed_run, data_dir, tmp_path):
    out = resumed_run.copy(tmp_path / "run").out  # 1 epoch, then resumed for the second
    assert os.path.exists(checkpoint_path(out, 1))
    assert "resumed from" in resumed_run.stderr and "checkpoint_epoch_00001" in resumed_run.stderr
    assert [r["epoch"] for r in records(out, "train_epoch")] == [1, 2]
    assert [r["epoch"] for r in records(out, "val")] == [1, 2]
    for name in ("config.yaml", "training_curves.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    tested = run("test_net.py", tiny_opts(data_dir, out))
    assert "2 clips x 3 crops" in tested.stdout
    with open(os.path.join(out, "test_results.json")) as handle:
        results = json.load(handle)
    assert results["num_videos"] == 4 and results["num_failed"] == 0 and results["failed"] == []
    assert (results["num_ensemble_views"], results["num_spatial_crops"]) == (2, 3)
    assert results["checkpoint"].endswith("checkpoint_epoch_00002.pyth")
    for key in ("top1", "top5", "mean_class_acc"):
        assert 0.0 <= results[key] <= 1.0
    assert results["top5"] == 1.0  # 2 classes
    with open(os.path.join(out, "predictions.csv")) as handle:
        assert len(handle.readlines()) == 1 + 4
    assert os.path.getsize(os.path.join(out, "confusion_matrix.png")) > 0

    video = os.path.join(data_dir, open(os.path.join(data_dir, "test.csv")).readline().split()[0])
    labelled = str(tmp_path / "labelled.mp4")
    predicted = run("predict.py", ["--cfg", CONFIG_STUB, video, "--out-video",
                                   labelled, *tiny_opts(data_dir, out)])
    lines = predicted.stdout.splitlines()
    assert lines[0] == video
    scores = [float(line.split()[0]) for line in lines[1:3]]
    assert {line.split()[1] for line in lines[1:3]} == {"move_left", "move_right"}
    assert sum(scores) == pytest.approx(1.0, abs=1e-3) and scores[0] >= scores[1]
    with open_video(labelled, "pyav") as written, open_video(video, "pyav") as source:
        assert written.num_frames == source.num_frames


def test_test_reports_undecodable_videos(trained_run, data_dir, tmp_path):
    out = trained_run.copy(tmp_path / "run").out
    broken = tmp_path / "data"
    shutil.copytree(data_dir, broken)
    victim = open(broken / "test.csv").readline().split()[0]
    (broken / victim).write_bytes(b"not a video")
    tested = run("test_net.py", tiny_opts(str(broken), out))
    assert "1 failed" in tested.stdout
    results = json.load(open(os.path.join(out, "test_results.json")))
    assert results["num_failed"] == 1 and results["num_videos"] == 4
    assert results["failed"][0]["path"].endswith(victim) and results["failed"][0]["reason"]


@pytest.fixture(scope="module")
def three_epochs(data_dir, tmp_path_factory):
    """The OUTPUT_DIR of 3 epochs without validation, on the ``STEPPED`` schedule."""
    out = str(tmp_path_factory.mktemp("three_epochs") / "run")
    run("train_net.py", tiny_opts(data_dir, out, **STEPPED))
    return out


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(three_epochs, data_dir, tmp_path):
    straight, killed = three_epochs, str(tmp_path / "killed")
    process = subprocess.Popen([sys.executable, os.path.join(TOOLS, "train_net.py"),
                                *tiny_opts(data_dir, killed, **STEPPED)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stats = os.path.join(killed, "stats.jsonl")
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if os.path.exists(stats) and '"epoch": 2, "iter": 1,' in open(stats).read():
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert os.path.exists(checkpoint_path(killed, 1))
    assert not os.path.exists(checkpoint_path(killed, 2)), "killed too late: epoch 2 completed"
    resumed = run("train_net.py", tiny_opts(data_dir, killed, **STEPPED))
    assert "resumed from" in resumed.stderr
    expected, actual = model_state(straight, 3), model_state(killed, 3)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_truncated_newest_checkpoint_falls_back_and_is_kept(resumed_run, data_dir, tmp_path):
    out = resumed_run.copy(tmp_path / "run").out
    newest = checkpoint_path(out, 2)
    with open(newest, "r+b") as handle:
        handle.truncate(1000)
    resumed = run("train_net.py", tiny_opts(data_dir, out, **{"TRAIN.EVAL_PERIOD": 0}))
    assert "skipping damaged checkpoint" in resumed.stderr and "checkpoint_epoch_00002" in resumed.stderr
    assert "checkpoint_epoch_00001" in resumed.stderr.split("resumed from")[1]
    assert os.path.getsize(newest + ".prev") == 1000  # the damaged file is kept
    assert load_file(newest)["epoch"] == 2


def test_num_classes_inconsistent_with_classes_txt(data_dir, tmp_path):
    out = str(tmp_path / "run")
    result = run("train_net.py", tiny_opts(data_dir, out, **{"MODEL.NUM_CLASSES": 3}), check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "MODEL.NUM_CLASSES=3" in result.stderr and "classes.txt names 2 classes" in result.stderr
    assert not os.path.exists(os.path.join(out, "checkpoints"))


def test_other_head_shapes_fine_tune_but_do_not_test(trained_run, data_dir, tmp_path):
    assert "training from scratch: neither TRAIN.CHECKPOINT_FILE_PATH" in trained_run.stderr
    out = trained_run.copy(tmp_path / "run").out
    three = tmp_path / "three"
    shutil.copytree(data_dir, three)
    (three / "classes.txt").write_text("a\nb\nc\n")
    result = run("test_net.py", tiny_opts(str(three), out, **{"MODEL.NUM_CLASSES": 3}), check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "MODEL.NUM_CLASSES=2 in the checkpoint but 3 now" in result.stderr  # its saved config
    three_classes = build_model(load_config(None, tiny_opts(str(three), out, **{"MODEL.NUM_CLASSES": 3})))
    with pytest.raises(CheckpointError, match=r"\(2, 64\) in the checkpoint but \(3, 64\) in the model"):
        load_for_test(three_classes, checkpoint_path(out, 1))  # the weights themselves
    fine_tuned = str(tmp_path / "fine_tuned")
    result = run("train_net.py", tiny_opts(str(three), fine_tuned, **{
        "MODEL.NUM_CLASSES": 3, "SOLVER.MAX_EPOCH": 1, "TRAIN.EVAL_PERIOD": 0,
        "TRAIN.CHECKPOINT_FILE_PATH": checkpoint_path(out, 1)}))
    assert "skipped keys" in result.stderr and "blocks.6.proj.weight (2, 64) vs model (3, 64)" in result.stderr
    assert "training from scratch" not in result.stderr
    assert model_state(fine_tuned, 1)["blocks.6.proj.weight"].shape == (3, 64)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(trained_run, data_dir, tmp_path):
    out = trained_run.copy(tmp_path / "run").out
    before = open(checkpoint_path(out, 1), "rb").read()
    result = run("train_net.py", tiny_opts(data_dir, out, **{
        "SOLVER.MAX_EPOCH": 2, "TRAIN.EVAL_PERIOD": 0, "SOLVER.BASE_LR": 1e30}), check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert re.search(r"loss is (nan|inf) at epoch 2, iteration \d", result.stderr)
    assert open(checkpoint_path(out, 1), "rb").read() == before
    assert not os.path.exists(checkpoint_path(out, 2))


def test_initialising_from_a_checkpoint_without_epoch_reset_continues_that_run(three_epochs, data_dir, tmp_path):
    run_a, run_b = three_epochs, str(tmp_path / "b")
    continued = run("train_net.py", tiny_opts(data_dir, run_b, **STEPPED, **{
        "TRAIN.CHECKPOINT_FILE_PATH": checkpoint_path(run_a, 1), "TRAIN.CHECKPOINT_EPOCH_RESET": False}))
    assert "continuing the run of" in continued.stderr and "from epoch 1" in continued.stderr
    assert [r["epoch"] for r in records(run_b, "train_epoch")] == [2, 3]
    lrs = {r["epoch"]: r["lr"] for r in records(run_a, "train_iter")}
    assert {r["epoch"]: r["lr"] for r in records(run_b, "train_iter")} == {e: lrs[e] for e in (2, 3)}
    assert lrs[2] == pytest.approx(0.05 * 0.1) and lrs[3] == pytest.approx(0.05 * 0.01)
    expected, actual = model_state(run_a, 3), model_state(run_b, 3)
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
