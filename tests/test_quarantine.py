"""Bad training videos through the real tools: recorded once, never decoded again, a clear stop
past DATA.MAX_BAD_FRACTION; validation reports its failures instead of substituting others."""

import csv
import json
import os
import shutil

import pytest
from conftest import run_tool, tiny_opts

from cgnl_video.datasets.lists import VideoRecord
from cgnl_video.engine.quarantine import Quarantine

TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")


def train(data_dir, output_dir, **extra):
    return run_tool("train_net.py", tiny_opts(data_dir, output_dir, **extra), check=False)


@pytest.fixture
def broken_data(data_dir, tmp_path):
    """The tiny dataset with its first training video and first validation video broken."""
    broken = tmp_path / "data"
    shutil.copytree(data_dir, broken)
    victims = {split: open(broken / f"{split}.csv").readline().split()[0] for split in ("train", "val")}
    for victim in victims.values():
        (broken / victim).write_bytes(b"not a video at all")
    return str(broken), {split: os.path.join(str(broken), v) for split, v in victims.items()}


def bad_rows(output_dir):
    with open(os.path.join(output_dir, "bad_videos.tsv"), newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))


def test_a_bad_video_is_recorded_once_and_skipped_afterwards(broken_data, tmp_path):
    data, victims = broken_data
    out = str(tmp_path / "run")
    first = train(data, out, **{"SOLVER.MAX_EPOCH": 2, "TRAIN.EVAL_PERIOD": 1, "DATA.MAX_BAD_FRACTION": 0.2})
    assert first.returncode == 0, first.stderr[-3000:]
    rows = bad_rows(out)
    assert [(row[0], row[2]) for row in rows] == [(victims["train"], "1")] and rows[0][1]
    # decoded (and failed) in epoch 1 only: epoch 2 replaces it without opening it
    assert first.stderr.count(f"skipping undecodable video {victims['train']}") == 1
    # validation reports its bad video, on the list as it is (no substitute)
    val = [json.loads(line) for line in open(os.path.join(out, "stats.jsonl")) if '"val"' in line]
    assert all(r["num_failed"] == 1 and r["num_tested"] == 3 and r["num_videos"] == 4 for r in val)
    assert val[0]["failed"][0].startswith(victims["val"] + ": ")
    # a resumed run (two more epochs) reads the file and never decodes the video again
    resumed = train(data, out, **{"SOLVER.MAX_EPOCH": 4, "TRAIN.EVAL_PERIOD": 0, "DATA.MAX_BAD_FRACTION": 0.2})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and victims["train"] not in resumed.stderr
    assert bad_rows(out) == rows


def test_too_many_bad_videos_stop_training_with_one_line(broken_data, tmp_path):
    data, victims = broken_data
    result = train(data, str(tmp_path / "run"), **{"SOLVER.MAX_EPOCH": 2, "TRAIN.EVAL_PERIOD": 0,
                                                    "DATA.MAX_BAD_FRACTION": 0.1})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "1 of the 8 training videos failed to decode, more than DATA.MAX_BAD_FRACTION = 0.1" in result.stderr
    assert "bad_videos.tsv" in result.stderr.splitlines()[-1]
    assert bad_rows(str(tmp_path / "run"))[0][0] == victims["train"]


def test_quarantine_applies_each_failure_from_the_next_epoch_on(tmp_path):
    records = [VideoRecord(f"/v/{i}.mp4", 0, i) for i in range(10)]
    quarantine = Quarantine(str(tmp_path), records, max_fraction=0.5)
    quarantine.add([("/v/3.mp4", "broken\tpart\nway")], epoch=1, write=True)
    quarantine.add([("/v/7.mp4", "empty"), ("/v/3.mp4", "again")], epoch=2, write=True)
    assert quarantine.before(1) == frozenset() and quarantine.before(2) == {3} and quarantine.before(3) == {3, 7}
    reread = Quarantine(str(tmp_path), records, max_fraction=0.5)
    assert reread.entries == {"/v/3.mp4": ("broken part way", 1), "/v/7.mp4": ("empty", 2)}
