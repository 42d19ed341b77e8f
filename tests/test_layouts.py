"""One meaning of the batch: the same config and seed train the same model in every layout.

Through the real tools: 1 process (0 or 2 loader workers), 1 process accumulating 2
micro-batches, 2 torchrun processes (gloo), 2 processes accumulating 2 -- all with the
global batch ``TRAIN.BATCH_SIZE 4``, BatchNorm statistics frozen and dropout 0 (the only
legitimate sources of difference). Weights must agree up to floating-point reduction order.
"""

import json
import os
import subprocess

import pytest
from conftest import run_tool, tiny_opts, torchrun, try_tool

from cgnl_video.engine.checkpoint import checkpoint_path, load_file

TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")
RELATIVE_TOLERANCE = 1e-4
LAYOUTS = {
    "2 loader workers": (1, {"DATA_LOADER.NUM_WORKERS": 2}),
    "accumulation 2": (1, {"TRAIN.ACCUMULATION_STEPS": 2}),
    "2 processes": (2, {}),
    "2 processes x accumulation 2": (2, {"TRAIN.ACCUMULATION_STEPS": 2}),
}
EPOCHS = 2


def train(data_dir, output_dir, nproc, extra):
    opts = tiny_opts(data_dir, output_dir, **{
        "TRAIN.BATCH_SIZE": 4, "BN.FREEZE": True, "MODEL.DROPOUT_RATE": 0.0, "SOLVER.MAX_EPOCH": EPOCHS,
        "TRAIN.EVAL_PERIOD": EPOCHS, "SOLVER.WARMUP_EPOCHS": 0.5, **extra})
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if nproc == 1:
        result = run_tool("train_net.py", opts, env=env)
    else:
        result = subprocess.run([*torchrun(nproc), os.path.join(TOOLS, "train_net.py"), *opts], capture_output=True,
                                text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    return load_file(checkpoint_path(output_dir, EPOCHS))["model"], result


def largest_relative_difference(expected, actual):
    assert expected.keys() == actual.keys()
    worst = 0.0
    for key, value in expected.items():
        if value.is_floating_point():
            scale = value.abs().max().clamp(min=1e-8)
            worst = max(worst, ((actual[key] - value).abs().max() / scale).item())
    return worst


def stats(output_dir, kind):
    with open(os.path.join(output_dir, "stats.jsonl")) as handle:
        return [r for r in map(json.loads, handle) if r["type"] == kind]


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("layout") / "one_process")
    return train(data_dir, out, 1, {}), out


@pytest.mark.slow
@pytest.mark.parametrize("name", LAYOUTS)
def test_every_layout_trains_the_same_model(name, reference, data_dir, tmp_path):
    (expected, _), reference_dir = reference
    nproc, extra = LAYOUTS[name]
    actual, result = train(data_dir, str(tmp_path / "run"), nproc, extra)
    difference = largest_relative_difference(expected, actual)
    print(f"{name}: largest relative weight difference {difference:.2e}")
    assert difference <= RELATIVE_TOLERANCE, f"{name}: {difference}"
    # the weights moved: the comparison is not between two untrained models
    initial_scale = max(v.abs().max().item() for v in expected.values() if v.is_floating_point())
    assert initial_scale > 0
    epoch = stats(str(tmp_path / "run"), "train_epoch")[-1]
    assert epoch["global_batch"] == 4 and epoch["world_size"] == nproc
    assert epoch["batch_per_process"] * nproc * epoch["accumulation_steps"] == 4
    val, reference_val = stats(str(tmp_path / "run"), "val")[-1], stats(reference_dir, "val")[-1]
    assert val["num_videos"] == val["num_tested"] == reference_val["num_tested"] == 4  # no padded duplicates
    assert "global batch 4" in result.stderr


@pytest.mark.slow
def test_the_reference_run_moved_the_weights(reference, data_dir, tmp_path):
    (trained, _), _ = reference
    # One epoch with another learning rate gives other weights: the tolerance can tell runs apart.
    other, _ = train(data_dir, str(tmp_path / "other"), 1, {"SOLVER.BASE_LR": 0.04})
    assert largest_relative_difference(trained, other) > 100 * RELATIVE_TOLERANCE


def test_a_batch_that_does_not_divide_is_one_config_error(data_dir, tmp_path):
    opts = tiny_opts(data_dir, str(tmp_path / "run"), **{"TRAIN.BATCH_SIZE": 3, "TRAIN.ACCUMULATION_STEPS": 2})
    result = try_tool("train_net.py", opts, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "TRAIN.BATCH_SIZE=3" in result.stderr and "TRAIN.ACCUMULATION_STEPS 2" in result.stderr
