"""Faulty-but-real files (issue 8): right frames from both backends, a watchdog for the rest,
and tools that finish on trees and datasets holding such files."""

import csv
import json
import os
import pickle
import shutil
import time

import faulty_videos
import numpy as np
import pytest
from conftest import tiny_opts, try_tool

from cgnl_video.datasets.decoders import BACKENDS, VideoDecoder, open_video
from cgnl_video.datasets.video_io import write_video
from cgnl_video.decoding.errors import DecodeError
from cgnl_video.decoding.guard import GuardedDecoder

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIG_STUB = os.path.join(ROOT, "configs", "demo", "synthetic_cgnl.yaml")
TIMEOUT = 3  # seconds, DATA.DECODE_TIMEOUT of these tests
MAKERS = {
    "stream_copy_cut": faulty_videos.synthetic_cut,
    "vfr": faulty_videos.vfr,
    "avi_claiming_2^31-1_frames": lambda d: faulty_videos.avi_with_count(d, 2**31 - 1, name="huge_count"),
    "avi_over_counting": lambda d: faulty_videos.avi_with_count(d, 80),
    "avi_under_counting": lambda d: faulty_videos.avi_with_count(d, 20),
    "rotated": faulty_videos.rotated,
}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faulty")
    return {name: make(str(folder)) for name, make in MAKERS.items()}


