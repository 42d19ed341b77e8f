"""Run safety through the real tools: one run per OUTPUT_DIR, resume checks, checksums,
orphan temp files, stats.jsonl repair, disk full, bad settings stopped before any work."""

import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_opts
from test_checkpoint import flip_tensor_bytes
from test_engine_e2e import TOOLS, records, run

from cgnl_video.engine.checkpoint import checkpoint_path, load_file

NO_EVAL = {"TRAIN.EVAL_PERIOD": 0}


def unpicklable(path):
    """A file that only a full (unsafe) unpickling reads: an object weights_only refuses."""
    torch.save({"conv1.weight": random.Random()}, str(path))


def start(tool, opts):
    return subprocess.Popen([sys.executable, os.path.join(TOOLS, tool), *opts],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(condition, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def error_lines(result):
    """The tool's own error lines; no traceback allowed."""
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith(("error:", "config error:"))]


def lock_holder(out):
    path = os.path.join(out, ".lock")
    return json.loads(open(path).read() or "{}") if os.path.exists(path) else {}


@pytest.mark.slow
def test_one_run_per_output_dir_and_a_killed_runs_lock_is_taken_over(data_dir, tmp_path):
    out = str(tmp_path / "run")
    first = start("train_net.py", tiny_opts(data_dir, out, **NO_EVAL, **{  # its workers outlive a SIGKILL
        "SOLVER.MAX_EPOCH": 50, "DATA_LOADER.NUM_WORKERS": 1}))
    try:
        wait_for(lambda: lock_holder(out).get("pid") == first.pid)
        for tool in ("train_net.py", "test_net.py"):
            began = time.time()
            lines = error_lines(run(tool, tiny_opts(data_dir, out, **NO_EVAL), check=False))
            assert len(lines) == 1 and f"pid {first.pid} on host {socket.gethostname()}" in lines[0], lines
            assert "in use by another run" in lines[0] and time.time() - began < 60
        assert first.poll() is None, "the first run must still be running"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert lock_holder(out)["pid"] == first.pid  # left behind by the killed run
    taken = run("train_net.py", tiny_opts(data_dir, out, **NO_EVAL, **{"SOLVER.MAX_EPOCH": 1}))
    assert f"taking over the lock of a run that did not end cleanly (pid {first.pid}" in taken.stderr
    assert lock_holder(out) == {}  # emptied by the clean exit


def test_a_busy_folder_is_named_before_what_it_lacks(data_dir, tmp_path):
    """test_net reads the run's checkpoints before locking: a folder held by a run that has
    written none yet is reported as busy, not as lacking a checkpoint."""
    out = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import os, time; from cgnl_video.engine.run_lock import acquire_run_lock; "
        f"os.makedirs({out!r}); acquire_run_lock({out!r}); print('locked', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        [line] = error_lines(run("test_net.py", tiny_opts(data_dir, out), check=False))
        assert f"in use by another run (pid {holder.pid} on host {socket.gethostname()}" in line, line
        assert os.listdir(out) == [".lock"]
    finally:
        holder.kill()
        holder.wait()


def test_resume_with_another_architecture_stops_before_writing(trained_run, data_dir, tmp_path):
    out = trained_run.copy(tmp_path / "run").out
    before = {name: open(os.path.join(out, name), "rb").read() for name in ("config.yaml", "stats.jsonl")}
    result = run("train_net.py", tiny_opts(data_dir, out, **NO_EVAL, **{
        "SOLVER.MAX_EPOCH": 2, "RESNET.DEPTH": 34, "CGNL.GROUPS": 4}), check=False)
    [line] = error_lines(result)
    assert "checkpoint_epoch_00001.pyth: made with another config" in line
    assert "RESNET.DEPTH=18 in the checkpoint but 34 now" in line and "CGNL.GROUPS=2 in the checkpoint but 4" in line
    for name, data in before.items():
        assert open(os.path.join(out, name), "rb").read() == data, name
    assert not os.path.exists(checkpoint_path(out, 2))


def test_flipped_checkpoint_is_skipped_and_orphan_temp_files_removed(resumed_run, data_dir, tmp_path):
    out = resumed_run.copy(tmp_path / "run").out
    newest = checkpoint_path(out, 2)
    flip_tensor_bytes(newest)
    folder = os.path.dirname(newest)
    orphans = [os.path.join(folder, ".checkpoint_epoch_00003.pyth.4242.0123abcd.tmp"),
               os.path.join(out, ".stats.jsonl.4242.89abcdef.tmp")]
    others = [os.path.join(folder, "notes.tmp"), os.path.join(out, ".mine.tmp")]
    for path in orphans + others:
        open(path, "w").write("x")
    resumed = run("train_net.py", tiny_opts(data_dir, out, **NO_EVAL))
    assert "skipping damaged checkpoint" in resumed.stderr and "checksum mismatch" in resumed.stderr
    assert "checkpoint_epoch_00001" in resumed.stderr.split("resumed from")[1]
    assert load_file(newest)["epoch"] == 2 and os.path.exists(newest + ".prev")
    assert not any(map(os.path.exists, orphans)) and all(map(os.path.exists, others))
    assert resumed.stderr.count("removed a temp file left by an interrupted run") == 2


def test_torn_stats_line_is_tolerated_and_resumes_do_not_duplicate_records(trained_run, data_dir, tmp_path):
    out = trained_run.copy(tmp_path / "run").out  # 1 epoch, validated
    stats = os.path.join(out, "stats.jsonl")
    with open(stats, "a") as handle:  # epoch 2 logged, killed before its checkpoint, mid-line
        handle.write(json.dumps({"type": "train_iter", "epoch": 2, "iter": 1, "loss": 1.0}) + "\n")
        handle.write('{"type": "train_epoch", "epo')
    torn = len(open(stats).read().splitlines())
    resumed = run("train_net.py", tiny_opts(data_dir, out, **{"SOLVER.MAX_EPOCH": 3}))
    assert f"stats.jsonl:{torn}: skipping a damaged line" in resumed.stderr
    assert [r["epoch"] for r in records(out, "train_epoch")] == [1, 2, 3]
    assert [r["epoch"] for r in records(out, "val")] == [1, 2, 3]
    iters = [(r["epoch"], r["iter"]) for r in records(out, "train_iter")]
    assert len(iters) == len(set(iters)) == 3 * 4
    assert open(stats + ".prev").read().endswith('"epo')  # the file as it was


def limit_file_size(size):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply


def test_disk_full_is_one_line_and_keeps_the_previous_checkpoint(trained_run, data_dir, tmp_path):
    out = trained_run.copy(tmp_path / "run").out
    first = checkpoint_path(out, 1)
    before, size = open(first, "rb").read(), os.path.getsize(first)
    opts = tiny_opts(data_dir, out, **NO_EVAL, **{"SOLVER.MAX_EPOCH": 2})
    result = subprocess.run([sys.executable, os.path.join(TOOLS, "train_net.py"), *opts], capture_output=True,
                            text=True, timeout=600, preexec_fn=limit_file_size(size // 2))
    [line] = error_lines(result)
    second = checkpoint_path(out, 2)
    assert line.startswith(f"error: {second}: cannot write (File too large): needs ")
    assert int(line.split("needs ")[1].split()[0]) > size // 2
    assert open(first, "rb").read() == before
    assert os.listdir(os.path.dirname(first)) == [os.path.basename(first)]  # no temp file left
    run("train_net.py", opts)
    assert [r["epoch"] for r in records(out, "train_epoch")] == [1, 2]


@pytest.mark.parametrize("tool, extra, files, message", [
    ("train_net.py", {"TRAIN.CHECKPOINT_PERIOD": 0}, {}, "command line: TRAIN.CHECKPOINT_PERIOD=0: expected >= 1"),
    ("train_net.py", {"TRAIN.BATCH_SIZE": 9}, {}, "train.csv: TRAIN.BATCH_SIZE=9: expected <= 8"),
    ("train_net.py", {"TRAIN.CHECKPOINT_INFLATE": "{tmp}/r50.pth"}, {"r50.pth": unpicklable},
     "r50.pth: TRAIN.CHECKPOINT_INFLATE="),
    ("test_net.py", {}, {"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "_BASE_: a.yaml\n"}, "a.yaml: _BASE_ cycle"),
    ("test_net.py", {"TEST.NUM_ENSEMBLE_VIEWS": 0}, {}, "TEST.NUM_ENSEMBLE_VIEWS=0: expected >= 1"),
])
def test_bad_settings_stop_the_tools_before_any_work(data_dir, tmp_path, tool, extra, files, message):
    out = str(tmp_path / "run")
    for name, content in files.items():
        content(tmp_path / name) if callable(content) else (tmp_path / name).write_text(content)
    cfg = ["--cfg", str(tmp_path / "a.yaml")] if "a.yaml" in files else []
    extra = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in extra.items()}
    [line] = error_lines(run(tool, cfg + tiny_opts(data_dir, out, **extra), check=False))
    assert line.startswith("config error: ") and message in line, line
    assert not os.path.exists(out)
