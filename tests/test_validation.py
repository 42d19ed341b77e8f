"""Config validation: every bad setting is one ConfigError naming its file and key, in-process
and through the real training tool, before anything is written to OUTPUT_DIR."""

import os
import shutil

import pytest
import yaml
from conftest import run_tool, tiny_opts
from test_run_safety import unpicklable

from cgnl_video.config import load_config
from cgnl_video.config.loading import flatten
from cgnl_video.config.validation import stage_widths
from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.engine.preflight import validate_inputs
from cgnl_video.errors import ConfigError
from cgnl_video.models import CGNLBlock, build_model

TRAIN_NET = os.path.join(os.path.dirname(__file__), "..", "tools", "train_net.py")


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("key, value", [
    ("TRAIN.CHECKPOINT_PERIOD", "0"), ("TRAIN.BATCH_SIZE", "0"), ("TRAIN.BATCH_SIZE", "-2"),
    ("TEST.BATCH_SIZE", "0"), ("DATA.NUM_FRAMES", "0"), ("DATA.SAMPLING_RATE", "-1"),
    ("TRAIN.LOG_PERIOD", "0"), ("TRAIN.EVAL_PERIOD", "-1"), ("DATA_LOADER.NUM_WORKERS", "-1"),
    ("TEST.MAX_VIEWS_PER_BATCH", "0"), ("TEST.NUM_ENSEMBLE_VIEWS", "0"),
    ("TEST.NUM_SPATIAL_CROPS", "0"), ("DATA.DECODING_BACKEND", "opencv"),
    ("TEST.ENSEMBLE_METHOD", "mean"), ("SOLVER.LR_POLICY", "linear"),
    ("TRAIN.MIXED_PRECISION", "fp8"), ("DATA.TRAIN_JITTER_SCALES", "[300, 256]"),
    ("RESNET.DEPTH", "42"), ("SOLVER.LABEL_SMOOTHING", "1.5"),
])
def test_bad_values_name_the_command_line_and_key(key, value):
    with pytest.raises(ConfigError, match=rf"^command line: {key}=.*{value.strip('[]').split(',')[0]}.*expected"):
        load_config(None, [key, value])


def test_a_bad_value_names_the_file_of_the_chain_that_set_it(tmp_path):
    write(tmp_path / "base.yaml", "TRAIN:\n  LOG_PERIOD: 0\n")
    child = write(tmp_path / "child.yaml", "_BASE_: base.yaml\nTRAIN:\n  BATCH_SIZE: 4\n")
    with pytest.raises(ConfigError, match=r"base\.yaml: TRAIN\.LOG_PERIOD=0: expected >= 1"):
        load_config(child)
    with pytest.raises(ConfigError, match=r"^command line: TRAIN\.BATCH_SIZE=0"):
        load_config(child, ["TRAIN.BATCH_SIZE", "0"])


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "_BASE_: a.yaml\n"},
     r"a\.yaml: _BASE_ cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml$"),
    ({"a.yaml": "_BASE_: gone.yaml\n"}, r"gone\.yaml: config file not found \(_BASE_ of .*a\.yaml\)"),
    ({"a.yaml": "- TRAIN.BATCH_SIZE\n- 4\n"}, r"a\.yaml: expected a mapping .* got a list"),
    ({"a.yaml": ""}, r"a\.yaml: empty config file"),
    ({"a.yaml": "# only a comment\n"}, r"a\.yaml: empty config file"),
    ({"a.yaml": "_BASE_: [x.yaml]\n"}, r"a\.yaml: _BASE_=\['x.yaml'\]: expected a file name"),
])
def test_bad_files_are_one_error_naming_the_file(tmp_path, files, message):
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(tmp_path / "a.yaml"))


