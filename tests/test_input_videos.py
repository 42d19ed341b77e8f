"""Videos users really have (issue 14): cover pictures, MPEG-TS, AV1, GIF, timestamps out of
display order, tiny and odd frame sizes decode to the displayed frames with either backend (decord falls back to PyAV
where it fails), absurd sizes are refused in one line, ``make_lists --check`` keeps what
PyAV decodes, and upper-case camera names are videos."""

import dataclasses
import os
import sys

import faulty_videos
import numpy as np
import pytest
from conftest import try_tool

from cgnl_video.datasets.decoders import BACKENDS, VideoDecoder, open_video
from cgnl_video.decoding import readers
from cgnl_video.decoding.errors import DecodeError
from cgnl_video.decoding.probe import probe
from cgnl_video.inference.sources import expand_inputs, is_input

ROOT = os.path.join(os.path.dirname(__file__), "..")
# decord 0.6.0 fails on these widths ("The size must exactly match"), not on 32 or 40.
DECORD_BAD_WIDTHS = (8, 12, 16, 24, 48, 72)
MAKERS = {
    "cover_mp4": lambda d: faulty_videos.with_cover(d, "mp4", "mp4"),
    "cover_mkv": lambda d: faulty_videos.with_cover(d, "matroska", "mkv"),
    "mpegts": faulty_videos.mpegts,
    "av1": faulty_videos.av1,
    "gif": faulty_videos.gif,
    "tiny_2x2": lambda d: faulty_videos.sized(d, 2, 2),
    "tiny_3x5": lambda d: faulty_videos.sized(d, 3, 5),
    "equal_timestamps": lambda d: faulty_videos.with_timestamps(d, "equal", [*range(10), *range(9, 39)]),
    "timestamps_jump_back": lambda d: faulty_videos.with_timestamps(d, "back", [*range(20), *range(10, 30)]),
    "timestamps_swapped_halves": lambda d: faulty_videos.with_timestamps(d, "swap", [*range(20, 40), *range(20)]),
    "equal_timestamps_mp4": lambda d: faulty_videos.with_timestamps(d, "equal", [*range(10), *range(9, 39)], "mp4", "mp4"),
    "timestamps_jump_back_mp4": lambda d: faulty_videos.with_timestamps(d, "back", [*range(20), *range(10, 30)], "mp4",
                                                                       "mp4"),
    "avi_h264_b_frames": faulty_videos.avi,
    "avi_h264_no_b_frames": lambda d: faulty_videos.avi(d, b_frames=False),
    "avi_mpeg4_b_frames": lambda d: faulty_videos.avi(d, "mpeg4"),
    "resolution_change_ts": faulty_videos.resolution_change,
    "resolution_change_mkv": lambda d: faulty_videos.resolution_change(d, "matroska", "mkv"),
    **{f"width_{w}": (lambda w: lambda d: faulty_videos.sized(d, w, 32))(w) for w in DECORD_BAD_WIDTHS},
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("inputs"))
    return {name: make(folder) for name, make in MAKERS.items()}


