"""Two CPU processes with gloo under torchrun: disjoint data, identical final weights."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import tiny_opts, torchrun

from cgnl_video.engine.distributed import backend_config, check_collective_device, devices_served

TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")


@pytest.mark.slow
def test_two_processes_see_disjoint_data_and_end_with_identical_weights(data_dir, tmp_path):
    report = tmp_path / "report.json"
    out = str(tmp_path / "run")
    opts = tiny_opts(data_dir, out, **{"SOLVER.MAX_EPOCH": 1, "TRAIN.EVAL_PERIOD": 1})
    command = [*torchrun(2), os.path.join(os.path.dirname(__file__), "ddp_worker.py"), str(report), *opts]
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

    test = subprocess.run([*torchrun(2), os.path.join(TOOLS, "test_net.py"), *opts],
                          capture_output=True, text=True, timeout=600, env=env)
    assert test.returncode == 0, test.stderr[-3000:]
    assert test.stdout.count("test top1") == 1  # rank 0 reports
    results = json.loads(open(os.path.join(out, "test_results.json")).read())
    assert results["num_videos"] == results["num_tested"] == 4  # each video once over 2 ranks
    with open(os.path.join(out, "predictions.csv")) as handle:
        sharded = handle.read()
    assert len(sharded.splitlines()) == 1 + 4
    # exactly the numbers of one process on the same checkpoint
    single = str(tmp_path / "single")
    checkpoint = os.path.join(out, "checkpoints", "checkpoint_epoch_00001.pyth")
    one = subprocess.run([sys.executable, os.path.join(TOOLS, "test_net.py"),
                          *tiny_opts(data_dir, single, **{"TEST.CHECKPOINT_FILE_PATH": checkpoint})],
                         capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    single_results = json.loads(open(os.path.join(single, "test_results.json")).read())
    for key in ("top1", "top5", "mean_class_acc", "num_tested", "num_videos"):
        assert single_results[key] == results[key], key
    with open(os.path.join(single, "predictions.csv")) as handle:
        assert sorted(handle.read().splitlines()) == sorted(sharded.splitlines())


def test_the_group_has_a_backend_for_every_device_the_engine_hands_to_collectives():
    # On GPU machines the group is "cpu:gloo,cuda:nccl": the engine's metrics, counts, file
    # lists and RNG states are CPU tensors/objects, DDP's gradients CUDA tensors.
    gpu = backend_config(use_cuda=True)
    assert sorted(devices_served(gpu)) == ["cpu", "cuda"]
    check_collective_device(torch.zeros(3), gpu)
    check_collective_device(FakeCudaTensor(), gpu)
    assert devices_served(backend_config(use_cuda=False)) == ["cpu", "cuda"]  # gloo alone


def test_an_nccl_only_group_refuses_cpu_tensors_with_a_clear_error():
    # The old set-up (backend="nccl") crashed at the end of epoch 1 inside all_reduce.
    with pytest.raises(RuntimeError, match=r"collective on a cpu tensor, but the process group \('nccl'\)"):
        check_collective_device(torch.zeros(3), "nccl")


class FakeCudaTensor:
    """Stands for a CUDA tensor's device (no GPU here): only ``.device.type`` is read."""

    device = torch.device("cuda")