@pytest.fixture
def data_copy(data_dir, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    return copy


@pytest.mark.parametrize("damage, extra, message", [
    (None, {"TRAIN.BATCH_SIZE": 9}, r"train\.csv: TRAIN\.BATCH_SIZE=9: expected <= 8"),
    (lambda d: (d / "train.csv").write_text(""), {}, r"train\.csv: DATA\.PATH_TO_DATA_DIR=.*no videos listed"),
    (lambda d: (d / "train.csv").unlink(), {}, r"train\.csv: DATA\.PATH_TO_DATA_DIR=.*no train list"),
    (lambda d: (d / "val.csv").write_bytes(b"a.mp4 0\n\xe9t\xe9.mp4 1\n"), {},
     r"val\.csv:2: DATA\.PATH_TO_DATA_DIR=.*not UTF-8"),
    (lambda d: unpicklable(d / "r50.pth"), {"TRAIN.CHECKPOINT_INFLATE": "{data}/r50.pth"},
     r"r50\.pth: TRAIN\.CHECKPOINT_INFLATE=.*refused, it needs unsafe unpickling"),
    (None, {"TRAIN.CHECKPOINT_INFLATE": "{data}/none.pth"}, r"none\.pth: TRAIN\.CHECKPOINT_INFLATE=.*not found"),
    (lambda d: (d / "c.pyth").write_bytes(b"junk"), {"TRAIN.CHECKPOINT_FILE_PATH": "{data}/c.pyth"},
     r"c\.pyth: TRAIN\.CHECKPOINT_FILE_PATH=.*unreadable"),
])
def test_bad_inputs_are_one_error_naming_file_and_key(data_copy, tmp_path, damage, extra, message):
    if damage:
        damage(data_copy)
    extra = {k: v.format(data=data_copy) if isinstance(v, str) else v for k, v in extra.items()}
    cfg = load_config(None, tiny_opts(str(data_copy), str(tmp_path / "run"), **extra))
    with pytest.raises(ConfigError, match=message):
        validate_inputs(cfg, "train")
    assert not (tmp_path / "run").exists()


def test_test_inputs_need_the_test_list_only(data_copy, tmp_path):
    (data_copy / "train.csv").unlink()
    checkpoint = str(tmp_path / "weights.pyth")
    ckpt.atomic_save({"model": {}}, checkpoint)
    cfg = load_config(None, tiny_opts(str(data_copy), str(tmp_path / "run"),
                                      **{"TEST.CHECKPOINT_FILE_PATH": checkpoint}))
    validate_inputs(cfg, "test")
    (data_copy / "test.csv").write_text("\n")
    with pytest.raises(ConfigError, match=r"test\.csv: .*no videos listed"):
        validate_inputs(cfg, "test")


def train_net(data_dir, output_dir, setting: str, tmp_path, env=None):
    """``tools/train_net.py --cfg FILE`` with ``setting`` (YAML) in FILE and the tiny run's other
    keys on the command line; returns (the process, FILE)."""
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(setting)
    in_file = set(flatten(yaml.safe_load(setting)))
    pairs = tiny_opts(data_dir, output_dir)
    opts = [v for k, value in zip(pairs[0::2], pairs[1::2]) if k not in in_file for v in (k, value)]
    result = run_tool(TRAIN_NET, ["--cfg", str(cfg_file), *opts], check=False, timeout=300,
                      env={**os.environ, **(env or {})})
    return result, str(cfg_file)


def assert_one_line(result, cfg_file, message):
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"config error: {cfg_file}: ") and message in lines[0], lines[0]


@pytest.mark.parametrize("setting, message", [
    ("BN: {NORM_TYPE: groupnorm}", "BN.NORM_TYPE='groupnorm': expected one of ('batchnorm', 'sync_batchnorm')"),
    ("BN: {USE_PRECISE_STATS: True, FREEZE: True}",
     "BN.FREEZE=True: expected False with BN.USE_PRECISE_STATS=True"),
    ("BN: {USE_PRECISE_STATS: True, NUM_BATCHES_PRECISE: 0}",
     "BN.NUM_BATCHES_PRECISE=0: expected >= 1 with BN.USE_PRECISE_STATS=True"),
    ("CGNL: {GROUPS: 3}",
     "CGNL.GROUPS=3: expected a divisor of the inner width of every stage with a CGNL block (res3: 8, res4: 16)"),
    ("TRAIN: {BATCH_SIZE: 2, ACCUMULATION_STEPS: 4}",
     "TRAIN.BATCH_SIZE=2: expected a multiple of TRAIN.ACCUMULATION_STEPS 4"),
    ("TRAIN: {MIXED_PRECISION: fp8}", "TRAIN.MIXED_PRECISION='fp8': expected one of ('none', 'bf16', 'fp16')"),
])
def test_a_config_mistake_stops_training_in_one_line_naming_key_and_file(data_dir, tmp_path, setting, message):
    out = tmp_path / "run"
    result, cfg_file = train_net(data_dir, str(out), setting, tmp_path)
    assert_one_line(result, cfg_file, message)
    assert not out.exists()


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("setting, env, message", [
    ("BN: {NORM_TYPE: sync_batchnorm}", {},
     "BN.NORM_TYPE='sync_batchnorm': needs several GPU processes under torchrun, but runs "),
    ("TRAIN: {BATCH_SIZE: 2}", {"WORLD_SIZE": "3"},
     "TRAIN.BATCH_SIZE=2 (the global batch) must be a positive multiple of world size 3 x "
     "TRAIN.ACCUMULATION_STEPS 1 = 3"),
])
def test_a_mistake_for_these_processes_stops_training_before_writing(data_dir, tmp_path, setting, env, message):
    """Rules on the processes of the run (GPUs, torchrun's WORLD_SIZE): checked by preflight,
    named like the value checks; a previous run's folder stays as it was."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("a previous run\n")
    before = snapshot(out)
    result, cfg_file = train_net(data_dir, str(out), setting, tmp_path, env)
    assert_one_line(result, cfg_file, message)
    assert snapshot(out) == before


@pytest.mark.parametrize("depth", [18, 50])
def test_the_widths_checked_are_those_of_the_built_model(depth):
    opts = ["RESNET.DEPTH", str(depth), "RESNET.WIDTH_PER_GROUP", "4", "NONLOCAL.LOCATION", "[[0], [0], [0], [0]]",
            "CGNL.GROUPS", "1"]
    model = build_model(load_config(None, opts))
    inner = [block.theta.out_channels for block in model.modules() if isinstance(block, CGNLBlock)]
    assert inner == [width // 2 for width in stage_widths(depth, 4)]
