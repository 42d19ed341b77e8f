"""Config loading: defaults, _BASE_ inheritance, overrides and their errors."""

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
