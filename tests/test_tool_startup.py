"""Tools answer --help and refuse a bad setting before importing any framework (fast, one line).

Checked by the modules imported (``python -X importtime``), not by timing."""

import os
import subprocess
import sys

import pytest

TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")
HEAVY = ("torch", "torchvision", "pytorchvideo", "decord", "onnxruntime")


def imported_modules(stderr: str) -> set:
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def run(tool, *args):
    return subprocess.run([sys.executable, "-X", "importtime", os.path.join(TOOLS, tool), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("tool", ["train_net.py", "test_net.py", "predict.py", "export.py", "visualize.py",
                                  "model_info.py"])
def test_help_imports_no_framework(tool):
    result = run(tool, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout
    assert not imported_modules(result.stderr) & set(HEAVY)
    assert "cgnl_video.config.loading" in imported_modules(result.stderr) or tool == "visualize.py"


@pytest.mark.parametrize("tool, args", [
    ("train_net.py", ["SOLVER.BASE_LR", "-1.0"]),
    ("test_net.py", ["TEST.NUM_ENSEMBLE_VIEWS", "0"]),
    ("predict.py", ["--cfg", "configs/demo/synthetic_cgnl.yaml", "video.mp4", "DATA.NUM_FRAMES", "0"]),
    ("export.py", ["--format", "onnx", "--out", "x.onnx", "CGNL.KERNEL", "cosine"]),
])
def test_a_bad_setting_is_one_line_before_any_framework(tool, args):
    result = run(tool, *args)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("config error: command line: ")
    assert not imported_modules(result.stderr) & set(HEAVY)
