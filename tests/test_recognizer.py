"""The inference API and tools/predict.py as its client: the same numbers as test_net, decoded
frames, features, folders and lists in, one JSON line per video out, failures per video."""

import csv
import json
import os
import shutil
import time

import numpy as np
import pytest
from conftest import try_tool

from cgnl_video import Recognizer
from cgnl_video.datasets.decoders import DecodeError, open_video
from cgnl_video.errors import ConfigError


def test_predictions_are_those_of_test_net(tested_run):
    out = tested_run.out
    recognizer = Recognizer.from_run(out)
    assert recognizer.class_names == ["move_left", "move_right"]  # saved in the checkpoint
    with open(os.path.join(out, "predictions.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    for row in rows:
        prediction = recognizer.predict(row["path"], topk=2)
        assert [name for name, _ in prediction] == row["top5_classes"].split(";")
        views = recognizer.cfg.TEST.NUM_ENSEMBLE_VIEWS * recognizer.cfg.TEST.NUM_SPATIAL_CROPS
        expected = [float(s) / views for s in row["top5_scores"].split(";")]  # test_net sums the views
        assert [score for _, score in prediction] == pytest.approx(expected, abs=1e-4)
        assert sum(score for _, score in prediction) == pytest.approx(1.0, abs=1e-5)


def first_test_video(data_dir) -> str:
    return os.path.join(data_dir, open(os.path.join(data_dir, "test.csv")).readline().split()[0])


def test_decoded_frames_give_the_same_prediction_as_the_file(trained_run, data_dir):
    recognizer = Recognizer.from_run(trained_run.out)
    path = first_test_video(data_dir)
    with open_video(path) as video:
        frames, fps = video.get(range(video.num_frames)), video.fps
    from_file, from_frames = recognizer.predict(path), recognizer.predict_clip(frames, fps)
    assert [n for n, _ in from_file] == [n for n, _ in from_frames]
    assert [s for _, s in from_file] == pytest.approx([s for _, s in from_frames], abs=1e-6)
    with pytest.raises(ValueError, match="uint8 N x H x W x 3"):
        recognizer.predict_clip(frames.astype(np.float32))


def test_features_are_the_classifier_input(trained_run, data_dir):
    out = trained_run.out
    one_view = ["TEST.NUM_ENSEMBLE_VIEWS", "1", "TEST.NUM_SPATIAL_CROPS", "1"]
    recognizer = Recognizer.from_run(out, overrides=one_view)
    path = first_test_video(data_dir)
    features = recognizer.features(path)
    assert features.shape == (64,)  # res5 width of an R18 with stem width 8
    classifier = recognizer.model.blocks[-1].proj
    probabilities = classifier(features).softmax(0)
    assert [s for _, s in recognizer.predict(path)] == pytest.approx(
        probabilities.sort(descending=True).values.tolist(), abs=1e-5)


def test_from_run_needs_a_run(tmp_path):
    with pytest.raises(ConfigError, match="not a training run"):
        Recognizer.from_run(str(tmp_path))


def test_predict_tool_takes_folders_and_lists_and_reports_failures_per_video(trained_run, data_dir, tmp_path):
    out = trained_run.out
    folder = tmp_path / "videos"
    shutil.copytree(os.path.join(data_dir, "videos"), folder)
    (folder / "move_left" / "broken.mp4").write_bytes(b"not a video")
    result = try_tool("predict.py", ["--run", out, str(folder), "--json", "--topk", "1"])
    assert result.returncode == 1  # one video failed, the others were predicted
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 17 and sum("error" in line for line in lines) == 1
    broken = next(line for line in lines if "error" in line)
    assert broken["video"].endswith("broken.mp4") and "broken.mp4" in result.stderr
    assert all(len(line["top"]) == 1 and line["top"][0][0] in ("move_left", "move_right")
               for line in lines if "top" in line)
    listed = tmp_path / "some.txt"  # "videos/<class>/<name> LABEL" lines, relative to the list
    listed.write_text(open(os.path.join(data_dir, "test.csv")).read())
    from_list = try_tool("predict.py", ["--cfg", os.path.join(out, "config.yaml"), str(listed), "--json"])
    assert from_list.returncode == 0, from_list.stderr[-2000:]
    assert [json.loads(line)["video"] for line in from_list.stdout.splitlines()] == [
        str(tmp_path / line.rsplit(" ", 1)[0]) for line in open(os.path.join(data_dir, "test.csv"))]


def test_a_missing_video_raises_decode_error(trained_run):
    with pytest.raises(DecodeError, match="nothing.mp4"):
        Recognizer.from_run(trained_run.out).predict("nothing.mp4")


HANG_TIMEOUT = 2  # DATA.DECODE_TIMEOUT of the hanging-input tests, seconds


def hanging_video(folder) -> str:
    """A FIFO named like a video that nobody writes to: opening it blocks forever."""
    path = os.path.join(str(folder), "hangs.mp4")
    os.mkfifo(path)
    return path


def test_a_hanging_video_costs_the_recognizer_that_video_only(trained_run, data_dir, tmp_path):
    recognizer = Recognizer.from_run(trained_run.out, overrides=["DATA.DECODE_TIMEOUT", str(HANG_TIMEOUT)])
    fifo, good = hanging_video(tmp_path), first_test_video(data_dir)
    timed_out = f"hangs.mp4: decoding timed out after {HANG_TIMEOUT} s"
    for call in (recognizer.predict, recognizer.fps, lambda path: list(recognizer.stream(path)),
                 lambda path: recognizer.timeline(path, window=1.0)):
        start = time.monotonic()
        with pytest.raises(DecodeError, match=timed_out):
            call(fifo)
        assert time.monotonic() - start < HANG_TIMEOUT + 10  # the watchdog, not the file, ends it
        assert call(good)  # the next video is decoded by a new child process
    assert [n for n, _ in recognizer.predict(good)] == [n for n, _ in Recognizer.from_run(trained_run.out).predict(good)]


def test_predict_tool_reports_a_hanging_video_in_one_line_and_goes_on(trained_run, data_dir, tmp_path):
    fifo, good = hanging_video(tmp_path), first_test_video(data_dir)
    result = try_tool("predict.py", ["--run", trained_run.out, fifo, good, "--json",
                                 "DATA.DECODE_TIMEOUT", str(HANG_TIMEOUT)])
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0] == {"video": fifo, "error": f"decoding timed out after {HANG_TIMEOUT} s"}
    assert lines[1]["video"] == good and len(lines[1]["top"]) == 2
    assert f"error: {fifo}: decoding timed out" in result.stderr and "Traceback" not in result.stderr
