"""Two CPU processes with gloo under torchrun: disjoint data, identical final weights."""

import json
import os
import socket
import subprocess
import sys

from conftest import tiny_opts

TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_see_disjoint_data_and_end_with_identical_weights(data_dir, tmp_path):
    report = tmp_path / "report.json"
    out = str(tmp_path / "run")
    opts = tiny_opts(data_dir, out, **{"SOLVER.MAX_EPOCH": 1, "TRAIN.EVAL_PERIOD": 1})
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               os.path.join(os.path.dirname(__file__), "ddp_worker.py"), str(report), *opts]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = json.loads(report.read_text())["ranks"]
    assert len(ranks) == 2
    first, second = (set(r["seen"]) for r in ranks)
    assert first and second and not first & second
    assert len(first | second) == 8  # the whole train list (8 videos), split in two
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert os.path.exists(os.path.join(out, "checkpoints", "checkpoint_epoch_00001.pyth"))

    torchrun = command[:command.index(os.path.join(os.path.dirname(__file__), "ddp_worker.py"))]
    torchrun[torchrun.index("--master_port") + 1] = str(free_port())
    test = subprocess.run([*torchrun, os.path.join(TOOLS, "test_net.py"), *opts],
                          capture_output=True, text=True, timeout=600, env=env)
    assert test.returncode == 0, test.stderr[-3000:]
    assert test.stdout.count("test top1") == 1  # rank 0 reports
    results = json.loads(open(os.path.join(out, "test_results.json")).read())
    assert results["num_videos"] == results["num_tested"] == 4  # each video once over 2 ranks
    with open(os.path.join(out, "predictions.csv")) as handle:
        assert len(handle.readlines()) == 1 + 4
