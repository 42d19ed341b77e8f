"""The run folder no one can subvert, through the real tools: planted links never change their
targets, read-only and unusable OUTPUT_DIRs stop in one line, a test refuses a checkpoint of
another network, a resume with another batch continues the schedule, SIGTERM leaves no temp."""

import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import tiny_opts
from test_engine_e2e import TOOLS, records, run
from test_run_safety import error_lines

from cgnl_video.datasets.video_io import write_video

NO_EVAL = {"TRAIN.EVAL_PERIOD": 0, "SOLVER.MAX_EPOCH": 1}
# What a train + test run writes into OUTPUT_DIR (found by walking one); a new file must be added
# here and to the link tests below.
RUN_FILES = {".lock", "config.yaml", "stats.jsonl", "training_curves.png", "checkpoints/checkpoint_epoch_00001.pyth",
             "test_config.yaml", "test_results.json", "predictions.csv", "confusion_matrix.png"}
REPLACED = sorted(RUN_FILES - {".lock", "stats.jsonl"})  # whole files, written by rename


def walk(folder):
    return {os.path.relpath(os.path.join(root, name), folder)
            for root, _, names in os.walk(folder) for name in names}


def victims(tmp_path, names):
    """A user's file per name (its content names it), outside the run folder."""
    folder = tmp_path / "victims"
    folder.mkdir(exist_ok=True)
    paths = {name: folder / name.replace("/", "_") for name in names}
    for name, path in paths.items():
        path.write_text(f"a user's file, not {name}\n")
    return paths


def plant(out, name, target):
    path = os.path.join(out, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)
    return path


def assert_unchanged(paths):
    for name, path in paths.items():
        assert path.read_text() == f"a user's file, not {name}\n", name


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("trained") / "run")
    run("train_net.py", tiny_opts(data_dir, out, **NO_EVAL))
    run("test_net.py", tiny_opts(data_dir, out))
    return out


def test_the_run_writes_these_files(trained):
    assert walk(trained) == RUN_FILES


def test_links_planted_for_whole_files_are_replaced_and_their_targets_kept(data_dir, tmp_path):
    out = str(tmp_path / "run")
    extra = ["stats.jsonl.prev", "checkpoints/checkpoint_epoch_00002.pyth.prev"]
    targets = victims(tmp_path, REPLACED + extra)
    for name in REPLACED:
        plant(out, name, targets[name])
    run("train_net.py", tiny_opts(data_dir, out, **NO_EVAL))  # the planted checkpoint is skipped
    run("test_net.py", tiny_opts(data_dir, out))
    # A resume that drops records (stats.jsonl.prev) and keeps a damaged checkpoint (.prev).
    with open(os.path.join(out, "stats.jsonl"), "a") as handle:
        handle.write('{"type": "train_epoch", "epoch": 7}\n')
    open(os.path.join(out, "checkpoints", "checkpoint_epoch_00002.pyth"), "wb").write(b"damaged")
    for name in extra:
        plant(out, name, targets[name])
    run("train_net.py", tiny_opts(data_dir, out, **{**NO_EVAL, "SOLVER.MAX_EPOCH": 2}))
    assert_unchanged(targets)
    for name in REPLACED + extra:
        assert not os.path.islink(os.path.join(out, name)), name
    assert [r["epoch"] for r in records(out, "train_epoch")] == [1, 2]


