"""Config loading: defaults, _BASE_ inheritance, overrides and their errors."""

from pathlib import Path

import pytest

from cgnl_video.config import get_cfg, load_config
from cgnl_video.errors import ConfigError


def write(path, text):
    path.write_text(text)
    return str(path)


def test_get_cfg_returns_an_independent_copy():
    cfg = get_cfg()
    cfg.MODEL.NUM_CLASSES = 3
    assert get_cfg().MODEL.NUM_CLASSES == 400


def test_base_inheritance_then_overrides(tmp_path):
    write(tmp_path / "base.yaml", "MODEL:\n  NUM_CLASSES: 200\nRESNET:\n  DEPTH: 101\n")
    child = write(tmp_path / "child.yaml", "_BASE_: base.yaml\nRESNET:\n  DEPTH: 18\n")
    cfg = load_config(child, ["CGNL.GROUPS", "4"])
    assert (cfg.MODEL.NUM_CLASSES, cfg.RESNET.DEPTH, cfg.CGNL.GROUPS) == (200, 18, 4)
    assert cfg.is_frozen()


@pytest.mark.parametrize("text, message", [
    ("MODEL:\n  NUM_CLASES: 3\n", r"bad\.yaml: .*MODEL\.NUM_CLASES"),
    ("RESNET:\n  DEPTH: fifty\n", r"bad\.yaml: .*RESNET\.DEPTH"),
    ("MODEL: [unclosed\n", r"bad\.yaml: not valid YAML"),
])
def test_bad_files_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path / "bad.yaml", text))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("opts, message", [
    (["SOLVER.NOPE", "1"], "SOLVER.NOPE"),
    (["CGNL.GROUPS", "eight"], "CGNL.GROUPS=eight"),
    (["CGNL.GROUPS"], "'CGNL.GROUPS' has no value"),
])
def test_bad_overrides_name_the_key(opts, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, opts)


def test_the_ablation_rows_start_from_the_pretraining_runs_last_checkpoint():
    """configs/demo/relation_finetune.yaml names the file motion64_pretrain.yaml's run writes last,
    and the two differ from their bases only where docs/DEMO.md says."""
    from cgnl_video.engine.checkpoint import checkpoint_path

    demo = Path(__file__).resolve().parents[1] / "configs" / "demo"
    pretrain = load_config(str(demo / "motion64_pretrain.yaml"))
    finetune = load_config(str(demo / "relation_finetune.yaml"))
    expected = checkpoint_path(pretrain.OUTPUT_DIR, pretrain.SOLVER.MAX_EPOCH)
    assert finetune.TRAIN.CHECKPOINT_FILE_PATH == expected and not finetune.TRAIN.FROM_SCRATCH
    assert pretrain.NONLOCAL.LOCATION == [[], [], [], []] and finetune.NONLOCAL.TYPE == "cgnl"
    assert finetune.MODEL.NUM_CLASSES == 2 and pretrain.MODEL.NUM_CLASSES == 6
    assert pretrain.DATA.TEST_CROP_SIZE == finetune.DATA.TEST_CROP_SIZE == 64
