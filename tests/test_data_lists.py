"""The shipped data_lists/: the files match their README and their sources, make_lists reads
them by default, and a config whose lists are not made names the command that makes them."""

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cgnl_video.config import load_config
from cgnl_video.data_prep.list_makers import minikinetics, ucf101
from cgnl_video.data_prep.list_makers.locations import (
    KINETICS400_VAL_CSV,
    MINIKINETICS_TRAIN_IDS,
    MINIKINETICS_VAL_IDS,
    SHIPPED,
    UCF101_SPLITS_DIR,
)
from cgnl_video.datasets.lists import read_classes, read_video_list
from cgnl_video.engine.preflight import validate_inputs
from cgnl_video.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
DATA_LISTS = REPO / "data_lists"
SHARED = REPO.parent / "shared" / "data"
# shipped file -> its original in ../shared/data (the derived classes.txt have none)
ORIGINALS = {
    **{f"ucf101/ucfTrainTestlist/{name}": f"ucf101_splits/{name}" for name in
       ["classInd.txt"] + [f"{kind}list0{n}.txt" for kind in ("train", "test") for n in (1, 2, 3)]},
    "minikinetics/train_ytid_list.txt": "mini_kinetics200/train_ytid_list.txt",
    "minikinetics/val_ytid_list.txt": "mini_kinetics200/val_ytid_list.txt",
    "kinetics400/validate.csv": "kinetics400/validate.csv",
}
DERIVED = ["ucf101/classes.txt", "minikinetics/classes.txt"]
UCF_CONFIG = REPO / "configs" / "UCF101" / "I3D_8x8_R50_CGNL1_ft_split1.yaml"
MINI_CONFIG = REPO / "configs" / "MiniKinetics" / "I3D_8x8_R50.yaml"


def readme_table():
    """``file -> (lines, sha256)`` from the table of data_lists/README.md."""
    rows = re.findall(r"^\| (\S+) \| .* \| (\d+) \| ([0-9a-f]{64}) \|$", (DATA_LISTS / "README.md").read_text(), re.M)
    return {name: (int(lines), digest) for name, lines, digest in rows}


def tool_env():
    """The environment of a tool subprocess: this checkout's package first."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def test_the_readme_names_every_shipped_file_with_its_line_count_and_checksum():
    table = readme_table()
    assert sorted(table) == sorted([*ORIGINALS, *DERIVED])
    for name, (lines, digest) in table.items():
        data = (DATA_LISTS / name).read_bytes()
        assert (data.count(b"\n"), hashlib.sha256(data).hexdigest()) == (lines, digest), name
    assert table["ucf101/ucfTrainTestlist/trainlist01.txt"][0] == 9537
    assert table["ucf101/ucfTrainTestlist/testlist01.txt"][0] == 3783


def test_the_locations_are_the_shipped_files():
    assert Path(SHIPPED) == DATA_LISTS
    for path in (UCF101_SPLITS_DIR, MINIKINETICS_TRAIN_IDS, MINIKINETICS_VAL_IDS, KINETICS400_VAL_CSV):
        assert Path(path).exists() and Path(path).is_relative_to(DATA_LISTS)


def test_ucf101_classes_are_the_101_of_class_ind_in_order():
    classes = read_classes(str(DATA_LISTS / "ucf101" / "classes.txt"))
    assert classes == ucf101.read_class_index(os.path.join(UCF101_SPLITS_DIR, "classInd.txt"))
    assert len(classes) == 101 and classes[0] == "ApplyEyeMakeup" and classes[-1] == "YoYo"


def test_minikinetics_classes_are_the_200_the_maker_derives():
    labels = minikinetics.read_annotations([KINETICS400_VAL_CSV])
    val_ids = minikinetics.read_ids(MINIKINETICS_VAL_IDS)
    classes = read_classes(str(DATA_LISTS / "minikinetics" / "classes.txt"))
    assert classes == sorted({labels[ytid] for ytid in val_ids if ytid in labels})
    assert len(classes) == 200 and len(minikinetics.read_ids(MINIKINETICS_TRAIN_IDS)) == 80000


def test_minikinetics_classes_are_kinetics400_classes():
    label_map = SHARED / "kinetics400" / "label_map_k400.txt"
    if not label_map.is_file():
        pytest.skip(f"{label_map} absent")
    kinetics = set(read_classes(str(label_map)))
    assert len(kinetics) == 400
    assert set(read_classes(str(DATA_LISTS / "minikinetics" / "classes.txt"))) <= kinetics


@pytest.mark.parametrize("name", sorted(ORIGINALS))
def test_shipped_files_are_their_originals_byte_for_byte(name):
    original = SHARED / ORIGINALS[name]
    if not original.is_file():
        pytest.skip(f"{original} absent")
    assert (DATA_LISTS / name).read_bytes() == original.read_bytes()


def test_shipped_files_are_tracked_and_generated_ones_ignored():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    generated = ["ucf101/split1/train.csv", "ucf101/split3/classes.txt", "minikinetics/train.csv",
                 "minikinetics/val.csv", "minikinetics/test.csv", "minikinetics/report.tsv", "folder/train.csv"]
    paths = [f"data_lists/{name}" for name in [*ORIGINALS, *DERIVED, "README.md", *generated]]
    result = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True, text=True)
    assert sorted(result.stdout.split()) == sorted(f"data_lists/{name}" for name in generated)


# --------------------------------------------------------------------------- missing lists


def split1_tree(root: Path) -> None:
    """Every video of the shipped split 1 as an empty file at its listed path (not read without --check)."""
    for name in ("trainlist01.txt", "testlist01.txt"):
        with open(os.path.join(UCF101_SPLITS_DIR, name), encoding="utf-8") as f:
            listed = [line.split()[0] for line in f if line.strip()]
        for path in listed:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).touch()


def test_an_unmade_ucf101_config_names_the_command_that_makes_it(tmp_path):
    """Training stops before writing anything, naming a command that, run as printed from the
    same folder, writes the lists the config reads: split 1's 9,537 / 3,783 videos."""
    output_dir = tmp_path / "run"
    train = [sys.executable, str(REPO / "tools" / "train_net.py"), "--cfg", str(UCF_CONFIG), "OUTPUT_DIR", str(output_dir)]
    result = subprocess.run(train, cwd=tmp_path, capture_output=True, text=True, env=tool_env(), timeout=300)
    assert result.returncode != 0 and not output_dir.exists()
    message = result.stderr.strip().splitlines()[-1]
    pattern = (r"data_lists/ucf101/split1: DATA\.PATH_TO_DATA_DIR='data_lists/ucf101/split1': lists not made "
               r"\(folder absent\); run: (python \S*tools/make_lists\.py ucf101 --video-root (\S+) --split 1)$")
    command = re.search(pattern, message)
    assert command, message
    video_root = tmp_path / command[2]  # the config's DATA.PATH_PREFIX
    split1_tree(video_root)
    made = subprocess.run([sys.executable, *shlex.split(command[1])[1:]], cwd=tmp_path, capture_output=True,
                          text=True, env=tool_env(), timeout=300)
    assert made.returncode == 0, made.stderr
    lists = tmp_path / "data_lists" / "ucf101" / "split1"
    train_list, test_list = (read_video_list(str(lists / f"{s}.csv"), num_classes=101) for s in ("train", "test"))
    assert (len(train_list), len(test_list)) == (9537, 3783)
    assert (lists / "val.csv").read_bytes() == (lists / "test.csv").read_bytes()
    assert (lists / "classes.txt").read_bytes() == (DATA_LISTS / "ucf101" / "classes.txt").read_bytes()
    assert all((video_root / r.path).is_file() for r in train_list + test_list)


