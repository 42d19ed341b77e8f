"""List generators on the real UCF101 / Mini-Kinetics-200 metadata over fake video trees."""

import csv
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tool

from cgnl_video.data_prep import list_makers
from cgnl_video.data_prep.list_makers import folder, locations, minikinetics, ucf101
from cgnl_video.data_prep.list_makers.common import (
    MISSING,
    UNANNOTATED,
    UNREADABLE,
    DatasetLists,
    check_videos,
    finish,
)
from cgnl_video.datasets.lists import ListFormatError, read_classes, read_video_list
from cgnl_video.datasets.video_io import write_video

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
UCF_SPLITS = SHARED / "ucf101_splits"
K400_VAL = SHARED / "kinetics400" / "validate.csv"
MINI = SHARED / "mini_kinetics200"

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} absent")


def make_lists(args, cwd):
    """Runs ``tools/make_lists.py`` in a process of its own, checks that it succeeded, returns the result."""
    return run_tool("make_lists.py", args, cwd=cwd, timeout=120)


def run_main(args):
    """Runs ``make_lists`` in-process; returns the DatasetLists it wrote."""
    parsed = list_makers.build_parser().parse_args(args)
    return finish(parsed)


def read_report(out_dir):
    with open(out_dir / "report.tsv", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def official_lines(name):
    with open(UCF_SPLITS / name, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


# --------------------------------------------------------------------------- UCF101


def disk_name(listed):
    """Where the fake tree stores a listed UCF101 video: case changed like real copies."""
    folder_name, file_name = listed.split("/")
    if folder_name == "ApplyEyeMakeup":
        folder_name = "applyeyemakeup"
    return f"{folder_name}/{file_name.replace('HandStand', 'Handstand')}"


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory):
    """Every video of the official lists as an empty file, names in altered case."""
    if not UCF_SPLITS.is_dir():
        pytest.skip(f"{UCF_SPLITS} absent")
    root = tmp_path_factory.mktemp("UCF-101")
    for listed in set(official_lines("trainlist01.txt") + official_lines("testlist01.txt")):
        path = root / disk_name(listed)
        path.parent.mkdir(exist_ok=True)
        path.touch()
    return root


@needs_shared
@pytest.mark.parametrize("split", [1, 2, 3])
def test_ucf101_line_counts_match_the_official_splits(ucf_root, tmp_path, split):
    lists = ucf101.make_lists(str(UCF_SPLITS), str(ucf_root), split)
    train, test = official_lines(f"trainlist0{split}.txt"), official_lines(f"testlist0{split}.txt")
    assert len(lists.splits["train"]) == len(train) and len(lists.splits["test"]) == len(test)
    assert lists.problems == []
    assert not {p for p, _ in lists.splits["train"]} & {p for p, _ in lists.splits["test"]}


@needs_shared
def test_ucf101_resolves_case_and_labels(ucf_root, tmp_path):
    options = ["--splits-dir", str(UCF_SPLITS), "--video-root", str(ucf_root), "--out-dir", str(tmp_path)]
    run_main(["ucf101", *options])
    classes = read_classes(str(tmp_path / "classes.txt"))
    assert len(classes) == 101 and classes[0] == "ApplyEyeMakeup" and classes[36] == "HandstandPushups"
    train = read_video_list(str(tmp_path / "train.csv"), num_classes=101)
    test = read_video_list(str(tmp_path / "test.csv"), num_classes=101)
    assert (tmp_path / "val.csv").read_text() == (tmp_path / "test.csv").read_text()
    # paths are the ones on disk, whatever case the official files use
    assert all((ucf_root / r.path).is_file() for r in train + test)
    first = {"train": train[0], "test": test[0]}
    assert first["train"].path == "applyeyemakeup/v_ApplyEyeMakeup_g08_c01.avi"
    assert first["test"].path == "applyeyemakeup/v_ApplyEyeMakeup_g01_c01.avi"
    handstand = [r for r in train if r.path.startswith("HandstandPushups/")]
    assert handstand and all(r.label == 36 and "v_HandstandPushups" in r.path for r in handstand)
    # trainlist labels are 1-based in the file; testlist labels come from the folder via classInd
    for records in (train, test):
        assert all(classes[r.label].lower() == r.path.split("/")[0].lower() for r in records)
    assert train[-1].label == 100 and classes[100] == "YoYo"


@needs_shared
def test_ucf101_missing_videos_are_reported_not_raised(ucf_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(ucf_root / "YoYo", root / "YoYo")
    os.remove(root / "YoYo" / "v_YoYo_g25_c05.avi")  # in trainlist01
    lists = ucf101.make_lists(str(UCF_SPLITS), str(root), 1)
    yoyo_train = [p for p in official_lines("trainlist01.txt") if p.startswith("YoYo/")]
    assert len(lists.splits["train"]) == len(yoyo_train) - 1
    missing = [p for p in lists.problems if p.kind == MISSING]
    assert len(missing) == 9537 + 3783 - len(lists.splits["train"]) - len(lists.splits["test"])
    assert any(p.item == "YoYo/v_YoYo_g25_c05.avi" and p.split == "train" for p in missing)


@needs_shared
def test_ucf101_label_not_matching_its_folder_names_the_line(tmp_path):
    for name in ("classInd.txt", "testlist01.txt"):
        shutil.copy(UCF_SPLITS / name, tmp_path / name)
    lines = "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nYoYo/v_YoYo_g08_c01.avi 3\n"
    (tmp_path / "trainlist01.txt").write_text(lines)
    with pytest.raises(ListFormatError, match=r"trainlist01\.txt:2: label 3 does not match class folder"):
        ucf101.make_lists(str(tmp_path), str(tmp_path), 1)


# --------------------------------------------------------------------------- Mini-Kinetics-200


def mini_val_annotations():
    """The (ytid, label, start, end) rows of validate.csv whose id is in the Mini-Kinetics val list."""
    val_ids = set(minikinetics.read_ids(str(MINI / "val_ytid_list.txt")))
    with open(K400_VAL, encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["youtube_id"] in val_ids]
    return [(r["youtube_id"], r["label"], int(r["time_start"]), int(r["time_end"])) for r in rows]


@needs_shared
def test_minikinetics_classes_layouts_and_reports(tmp_path):
    rows = mini_val_annotations()
    root = tmp_path / "kinetics"
    nested, flat = rows[:6], rows[6:10]
    for ytid, label, start, end in nested:  # <label>/<ytid>_<start>_<end>.mp4, label folders with spaces
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{ytid}_{start:06d}_{end:06d}.mp4").touch()
    for ytid, *_ in flat:  # flat <ytid>.<ext>
        (root / f"{ytid}.webm").touch()
    # a second annotation CSV covering two train ids (the real train CSV is not available)
    train_ids = minikinetics.read_ids(str(MINI / "train_ytid_list.txt"))[:2]
    extra = tmp_path / "train.csv"
    rows_text = "".join(f"abseiling,{ytid},0,10,train\n" for ytid in train_ids)
    extra.write_text("label,youtube_id,time_start,time_end,split\n" + rows_text)
    (root / "abseiling").mkdir(exist_ok=True)
    (root / "abseiling" / f"{train_ids[0]}_000000_000010.mp4").touch()
    out = tmp_path / "out"
    ids = ["--train-ids", str(MINI / "train_ytid_list.txt"), "--val-ids", str(MINI / "val_ytid_list.txt")]
    paths = ["--video-root", str(root), "--out-dir", str(out)]
    run_main(["minikinetics", "--annotations", str(K400_VAL), str(extra), *ids, *paths])
    classes = read_classes(str(out / "classes.txt"))
    assert classes == sorted({label for _, label, _, _ in rows}) and len(classes) == 200
    assert "passing American football (in game)" in classes
    val = read_video_list(str(out / "val.csv"), prefix=str(root), num_classes=200)
    assert (out / "test.csv").read_text() == (out / "val.csv").read_text()
    found = sorted((classes[r.label], os.path.basename(r.path)[:11]) for r in val)
    assert found == sorted((label, ytid) for ytid, label, _, _ in nested + flat)
    assert all(os.path.isfile(r.path) for r in val) and any(" " in r.path for r in val)
    train = read_video_list(str(out / "train.csv"), num_classes=200)
    assert [(r.path, r.label) for r in train] == [(f"abseiling/{train_ids[0]}_000000_000010.mp4", 0)]
    report = read_report(out)
    assert Counter((p["split"], p["kind"]) for p in report) == {
        ("train", UNANNOTATED): 80000 - 2,
        ("train", MISSING): 1,
        ("val", UNANNOTATED): 5000 - len(rows),
        ("val", MISSING): len(rows) - 10,
    }


def test_minikinetics_defaults_and_class_folders_label_the_train_ids(tmp_path):
    """With only --video-root: the shipped id lists and val CSV; train ids take their class
    folder's label (mmaction2's renamed folders match too); the val CSV wins over a folder."""
    train_ids = minikinetics.read_ids(locations.MINIKINETICS_TRAIN_IDS)[:4]
    val_labels = minikinetics.read_annotations([locations.KINETICS400_VAL_CSV])
    val_id = next(ytid for ytid in minikinetics.read_ids(locations.MINIKINETICS_VAL_IDS) if ytid in val_labels)
    root = tmp_path / "videos"
    layout = {
        f"train/passing_American_football_-in_game-/{train_ids[0]}_000001_000011.mp4": "in class folders",
        f"train/abseiling/{train_ids[1]}_000000_000010.mp4": "",
        f"train/not a class/{train_ids[2]}_000000_000010.mp4": "no such class",
        f"{train_ids[3]}.mp4": "flat, unlabelled",
        f"abseiling/{val_id}_000000_000010.mp4": "annotated: the CSV wins",
    }
    for path in layout:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).touch()
    out = tmp_path / "out"
    run_main(["minikinetics", "--video-root", str(root), "--out-dir", str(out)])
    classes = read_classes(str(out / "classes.txt"))
    assert (out / "classes.txt").read_bytes() == (REPO / "data_lists" / "minikinetics" / "classes.txt").read_bytes()
    train = read_video_list(str(out / "train.csv"), num_classes=200)
    assert [(r.path, classes[r.label]) for r in train] == [
        (f"train/passing_American_football_-in_game-/{train_ids[0]}_000001_000011.mp4",
         "passing American football (in game)"),
        (f"train/abseiling/{train_ids[1]}_000000_000010.mp4", "abseiling"),
    ]
    val = read_video_list(str(out / "val.csv"), num_classes=200)
    assert [(r.path, classes[r.label]) for r in val] == [(f"abseiling/{val_id}_000000_000010.mp4", val_labels[val_id])]
    assert val_labels[val_id] != "abseiling"
    counts = Counter((p["split"], p["kind"]) for p in read_report(out))
    assert counts[("train", UNANNOTATED)] == 80000 - 2 and counts[("train", MISSING)] == 0


def test_minikinetics_annotation_without_label_column_names_the_file(tmp_path):
    bad = tmp_path / "test.csv"
    bad.write_text("youtube_id,time_start,time_end,split\nabc,0,10,test\n")
    with pytest.raises(ListFormatError, match=r"test\.csv:1: header lacks column\(s\) \['label'\]"):
        minikinetics.read_annotations([str(bad)])


# --------------------------------------------------------------------------- folder


def make_tree(root, counts):
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"clip{i:02d}.mp4").touch()
    (root / "readme.txt").touch()