def index_sets(count):
    return [list(range(count)), [count - 1], [count // 2, count - 2], [count - 1, 0, 5, 5], [0, 1, 2]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", MAKERS)
def test_frame_i_is_the_ith_displayed_frame(name, backend, inputs):
    made = inputs[name]
    if made is None:
        pytest.skip("no AV1 encoder (libsvtav1 / libaom-av1) in this PyAV build")
    expected = made.expected
    decoder = VideoDecoder(backend, timeout=0)
    for indices in index_sets(len(expected)):  # a fresh open each time: decord may fail at the first get
        with decoder.open(made.path) as video:
            assert video.num_frames == len(expected), name
            assert video.size == (expected.shape[2], expected.shape[1])
            frames = video.get(indices).astype(float)
            errors = np.abs(frames - expected[indices]).max(axis=(1, 2, 3))
            assert errors.max() <= 2, f"{name} {backend} frames {indices}: max errors {errors}"


def test_decord_is_bypassed_where_it_decodes_wrong(inputs):
    for name in ("mpegts", "av1", "gif", "tiny_2x2", "tiny_3x5", "width_8", "timestamps_swapped_halves",
                 "avi_h264_b_frames", "avi_mpeg4_b_frames", "equal_timestamps_mp4", "timestamps_jump_back_mp4"):
        if inputs[name] is not None:
            with open_video(inputs[name].path, "decord") as video:
                assert video.backend == "pyav", name
    with open_video(inputs["cover_mp4"].path, "decord") as video:
        assert video.backend == "decord"


def test_a_decord_decode_failure_falls_back_to_pyav(inputs):
    path = inputs["width_48"].path  # 48 x 32: the probe lets decord open it, decord's get fails
    with open_video(path, "decord") as video:
        assert video.backend == "decord"
        assert np.abs(video.get([3]).astype(float) - inputs["width_48"].expected[[3]]).max() <= 2
        assert video.backend == "pyav"


def test_a_file_decord_cannot_open_falls_back_to_pyav_at_open(inputs, monkeypatch):
    """The open-time fallback, for files the probe would let decord see: a GIF (which decord
    cannot open) with the probe's verdict cleared; both decoders run for real."""
    trusting = lambda container, path: dataclasses.replace(probe(container, path), distrust="")  # noqa: E731
    monkeypatch.setattr(readers, "probe", trusting)
    made = inputs["gif"]
    with open_video(made.path, "decord") as video:
        assert video.backend == "pyav"
        assert np.abs(video.get([0, 7]).astype(float) - made.expected[[0, 7]]).max() <= 2
    with open_video(inputs["cover_mp4"].path, "decord") as video:  # a file decord opens stays with it
        assert video.backend == "decord"


def test_the_guarded_decoder_falls_back_too(inputs):
    decoder = VideoDecoder("decord", timeout=30)
    with decoder.open(inputs["width_48"].path) as video:
        assert np.abs(video.get([19]).astype(float) - inputs["width_48"].expected[[19]]).max() <= 2
    decoder.guard.close()


@pytest.mark.parametrize("size", [(16000, 2), (2, 16000)])
def test_absurd_sizes_are_refused_in_one_line(size, tmp_path):
    path = faulty_videos.sized(str(tmp_path), *size, count=3).path
    with pytest.raises(DecodeError) as caught:
        open_video(path, "decord")
    assert str(caught.value) == f"{path}: frames of {size[0]}x{size[1]}: aspect ratio over 100"


def test_make_lists_check_keeps_what_pyav_decodes(inputs, tmp_path):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    for name in ("av1", "gif", "tiny_2x2", "width_48", "mpegts"):
        if inputs[name] is not None:
            os.link(inputs[name].path, root / "a" / os.path.basename(inputs[name].path).upper())
    wide = faulty_videos.sized(str(root / "a"), 16000, 2, count=3).path
    out = tmp_path / "lists"
    result = try_tool("make_lists.py", ["folder", "--video-root", str(root), "--out-dir", str(out), "--val-ratio", "0",
                                        "--test-ratio", "0", "--check"], timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    listed = sorted(line.split()[0] for line in open(out / "train.csv"))
    expected = sorted(f"a/{os.path.basename(inputs[n].path).upper()}"
                      for n in ("av1", "tiny_2x2", "width_48", "mpegts") if inputs[n] is not None)
    assert listed == expected
    report = open(out / "report.tsv").read().splitlines()[1:]
    assert report == [f"unreadable\ttrain\ta/{os.path.basename(wide)}\tframes of 16000x2: aspect ratio over 100"]


def test_upper_case_camera_names_are_videos(inputs, tmp_path):
    folder = tmp_path / "DCIM"
    folder.mkdir()
    for name in ("GOPR0001.MP4", "MVI_0001.MOV", "CLIP.TS"):
        os.link(inputs["mpegts"].path, folder / name)
    videos = expand_inputs([str(folder)])
    assert [os.path.basename(v) for v in videos] == ["CLIP.TS", "GOPR0001.MP4", "MVI_0001.MOV"]
    assert is_input("GOPR0002.MP4") and is_input(str(folder)) and not is_input("TEST.NUM_ENSEMBLE_VIEWS")


def test_predict_takes_upper_case_camera_names_for_videos_not_keys(monkeypatch):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import predict

    argv = ["predict.py", "--cfg", "x.yaml", "GOPR0001.MP4", "MVI_0001.MOV", "TEST.NUM_ENSEMBLE_VIEWS", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    args = predict.parse_args()
    assert args.videos == ["GOPR0001.MP4", "MVI_0001.MOV"] and args.opts == ["TEST.NUM_ENSEMBLE_VIEWS", "2"]