@pytest.mark.parametrize("data_dir, made, expected", [
    ("data_lists/minikinetics", [], r"\(folder absent\); run: python \S+ minikinetics --video-root 'data/mini kinetics'$"),
    ("data_lists/minikinetics", ["classes.txt"], r"\(no train\.csv\); run: python \S+ minikinetics --video-root"),
    ("{tmp}/data_lists/ucf101/split2", ["classes.txt", "train.csv"],
     r"\(no val\.csv\); run: python \S+ ucf101 --video-root .* --split 2$"),  # the default, absolute
    ("elsewhere/data_lists/ucf101/split3", [], r"ucf101 --video-root .* --split 3 --out-dir elsewhere/data_lists/ucf101/split3$"),
    ("data_lists/my set", [], r"run: python \S+ \{ucf101,minikinetics,folder\} --video-root .* --out-dir 'data_lists/my set'$"),
])
def test_unmade_lists_name_the_command_in_one_line(tmp_path, monkeypatch, data_dir, made, expected):
    monkeypatch.chdir(tmp_path)
    data_dir = data_dir.format(tmp=tmp_path)
    for name in made:
        os.makedirs(data_dir, exist_ok=True)
        Path(data_dir, name).write_text("x\n")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    cfg = load_config(str(MINI_CONFIG), ["DATA.PATH_TO_DATA_DIR", data_dir, "DATA.PATH_PREFIX", "data/mini kinetics"])
    with pytest.raises(ConfigError, match=expected) as error:
        validate_inputs(cfg, "train")
    assert "\n" not in str(error.value) and error.value.key == "DATA.PATH_TO_DATA_DIR"
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_made_lists_pass_and_other_folders_keep_their_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(str(MINI_CONFIG), ["DATA.PATH_TO_DATA_DIR", str(tmp_path / "mine")])
    with pytest.raises(ConfigError, match=r"mine/classes\.txt: .*no classes\.txt in it$"):
        validate_inputs(cfg, "train")
    lists = tmp_path / "data_lists" / "minikinetics"
    lists.mkdir(parents=True)
    (lists / "classes.txt").write_text("".join(f"c{i}\n" for i in range(200)))
    (lists / "train.csv").write_text("".join(f"v{i}.mp4 {i % 200}\n" for i in range(64)))
    (lists / "val.csv").write_text("v.mp4 0\n")
    validate_inputs(load_config(str(MINI_CONFIG), ["TRAIN.CHECKPOINT_INFLATE", ""]), "train")
