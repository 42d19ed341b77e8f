"""Config validation in-process: every bad setting is one ConfigError naming its file and key."""

import shutil

import pytest
from conftest import tiny_opts
from test_run_safety import unpicklable

from cgnl_video.errors import ConfigError
from cgnl_video.config import load_config
from cgnl_video.engine.preflight import validate_inputs


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
    cfg = load_config(None, tiny_opts(str(data_copy), str(tmp_path / "run")))
    validate_inputs(cfg, "test")
    (data_copy / "test.csv").write_text("\n")
    with pytest.raises(ConfigError, match=r"test\.csv: .*no videos listed"):
        validate_inputs(cfg, "test")