def test_folder_split_is_seeded_stratified_and_disjoint(tmp_path):
    make_tree(tmp_path, {"b class": 10, "a": 20, "c (x)": 5})
    first = folder.make_lists(str(tmp_path), val_ratio=0.2, test_ratio=0.1, seed=3)
    again = folder.make_lists(str(tmp_path), val_ratio=0.2, test_ratio=0.1, seed=3)
    other = folder.make_lists(str(tmp_path), val_ratio=0.2, test_ratio=0.1, seed=4)
    assert first.classes == ["a", "b class", "c (x)"]
    assert first.splits == again.splits and first.splits != other.splits
    entries = [(split, path, label) for split, pairs in first.splits.items() for path, label in pairs]
    on_disk = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/*"))
    assert sorted(path for _, path, _ in entries) == on_disk
    assert len({path for _, path, _ in entries}) == len(entries) == 35  # disjoint, nothing lost
    assert all(first.classes[label] == path.split("/")[0] for _, path, label in entries)
    per_class = Counter((split, path.split("/")[0]) for split, path, _ in entries)
    assert [per_class[s, "a"] for s in ("train", "val", "test")] == [14, 4, 2]
    assert [per_class[s, "c (x)"] for s in ("train", "val", "test")] == [4, 1, 0]  # round(0.5) = 0


def test_folder_rejects_ratios_summing_to_one(tmp_path):
    make_tree(tmp_path, {"a": 3})
    with pytest.raises(SystemExit) as exit_info:
        list_makers.main(["folder", "--video-root", str(tmp_path), "--val-ratio", ".6", "--test-ratio", ".4"])
    assert exit_info.value.code == 2


# --------------------------------------------------------------------------- --check and the tool


def tiny_video(path):
    """A 6-frame 32x32 mp4 (decord cannot read 16-pixel-wide h264: it fails a copy-size check)."""
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    write_video(str(path), frames)


def test_check_moves_unreadable_videos_to_the_report(tmp_path):
    root = tmp_path / "videos"
    for name in ("a/good.mp4", "b/good.mp4", "b/other.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        tiny_video(root / name)
    (root / "a" / "text.mp4").write_text("not a video")
    data = (root / "b" / "good.mp4").read_bytes()
    (root / "b" / "truncated.mp4").write_bytes(data[: len(data) // 2])
    out = tmp_path / "lists"
    options = ["--val-ratio", "0", "--test-ratio", "0", "--check"]
    result = make_lists(["folder", "--video-root", str(root), "--out-dir", str(out), *options], cwd=tmp_path)
    assert "3 written (0 missing, 0 unannotated, 2 unreadable)" in result.stdout
    written = sorted(r.path for r in read_video_list(str(out / "train.csv")))
    assert written == ["a/good.mp4", "b/good.mp4", "b/other.mp4"]
    report = read_report(out)
    assert sorted((p["kind"], p["item"]) for p in report) == [
        (UNREADABLE, "a/text.mp4"),
        (UNREADABLE, "b/truncated.mp4"),
    ]
    assert all(p["detail"] for p in report)


@needs_shared
def test_check_catches_a_video_that_opens_but_fails_mid_decode(tmp_path):
    shutil.copy(SHARED / "videos" / "corrupted.mp4", tmp_path / "corrupted.mp4")
    shutil.copy(SHARED / "videos" / "test.mp4", tmp_path / "test.mp4")
    entries = {"train": [("corrupted.mp4", 0), ("test.mp4", 0)]}
    lists = DatasetLists("t", ["x"], entries, {"train": "train", "val": "train", "test": "train"})
    check_videos(lists, str(tmp_path), workers=2)
    assert lists.splits["train"] == [("test.mp4", 0)]
    assert [(p.kind, p.item) for p in lists.problems] == [(UNREADABLE, "corrupted.mp4")]


@needs_shared
def test_make_lists_tool_end_to_end(ucf_root, tmp_path):
    options = ["--splits-dir", str(UCF_SPLITS), "--video-root", str(ucf_root), "--split", "2"]
    result = make_lists(["ucf101", *options], cwd=tmp_path)
    out = tmp_path / "data_lists" / "ucf101" / "split2"  # the default output folder, under the cwd
    assert len(read_video_list(str(out / "train.csv"), num_classes=101)) == 9586
    assert len(read_video_list(str(out / "test.csv"), num_classes=101)) == 3734
    assert "UCF101 split 2: 101 classes" in result.stdout and "test : 3734 written" in result.stdout


@pytest.mark.parametrize("dataset", ["ucf101", "minikinetics", "folder"])
def test_every_subcommand_has_help(dataset, capsys):
    with pytest.raises(SystemExit) as exit_info:
        list_makers.main([dataset, "--help"])
    assert exit_info.value.code == 0
    assert "--video-root" in capsys.readouterr().out


def test_bad_input_exits_with_the_file_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        list_makers.main(["ucf101", "--splits-dir", str(tmp_path), "--video-root", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "classInd.txt" in capsys.readouterr().err