@pytest.mark.parametrize("tool, name, how", [
    ("train_net.py", ".lock", "link"), ("test_net.py", ".lock", "link"), ("train_net.py", ".lock", "hard link"),
    ("train_net.py", ".lock", "foreign"), ("train_net.py", "stats.jsonl", "link"),
    ("train_net.py", "bad_videos.tsv", "link"), ("train_net.py", "checkpoints", "folder link"),
])
def test_links_planted_for_files_changed_in_place_stop_the_tool(data_dir, tmp_path, trained, tool, name, how):
    out = str(tmp_path / "run")
    shutil.copytree(trained, out)
    [target] = victims(tmp_path, [name]).values()
    path = os.path.join(out, name)
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
    if how == "link":
        plant(out, name, target)
    elif how == "hard link":
        os.link(target, path)
    elif how == "foreign":
        shutil.copyfile(target, path)
    else:
        target.unlink()
        target.mkdir()
        plant(out, name, target)
    [line] = error_lines(run(tool, tiny_opts(data_dir, out, **NO_EVAL), check=False))
    assert line.startswith(f"error: {path}: "), line
    expected = {"link": "is a symbolic link", "hard link": "has 2 hard links", "foreign": "not a run lock",
                "folder link": "is a symbolic link"}[how]
    assert expected in line, line
    if how == "folder link":
        assert os.listdir(target) == []
    else:
        assert_unchanged({name: target})
        assert how != "foreign" or open(path).read() == f"a user's file, not {name}\n"


def read_only(folder, argv):
    """``argv`` run with ``folder`` mounted read-only (a user and mount namespace: works as root,
    where permissions do not stop writes); skips where the sandbox has no namespaces."""
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$0" "$0"', folder],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no read-only bind mount here (unshare -rm: {probe.stderr.strip()})")
    return subprocess.run(["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', folder,
                           sys.executable, *argv], capture_output=True, text=True, timeout=600)


def test_a_finished_run_on_a_read_only_file_system(data_dir, tmp_path, trained):
    before = {name: open(os.path.join(trained, name), "rb").read() for name in RUN_FILES}
    video = os.path.join(data_dir, "videos", sorted(os.listdir(os.path.join(data_dir, "videos")))[0])
    video = os.path.join(video, sorted(os.listdir(video))[0])
    tested = read_only(trained, [os.path.join(TOOLS, "test_net.py"), *tiny_opts(data_dir, trained)])
    [line] = error_lines(tested)
    assert f"OUTPUT_DIR={trained!r}: cannot write there (Read-only file system)" in line
    assert "TEST.CHECKPOINT_FILE_PATH" in line
    elsewhere = str(tmp_path / "test")
    checkpoint = os.path.join(trained, "checkpoints", "checkpoint_epoch_00001.pyth")
    tested = read_only(trained, [os.path.join(TOOLS, "test_net.py"), *tiny_opts(
        data_dir, elsewhere, **{"TEST.CHECKPOINT_FILE_PATH": checkpoint})])
    assert tested.returncode == 0 and "test top1" in tested.stdout, tested.stderr[-2000:]
    predicted = read_only(trained, [os.path.join(TOOLS, "predict.py"), "--run", trained, video])
    assert predicted.returncode == 0 and predicted.stdout.startswith(video), predicted.stderr[-2000:]
    drawn = read_only(trained, [os.path.join(TOOLS, "visualize.py"), "--run", trained, video])
    [line] = error_lines(drawn)
    assert line.startswith(f"error: {trained}/attention_maps/") and "cannot write (Read-only file system)" in line
    maps = str(tmp_path / "maps")
    drawn = read_only(trained, [os.path.join(TOOLS, "visualize.py"), "--run", trained, video, "--out-dir", maps])
    assert drawn.returncode == 0 and os.listdir(maps), drawn.stderr[-2000:]
    assert {name: open(os.path.join(trained, name), "rb").read() for name in RUN_FILES} == before


@pytest.mark.parametrize("tool, extra, message", [
    ("train_net.py", {}, "config error: command line: OUTPUT_DIR='{out}': is a file, not a folder"),
    ("test_net.py", {}, "error: OUTPUT_DIR='{out}': is a file, not a run folder"),
    ("test_net.py", {"TEST.CHECKPOINT_FILE_PATH": "{ckpt}"}, "OUTPUT_DIR='{out}': is a file, not a folder"),
])
def test_an_output_dir_that_is_a_file(data_dir, tmp_path, trained, tool, extra, message):
    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    ckpt = os.path.join(trained, "checkpoints", "checkpoint_epoch_00001.pyth")
    extra = {k: v.format(ckpt=ckpt) for k, v in extra.items()}
    [line] = error_lines(run(tool, tiny_opts(data_dir, str(out), **extra), check=False))
    assert message.format(out=out) in line, line
    assert out.read_text() == "mine\n"


