"""List files: reading, writing, classes.txt, line-numbered errors, atomic writes."""

import os
import re

import pytest

from cgnl_video.datasets.lists import (
    ListFormatError,
    VideoRecord,
    read_classes,
    read_video_list,
    write_classes,
    write_video_list,
)


def test_round_trip_joins_prefix_and_keeps_line_indices(tmp_path):
    path = str(tmp_path / "train.csv")
    write_video_list(path, [("a/x.mp4", 1), ("b/y.avi", 0)])
    with open(path, "a") as f:
        f.write("\n  \nc/z.mp4 2\n")  # blank lines are skipped but still counted
    records = read_video_list(path, prefix="/videos", num_classes=3)
    assert records == [
        VideoRecord("/videos/a/x.mp4", 1, 0),
        VideoRecord("/videos/b/y.avi", 0, 1),
        VideoRecord("/videos/c/z.mp4", 2, 4),
    ]


def test_paths_with_spaces_split_on_the_last_separator(tmp_path):
    path = str(tmp_path / "val.csv")
    entries = [("passing American football (in game)/abc_000001_000011.mp4", 7), ("bass guitar/x y.mp4", 3)]
    write_video_list(path, entries)
    assert [(r.path, r.label) for r in read_video_list(path)] == entries


def test_custom_separator(tmp_path):
    path = str(tmp_path / "list.csv")
    write_video_list(path, [("a,b.mp4", 4)], separator=",")
    assert open(path).read() == "a,b.mp4,4\n"
    assert read_video_list(path, separator=",") == [VideoRecord("a,b.mp4", 4, 0)]


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ("c.mp4", "missing label"),
        ("c.mp4 three", "non-integer label 'three'"),
        ("c.mp4 1.5", "non-integer label '1.5'"),
        ("c.mp4 5", r"label 5 outside \[0, 5\)"),
        ("c.mp4 -1", r"label -1 outside \[0, 5\)"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, reason):
    path = tmp_path / "train.csv"
    path.write_text(f"a.mp4 0\n\n{bad_line}\nd.mp4 1\n")
    with pytest.raises(ListFormatError, match=rf"^{re.escape(str(path))}:3: {reason}"):
        read_video_list(str(path), num_classes=5)


def test_classes_with_spaces_and_parentheses_survive(tmp_path):
    path = str(tmp_path / "classes.txt")
    names = ["abseiling", "passing American football (in game)", "playing bass guitar"]
    write_classes(path, names)
    assert read_classes(path) == names


def test_read_classes_errors(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("a\nb\na\n\n")
    with pytest.raises(ListFormatError, match=rf"^{re.escape(str(path))}:3: duplicate class name 'a'"):
        read_classes(str(path))
    path.write_text("a\n\nb\n")
    with pytest.raises(ListFormatError, match=rf"^{re.escape(str(path))}:2: empty class name"):
        read_classes(str(path))


def test_write_rejects_entries_that_would_not_read_back(tmp_path):
    for entry in [(" padded.mp4", 0), ("two\nlines.mp4", 0), ("neg.mp4", -1), ("", 0)]:
        with pytest.raises(ValueError):
            write_video_list(str(tmp_path / "l.csv"), [entry])
    with pytest.raises(ValueError, match="duplicate"):
        write_classes(str(tmp_path / "c.txt"), ["a", "a"])


def test_failed_write_leaves_the_existing_files_intact(tmp_path):
    path = tmp_path / "train.csv"
    write_video_list(str(path), [("old.mp4", 0)])
    classes = tmp_path / "classes.txt"
    write_classes(str(classes), ["old"])

    def entries():
        yield ("new.mp4", 1)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_video_list(str(path), entries())
    with pytest.raises(ValueError):
        write_classes(str(classes), ["new", "bad\nname"])
    assert path.read_text() == "old.mp4 0\n"
    assert classes.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["classes.txt", "train.csv"]  # no temporary files left


def test_write_creates_missing_folders(tmp_path):
    path = tmp_path / "deep" / "er" / "test.csv"
    write_video_list(str(path), [("a.mp4", 0)])
    assert read_video_list(str(path)) == [VideoRecord("a.mp4", 0, 0)]


def test_a_byte_order_mark_does_not_eat_the_first_video(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("\ufeffa/x.mp4 1\r\nb/y.mp4 0\r\n".encode("utf-8"))
    assert [(r.path, r.label, r.index) for r in read_video_list(str(path))] == [("a/x.mp4", 1, 0), ("b/y.mp4", 0, 1)]
    classes = tmp_path / "classes.txt"
    classes.write_bytes("\ufeffjump\nrun\n".encode("utf-8"))
    assert read_classes(str(classes)) == ["jump", "run"]


def test_a_non_utf8_list_names_the_file_and_line(tmp_path):
    path = tmp_path / "val.csv"
    path.write_bytes(b"a.mp4 0\n\nb\xe9.mp4 1\n")
    with pytest.raises(ListFormatError, match=r"val\.csv:3: not UTF-8 text \(byte 0xe9"):
        read_video_list(str(path))


def test_duplicate_lines_are_reported_and_kept(tmp_path, caplog):
    path = tmp_path / "train.csv"
    path.write_text("a.mp4 0\nb.mp4 1\na.mp4 0\nb.mp4 0\n")
    records = read_video_list(str(path))
    assert len(records) == 4
    assert re.search(r"train\.csv:3: duplicate of line 1 \(a\.mp4\)$", caplog.text, re.M)
    assert re.search(r"train\.csv:4: duplicate of line 2 \(b\.mp4\) with another label \(0 vs 1\)", caplog.text)
