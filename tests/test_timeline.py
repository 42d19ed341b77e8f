"""Timelines of long videos: windows decoded once as a stream, each scored as its own video,
smoothing, every frame handed out once for the labelled video; through predict.py too."""

import csv
import json
import os

import numpy as np
import pytest
import torch
from conftest import run_tool

from cgnl_video import Recognizer
from cgnl_video.datasets.decoders import open_video
from cgnl_video.datasets.video_io import write_video
from cgnl_video.inference.timeline import smooth_scores

TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")
FPS, SECONDS = 10, 4  # a 40-frame video: windows of 1 s every 0.5 s -> starts 0, 0.5, ..., 3


@pytest.fixture(scope="module")
def run_and_video(trained_run, tmp_path_factory):
    """A 1-epoch tiny run and a 4 s video (a bright bar moving over 48 columns, 32 x 56) to score
    along (not 48 wide: decord 0.6 fails to read frames 8, 12, 16, 24, 48 or 72 pixels wide)."""
    folder = tmp_path_factory.mktemp("timeline")
    out = trained_run.out
    frames = np.full((FPS * SECONDS, 32, 56, 3), 40, np.uint8)
    for t in range(len(frames)):
        frames[t, :, t % 48] = 230
    path = str(folder / "long.mp4")
    write_video(path, frames, fps=FPS)
    return out, path


def test_each_window_is_scored_as_its_own_video(run_and_video):
    out, path = run_and_video
    recognizer = Recognizer.from_run(out)
    windows = recognizer.timeline(path, window=1.0, stride=0.5, topk=2)
    assert [(w.start, w.end) for w in windows] == [(s / 2, s / 2 + 1) for s in range(7)]
    with recognizer.decoder.open(path, short_side=recognizer.test_views.short_side) as video:
        frames = video.get(range(video.num_frames))
    for number, window in enumerate(windows):
        first = number * FPS // 2
        reference = recognizer.predict_clip(frames[first:first + FPS], FPS, topk=2)
        assert [n for n, _ in window.top] == [n for n, _ in reference]
        assert [s for _, s in window.top] == pytest.approx([s for _, s in reference], abs=1e-6)


def test_smoothing_is_a_centred_moving_average():
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    smoothed = smooth_scores(scores, 3)
    expected = torch.tensor([[0.5, 0.5], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0.5, 0.5]])
    torch.testing.assert_close(smoothed, expected)
    assert torch.equal(smooth_scores(scores, 1), scores)


def test_every_frame_is_handed_out_once_in_order_with_a_label(run_and_video):
    out, path = run_and_video
    recognizer = Recognizer.from_run(out)
    seen = []
    windows = recognizer.timeline(path, window=1.0, stride=1.5,
                                  on_frame=lambda frame, label: seen.append((int(frame[0, :, 0].argmax()), label)))
    assert len(windows) == 3  # 0-1, 1.5-2.5, 3-4: frames between windows are handed out too
    assert len(seen) == FPS * SECONDS and {label for _, label in seen} <= set(recognizer.class_names)
    bar = [position for position, _ in seen]  # the bright bar moves one column a frame
    assert all(abs(b - t % 48) <= 1 for t, b in enumerate(bar))


def test_a_video_shorter_than_a_window_gives_one_window(run_and_video):
    out, path = run_and_video
    windows = Recognizer.from_run(out).timeline(path, window=60.0, stride=30.0)
    assert [(w.start, w.end) for w in windows] == [(0.0, SECONDS)]
    with pytest.raises(ValueError, match="window 0.0: expected a finite number of seconds > 0"):
        Recognizer.from_run(out).timeline(path, window=0.0)


def test_predict_tool_writes_the_timeline_and_a_labelled_video_while_streaming(run_and_video, tmp_path):
    out, path = run_and_video
    table, labelled = str(tmp_path / "timeline.csv"), str(tmp_path / "labelled.mp4")
    result = run_tool("predict.py", ["--run", out, path, "--timeline", "--window", "1", "--stride", "0.5",
                                     "--smooth", "3", "--timeline-out", table, "--out-video", labelled, "--json"])
    line = json.loads(result.stdout.splitlines()[0])
    assert line["video"] == path and len(line["timeline"]) == 7
    with open(table) as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["start"]) for r in rows] == [w["start"] for w in line["timeline"]]
    assert [r["classes"].split(";")[0] for r in rows] == [w["top"][0][0] for w in line["timeline"]]
    with open_video(labelled, "pyav") as video:
        assert video.num_frames == FPS * SECONDS
    bad = run_tool("predict.py", ["--run", out, path, "--timeline-out", table], check=False)
    assert bad.returncode == 2 and "--timeline-out needs --timeline" in bad.stderr


def test_predict_tool_times_out_on_a_hanging_video_and_goes_on_with_the_next(run_and_video, tmp_path):
    out, path = run_and_video
    fifo = str(tmp_path / "hangs.mp4")
    os.mkfifo(fifo)  # nobody writes to it: opening it blocks forever
    result = run_tool("predict.py", ["--run", out, fifo, path, "--timeline", "--window", "1", "--json",
                                     "DATA.DECODE_TIMEOUT", "2"], check=False, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0] == {"video": fifo, "error": "decoding timed out after 2 s"}
    assert lines[1]["video"] == path and len(lines[1]["timeline"]) == 4  # 1 s windows every second
    assert result.stderr.count("Traceback") == 0
