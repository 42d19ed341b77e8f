"""tools/model_info.py end to end."""

import os

import pytest
from conftest import run_tool

from cgnl_video.config import load_config
from cgnl_video.models import build_model
from cgnl_video.models.complexity import count_params

ROOT = os.path.join(os.path.dirname(__file__), "..")
CGNL1 = os.path.join(ROOT, "configs", "MiniKinetics", "I3D_8x8_R50_CGNL1.yaml")
SMALL = ["RESNET.DEPTH", "18", "NONLOCAL.LOCATION", "[[], [], [0], []]",
         "DATA.TEST_CROP_SIZE", "64", "DATA.TRAIN_CROP_SIZE", "64"]


def model_info(*args):
    return run_tool("model_info.py", args, check=False, timeout=300)


def test_stage_table_totals_match_the_model():
    result = model_info("--cfg", CGNL1, *SMALL)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("input 3x8x64x64")
    names = [line.split("|")[1].strip() for line in lines[3:]]
    assert names == ["stem", "res2", "pool1", "res3", "res4", "res5", "head", "**total**"]
    assert lines[7].split("|")[2].strip() == "256 x 4 x 4 x 4"  # res4 of R18 at 64 px
    params = count_params(build_model(load_config(CGNL1, SMALL))) / 1e6
    assert float(lines[-1].split("|")[3]) == pytest.approx(params, abs=0.01)


def test_summary_has_one_row_per_config(tmp_path):
    (tmp_path / "base.yaml").write_text("RESNET:\n  DEPTH: 18\n")
    (tmp_path / "cgnl.yaml").write_text("_BASE_: base.yaml\nNONLOCAL:\n  LOCATION: [[], [], [0], []]\n")
    result = model_info("--summary", str(tmp_path), "DATA.TEST_CROP_SIZE", "64")
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[2:]
    assert [r.split("|")[1].strip() for r in rows] == ["base", "cgnl"]
    assert float(rows[1].split("|")[2]) > float(rows[0].split("|")[2])  # params
    assert [r.split("|")[3].strip() for r in rows] == ["8x224x224"] * 2
    assert [r.split("|")[5].strip() for r in rows] == ["8x64x64"] * 2
    assert float(rows[1].split("|")[6]) > float(rows[0].split("|")[6])  # GFLOPs at the test view


@pytest.mark.parametrize("opts, key", [(["CGNL.GROUP", "4"], "CGNL.GROUP"),
                                       (["RESNET.DEPTH", "18"], "NONLOCAL.LOCATION")])
def test_bad_config_stops_with_the_key_name(opts, key):
    result = model_info("--cfg", CGNL1, *opts)
    assert result.returncode != 0
    assert key in result.stderr and "Traceback" not in result.stderr


def test_summary_counts_the_32_frame_stem(tmp_path):
    (tmp_path / "a_pyslowfast.yaml").write_text(
        "RESNET:\n  DEPTH: 18\nDATA:\n  NUM_FRAMES: 32\n  TRAIN_CROP_SIZE: 64\n  TRAIN_JITTER_SCALES: [64, 80]\n")
    (tmp_path / "b_reference.yaml").write_text(
        "_BASE_: a_pyslowfast.yaml\nRESNET:\n  STEM_TEMPORAL_STRIDE: 2\n  STEM_POOL_KERNEL: [2, 3, 3]\n"
        "  STEM_POOL_STRIDE: [2, 2, 2]\n  STEM_POOL_PADDING: [0, 0, 0]\n")
    result = model_info("--summary", str(tmp_path), "DATA.TEST_CROP_SIZE", "64")
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[2:]
    assert [r.split("|")[2] for r in rows][0] == [r.split("|")[2] for r in rows][1]  # same params
    pyslowfast, reference = (float(r.split("|")[4]) for r in rows)
    # res2 at T = 8 instead of 32, res3-res5 at 4 instead of 16: about a quarter of the flops
    assert 0.2 < reference / pyslowfast < 0.35
