"""decord and PyAV behind one interface: right frames, same frames, resizing, errors."""

import gc
import weakref

import av
import numpy as np
import pytest

from cgnl_video.datasets.decoders import (
    BACKENDS,
    DecodeError,
    VideoDecoder,
    decode_frames,
    num_frames,
    open_video,
    scaled_size,
)
from cgnl_video.decoding.frames import FramesVideo
from cgnl_video.decoding.video import OpenVideo, iter_frames


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_come_back_in_the_requested_order(backend, make_video, frame_level):
    path = make_video(num_frames=40)
    indices = [30, 2, 2, 39, 17]  # unsorted, repeated
    frames = decode_frames(path, indices, backend)
    assert frames.dtype == np.uint8 and frames.shape == (5, 48, 64, 3)
    levels = frames.mean(axis=(1, 2, 3))
    assert np.allclose(levels, [float(frame_level(i)) for i in indices], atol=2)
    assert num_frames(path, backend) == 40


def test_backends_agree_on_a_synthetic_video(make_video):
    path = make_video(num_frames=24, width=160, height=120)
    indices = [0, 5, 11, 23]
    assert mean_abs_diff(decode_frames(path, indices, "decord"), decode_frames(path, indices, "pyav")) < 1


def write_short_gop(path, container_format: str, codec: str, num_frames: int = 40) -> None:
    """Frames ``i``: grey ``20 + 5 i`` with a black band ``8 * (i % 8)`` wide; a keyframe every 10."""
    with av.open(path, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=25, options={"g": "10"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(num_frames):
            frame = np.full((48, 64, 3), 20 + 5 * i, np.uint8)
            frame[:, : 8 * (i % 8)] = 0
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.mark.parametrize("container_format, codec", [("matroska", "libx264"), ("webm", "libvpx-vp9")])
def test_containers_without_a_frame_count_seek_and_agree(container_format, codec, tmp_path):
    path = str(tmp_path / f"video.{container_format}")
    write_short_gop(path, container_format, codec)
    with av.open(path) as container:
        assert container.streams.video[0].frames == 0  # so PyAV counts packets
    for indices in ([35, 39], [21, 22, 29], [9, 30]):
        pyav_frames = decode_frames(path, indices, "pyav")
        expected = [(20 + 5 * i) * (64 - 8 * (i % 8)) / 64 for i in indices]
        assert np.allclose(pyav_frames.mean(axis=(1, 2, 3)), expected, atol=3)
        assert mean_abs_diff(decode_frames(path, indices, "decord"), pyav_frames) < 1
    assert num_frames(path, "pyav") == num_frames(path, "decord") == 40


@pytest.mark.parametrize(
    "name, indices",
    [
        ("test.mp4", [0, 120, 233, 234, 235, 236, 299]),  # keyframes at 0 and 235
        ("test.mp4", [290, 240, 250]),  # PyAV seeks to the second keyframe
        ("test.avi", [0, 3, 50, 163]),  # packed B-frames: reordered timestamps
    ],
)
@pytest.mark.parametrize("short_side", [None, 128])
def test_backends_agree_on_real_videos(name, indices, short_side, shared_video):
    path = shared_video(name)
    decord_frames = decode_frames(path, indices, "decord", short_side)
    pyav_frames = decode_frames(path, indices, "pyav", short_side)
    assert decord_frames.shape == pyav_frames.shape
    assert mean_abs_diff(decord_frames, pyav_frames) < 1.5
    # Distinct frames differ by far more than the backends do.
    assert mean_abs_diff(decord_frames[:1], pyav_frames[-1:]) > 3


@pytest.mark.parametrize("name, frames", [("test.mp4", 300), ("test.avi", 164), ("corrupted.mp4", 50)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_on_frame_counts(name, frames, backend, shared_video):
    assert num_frames(shared_video(name), backend) == frames


def test_scaled_size_keeps_aspect_and_only_shrinks():
    assert scaled_size(1920, 1080, 256) == (455, 256)
    assert scaled_size(1080, 1920, 256) == (256, 455)
    assert scaled_size(340, 256, 320) == (340, 256)
    assert scaled_size(340, 256, None) == (340, 256)


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_videos_are_decoded_straight_to_the_short_side(backend, make_video):
    path = make_video(width=160, height=120)
    with open_video(path, backend, short_side=60) as video:
        assert video.size == (80, 60)
        assert video.get([0, 1]).shape == (2, 60, 80, 3)
    assert decode_frames(path, [0], backend, short_side=200).shape == (1, 120, 160, 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated", "zero_frames"])
def test_unreadable_files_raise_decode_error_with_path(kind, backend, bad_videos):
    path = bad_videos[kind]
    with pytest.raises(DecodeError) as info:
        decode_frames(path, [0], backend)
    assert info.value.path == path and str(info.value).startswith(path + ": ")
    assert info.value.reason


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_video_failing_part_way_raises_decode_error(backend, shared_video):
    path = shared_video("corrupted.mp4")
    assert decode_frames(path, [0, 10], backend).shape == (2, 720, 1280, 3)
    with pytest.raises(DecodeError, match="corrupted.mp4: "):
        decode_frames(path, [0, 45], backend)


def test_bad_arguments_are_not_decode_errors(make_video):
    path = make_video(num_frames=10)
    with pytest.raises(ValueError, match="unknown decoding backend"):
        decode_frames(path, [0], "opencv")
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        decode_frames(path, [10], "decord")


def test_decord_returns_the_last_frame_of_an_avi_every_time(shared_video):
    # decord alone sometimes returns frame 162 for 163 here (dmlc/decord#195).
    path = shared_video("test.avi")
    expected = decode_frames(path, [100, 163], "pyav")
    for _ in range(20):
        assert mean_abs_diff(decode_frames(path, [100, 163], "decord"), expected) < 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_open_video_is_one_protocol_with_the_same_frames(backend, make_video):
    path = make_video(num_frames=20)
    indices = [19, 3, 3, 0]
    with open_video(path, backend) as direct, VideoDecoder(backend, timeout=30).open(path) as guarded:
        memory = FramesVideo(direct.get(range(direct.num_frames)), direct.fps)
        for video in (direct, guarded, memory):
            assert isinstance(video, OpenVideo)
            assert (video.num_frames, video.size, video.fps) == (20, (64, 48), 25)
            assert np.array_equal(video.get(indices), direct.get(indices)), type(video).__name__
            # a region: the same pixels as cutting the whole frames (the guard sends only these)
            region = video.get(indices, region=(5, 7, 30, 40))
            assert region.shape == (4, 30, 40, 3) and np.array_equal(region, direct.get(indices)[:, 5:35, 7:47])
            with pytest.raises(ValueError, match=r"region \(40, 0, 10, 10\).*outside frames of 64x48"):
                video.get([0], region=(40, 0, 10, 10))
    with pytest.raises(IndexError, match=r"\[0, 20\)"):
        memory.get([-1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_streamed_chunks_are_the_frames_in_order(backend, tmp_path):
    path = str(tmp_path / "gop10.mkv")
    write_short_gop(path, "matroska", "libx264")  # keyframes every 10 frames
    with open_video(path, backend) as video:
        whole = video.get(range(video.num_frames))
    for chunk_frames in (1, 7, 40):
        with open_video(path, backend) as video:
            streamed = np.stack(list(iter_frames(video, chunk_bytes=chunk_frames * 64 * 48 * 3)))
        assert np.array_equal(streamed, whole), chunk_frames


def test_pyav_reads_continue_forward_and_seek_otherwise(tmp_path):
    path = str(tmp_path / "gop10.mkv")
    write_short_gop(path, "matroska", "libx264")
    # on from the last read, a little further, back, far ahead, across keyframes
    reads = [[0, 1, 2], [3, 4], [8, 12], [5], [27, 26], [39], [38, 39]]
    with open_video(path, "pyav") as video:
        for indices in reads:
            assert np.array_equal(video.get(indices), decode_frames(path, indices, "pyav")), indices


def test_a_dropped_pyav_reader_is_freed_at_once_not_by_the_garbage_collector(tmp_path):
    """A reader keeps its decoder where the last read stopped; neither may hold the other, or the
    decoder waits for the garbage collector, which may run in a forked loader worker, where
    freeing PyAV's scaler hangs on the parent's threads (seen in test_video_dataset)."""
    path = str(tmp_path / "gop10.mkv")
    write_short_gop(path, "matroska", "libx264")
    collecting = gc.isenabled()
    gc.disable()
    try:
        video = open_video(path, "pyav")
        video.get([0, 1])  # the decoder stays at frame 2 for the next read
        alive = weakref.ref(video)
        del video
        assert alive() is None
    finally:
        if collecting:
            gc.enable()