def index_sets(count):
    return [[0, 1, 2], [count - 1], [count // 2, count - 2], list(range(0, count, 7)), [count - 1, 0, 5, 5]]


def assert_displayed_frames(path, expected, backend):
    """Frame i of ``path`` is ``expected[i]`` (within codec noise), whatever indices are asked."""
    with open_video(path, backend) as video:
        assert video.num_frames == len(expected)
        assert video.size == (expected.shape[2], expected.shape[1])
        for indices in index_sets(len(expected)):
            frames = video.get(indices).astype(float)
            errors = np.abs(frames - expected[indices]).mean(axis=(1, 2, 3))
            assert errors.max() < 3, f"{backend} frames {indices}: mean errors {errors}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", MAKERS)
def test_both_backends_return_the_displayed_frames(name, backend, faulty):
    assert_displayed_frames(faulty[name].path, faulty[name].expected, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_backends_return_the_displayed_frames_of_a_real_cut(backend, shared_video, tmp_path):
    cut = faulty_videos.real_cut(str(tmp_path), shared_video("test.mp4"), start=234)
    assert len(cut.expected) == 66
    assert_displayed_frames(cut.path, cut.expected, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fps_is_that_of_the_displayed_frames(backend, faulty, make_video):
    for name, fps in [("stream_copy_cut", 25), ("avi_claiming_2^31-1_frames", 25), ("vfr", 12.5)]:
        with open_video(faulty[name].path, backend) as video:
            assert isinstance(video.fps, float) and video.fps == pytest.approx(fps)
    with open_video(make_video(), backend) as video:
        assert video.fps == pytest.approx(25) and video.backend == backend  # a sound file stays with decord


def test_decord_never_sees_what_it_mishandles(faulty):
    for name in ("stream_copy_cut", "avi_claiming_2^31-1_frames", "avi_over_counting", "rotated"):
        with open_video(faulty[name].path, "decord") as video:
            assert video.backend == "pyav", name


# --------------------------------------------------------------------------- the watchdog


@pytest.fixture
def fifo(tmp_path):
    """A "video" whose reads block forever (a named pipe nobody writes), as a stalled mount does."""
    path = tmp_path / "stalled.mp4"
    os.mkfifo(path)
    return str(path)


def test_guarded_frames_equal_in_process_frames(make_video):
    path = make_video(num_frames=20, width=160, height=120)
    decoder = GuardedDecoder("decord", timeout=TIMEOUT)
    with decoder.open(path, short_side=60) as guarded, open_video(path, "decord", 60) as direct:
        assert (guarded.num_frames, guarded.size, guarded.fps) == (direct.num_frames, direct.size, direct.fps)
        assert np.array_equal(guarded.get([19, 3, 3]), direct.get([19, 3, 3]))
        with pytest.raises(IndexError, match=r"\[0, 20\)"):
            guarded.get([20])
    decoder.close()


def test_a_hang_costs_one_call_then_decoding_goes_on(fifo, make_video):
    decoder = GuardedDecoder("decord", timeout=TIMEOUT)
    start = time.monotonic()
    with pytest.raises(DecodeError, match=f"stalled.mp4: decoding timed out after {TIMEOUT} s"):
        decoder.open(fifo)
    assert time.monotonic() - start < TIMEOUT + 5
    with decoder.open(make_video()) as video:
        assert video.get([0]).shape == (1, 48, 64, 3)
    decoder.close()


def test_an_abort_costs_one_call_then_decoding_goes_on(faulty, make_video):
    # Without the probe, decord aborts the process on this header (std::bad_alloc).
    decoder = GuardedDecoder("decord", timeout=30, check=False)
    huge = faulty["avi_claiming_2^31-1_frames"].path
    with pytest.raises(DecodeError, match=r"huge_count.avi: decoder process died \(SIGABRT\)"):
        decoder.open(huge)
    with decoder.open(make_video()) as video:
        assert video.num_frames == 32
    decoder.close()


def test_the_guard_pickles_as_settings_and_restarts_after_fork(make_video):
    decoder = VideoDecoder("pyav", timeout=TIMEOUT, threads=2)
    path = make_video()
    decoder.open(path).close()
    parent_server = decoder.guard._process.pid
    copy = pickle.loads(pickle.dumps(decoder))
    assert (copy.guard.backend, copy.guard.timeout, copy.guard.threads) == ("pyav", TIMEOUT, 2)
    read_end, write_end = os.pipe()
    if os.fork() == 0:  # a DataLoader worker
        with decoder.open(path) as video:
            ok = video.get([5]).shape == (1, 48, 64, 3) and decoder.guard._process.pid != parent_server
        os.write(write_end, b"1" if ok else b"0")
        os._exit(0)
    os.wait()
    assert os.read(read_end, 1) == b"1"
    with decoder.open(path) as video:  # the parent's server is untouched
        assert video.num_frames == 32 and decoder.guard._process.pid == parent_server
    decoder.guard.close()


# --------------------------------------------------------------------------- the tools


def test_make_lists_check_reports_hangs_and_lists_the_rest(faulty, tmp_path):
    root = tmp_path / "videos"
    for name in ("a/good.mp4", "b/good.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_video(str(root / name), np.full((6, 32, 32, 3), 99, np.uint8))
    for name in ("stream_copy_cut", "avi_claiming_2^31-1_frames", "rotated"):
        shutil.copy(faulty[name].path, root / "a")
    os.mkfifo(root / "b" / "stalled.mp4")
    (root / "b" / "text.mp4").write_text("not a video")
    out = tmp_path / "lists"
    result = try_tool("make_lists.py", ["folder", "--video-root", str(root), "--out-dir", str(out), "--val-ratio", "0",
                                        "--test-ratio", "0", "--check", "--decode-timeout", str(TIMEOUT)], timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    listed = sorted(line.split()[0] for line in open(out / "train.csv"))
    assert listed == ["a/cut.mp4", "a/good.mp4", "a/huge_count.avi", "a/rotated.mp4", "b/good.mp4"]
    with open(out / "report.tsv", encoding="utf-8") as f:
        report = {row["item"]: row for row in csv.DictReader(f, delimiter="\t")}
    assert sorted(report) == ["b/stalled.mp4", "b/text.mp4"]
    assert report["b/stalled.mp4"]["kind"] == "unreadable"
    assert report["b/stalled.mp4"]["detail"] == f"decoding timed out after {TIMEOUT} s"


@pytest.fixture(scope="module")
def faulty_data(data_dir, faulty, tmp_path_factory):
    """``data_dir`` with a stalled file and an AVI claiming 2^31-1 frames added to train and test."""
    root = tmp_path_factory.mktemp("faulty_data") / "data"
    shutil.copytree(data_dir, root)
    os.mkfifo(root / "stalled.mp4")
    shutil.copy(faulty["avi_claiming_2^31-1_frames"].path, root / "huge_count.avi")
    for split in ("train", "test"):
        with open(root / f"{split}.csv", "a") as f:
            f.write("stalled.mp4 0\nhuge_count.avi 1\n")
    return str(root)


@pytest.fixture(scope="module")
def faulty_run(faulty_data, tmp_path_factory):
    """One epoch of training on ``faulty_data`` (one loader worker): (output folder, result)."""
    out = str(tmp_path_factory.mktemp("faulty_run"))
    opts = tiny_opts(faulty_data, out, **{"SOLVER.MAX_EPOCH": 1, "DATA.DECODE_TIMEOUT": TIMEOUT,
                                          "DATA_LOADER.NUM_WORKERS": 1, "DATA.MAX_BAD_FRACTION": 0.2})
    return out, try_tool("train_net.py", opts, timeout=240)


def test_train_net_finishes_on_a_dataset_with_a_stalled_and_a_huge_avi(faulty_run):
    out, result = faulty_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"stalled.mp4: decoding timed out after {TIMEOUT} s" in result.stderr
    assert "huge_count.avi" not in result.stderr  # decoded, by PyAV
    assert os.path.exists(os.path.join(out, "checkpoints"))
    with open(os.path.join(out, "bad_videos.tsv")) as handle:  # quarantined for later epochs
        (path, reason, epoch), = (line.rstrip("\n").split("\t") for line in handle)
    assert path.endswith("stalled.mp4") and reason == f"decoding timed out after {TIMEOUT} s" and epoch == "1"


def test_test_net_reports_the_stalled_video_failed(faulty_run, faulty_data):
    out, _ = faulty_run
    opts = tiny_opts(faulty_data, out, **{"DATA.DECODE_TIMEOUT": TIMEOUT})
    result = try_tool("test_net.py", opts, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "test_results.json")) as handle:
        results = json.load(handle)
    assert results["num_videos"] == 6 and results["num_failed"] == 1
    assert results["failed"][0]["path"].endswith("stalled.mp4")
    assert results["failed"][0]["reason"].endswith(f"decoding timed out after {TIMEOUT} s")


def test_predict_on_a_stalled_video_exits_with_a_one_line_error(faulty_run, faulty_data):
    out, _ = faulty_run
    stalled = os.path.join(faulty_data, "stalled.mp4")
    opts = tiny_opts(faulty_data, out, **{"DATA.DECODE_TIMEOUT": TIMEOUT})
    result = try_tool("predict.py", ["--cfg", CONFIG_STUB, stalled, *opts], timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: {stalled}: decoding timed out after {TIMEOUT} s"
    assert "Traceback" not in result.stderr