def test_an_output_dir_that_cannot_be_written(data_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (root ignores permissions, so no other way)")
    try:
        [line] = error_lines(run("train_net.py", tiny_opts(data_dir, str(out), **NO_EVAL), check=False))
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=True)
    assert f"OUTPUT_DIR='{out}': cannot write there (Operation not permitted)" in line, line
    assert os.listdir(out) == []


def test_test_refuses_a_checkpoint_of_another_network(data_dir, tmp_path, trained):
    out = str(tmp_path / "test")
    checkpoint = os.path.join(trained, "checkpoints", "checkpoint_epoch_00001.pyth")
    result = run("test_net.py", tiny_opts(data_dir, out, **{"TEST.CHECKPOINT_FILE_PATH": checkpoint,
                                                            "CGNL.KERNEL": "gaussian", "MODEL.DROPOUT_RATE": 0.1}),
                 check=False)
    [line] = error_lines(result)
    assert line.startswith(f"error: {checkpoint}: trained as another network") and \
        "CGNL.KERNEL='dot' in the checkpoint but 'gaussian' now" in line and "DROPOUT" not in line, line
    assert not os.path.exists(out)


def cosine(base, epoch, max_epoch):
    return base * (1 + math.cos(math.pi * epoch / max_epoch)) / 2


def test_a_resume_with_another_batch_continues_the_schedule(data_dir, tmp_path):
    out = str(tmp_path / "run")
    run("train_net.py", tiny_opts(data_dir, out, **{**NO_EVAL, "SOLVER.MAX_EPOCH": 3}, **{"TRAIN.BATCH_SIZE": 2}))
    shutil.copy(os.path.join(out, "checkpoints", "checkpoint_epoch_00001.pyth"), str(tmp_path))
    for name in os.listdir(os.path.join(out, "checkpoints")):
        os.remove(os.path.join(out, "checkpoints", name))
    shutil.copy(str(tmp_path / "checkpoint_epoch_00001.pyth"), os.path.join(out, "checkpoints"))
    run("train_net.py", tiny_opts(data_dir, out, **{**NO_EVAL, "SOLVER.MAX_EPOCH": 3}, **{"TRAIN.BATCH_SIZE": 4}))
    lrs = {}
    for record in records(out, "train_iter"):
        lrs.setdefault(record["epoch"], []).append(record["lr"])
    # 8 videos: 4 steps an epoch at batch 2 (epoch 1), then 2 at batch 4 (epochs 2 and 3).
    expected = {1: [0, 0.25, 0.5, 0.75], 2: [1, 1.5], 3: [2, 2.5]}
    assert lrs == {e: pytest.approx([cosine(0.05, p, 3) for p in ps]) for e, ps in expected.items()}


def test_sigterm_during_predict_out_video_leaves_no_temp_file(tmp_path, trained):
    video = str(tmp_path / "long.mp4")
    levels = np.arange(300, dtype=np.uint8)[:, None, None, None]
    write_video(video, np.ascontiguousarray(np.broadcast_to(levels, (300, 96, 128, 3))))
    folder = tmp_path / "out"
    folder.mkdir()
    process = subprocess.Popen([sys.executable, os.path.join(TOOLS, "predict.py"), "--run", trained, video,
                                "--out-video", str(folder / "labelled.mp4")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not any(name.endswith(".tmp") for name in os.listdir(folder)):
        assert process.poll() is None and time.time() < deadline, "no temp file seen"
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGTERM, process.stderr.read()[-2000:]
    assert os.listdir(folder) == []
