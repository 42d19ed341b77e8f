"""The synthetic action dataset: files, determinism, and that only temporal order tells the classes."""

import os
from dataclasses import replace
from pathlib import Path

import av
import decord
import numpy as np
import pytest
from conftest import run_tool

from cgnl_video.data_prep.synthetic import (
    CLASSES,
    generate_dataset,
    partner,
    render,
    sample_params,
    states,
    time_reversed,
)
from cgnl_video.datasets import video_io
from cgnl_video.datasets.lists import read_classes, read_video_list
from cgnl_video.datasets.video_io import write_video

REPO = Path(__file__).resolve().parents[1]
T, H, W = 16, 48, 48
PAIRS = [(m, partner(m)) for m in CLASSES[::2]]


@pytest.fixture(scope="module")
def clips():
    """40 rendered clips per class (no encoding), ``N x T x H x W x 3`` uint8."""
    rng = np.random.default_rng(0)
    return {m: np.stack([render(sample_params(rng, m, H, W), T, H, W) for _ in range(40)]) for m in CLASSES}


# --------------------------------------------------------------------------- write_video


def test_write_video_round_trip_through_both_decoders(tmp_path):
    frames = render(sample_params(np.random.default_rng(1), "move_left", 64, 96), 10, 64, 96)
    path = str(tmp_path / "clip.mp4")
    write_video(path, frames, fps=25)
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    reader = decord.VideoReader(path)
    assert len(reader) == 10 and reader.get_avg_fps() == 25
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 6  # lossy codec, but the same picture


def test_write_video_rejects_bad_frames(tmp_path):
    for shape, dtype in [((2, 31, 32, 4), np.uint8), ((2, 31, 32, 3), np.uint8), ((2, 32, 32, 3), float)]:
        with pytest.raises(ValueError):
            write_video(str(tmp_path / "x.mp4"), np.zeros(shape, dtype))
    assert os.listdir(tmp_path) == []


def test_failed_write_video_leaves_the_existing_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "clip.mp4"
    write_video(str(path), np.zeros((4, 32, 32, 3), np.uint8))
    before = path.read_bytes()
    from_ndarray, calls = av.VideoFrame.from_ndarray, []

    def fail_on_the_third_frame(array, format):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return from_ndarray(array, format=format)

    frame_class = type("FailingFrame", (), {"from_ndarray": staticmethod(fail_on_the_third_frame)})
    monkeypatch.setattr(video_io.av, "VideoFrame", frame_class)
    with pytest.raises(OSError, match="disk full"):
        write_video(str(path), np.full((6, 32, 32, 3), 200, np.uint8))
    assert len(calls) == 3
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["clip.mp4"]


# --------------------------------------------------------------------------- the dataset


def generate(out_dir, seed=0, workers=1):
    counts = {"train": 12, "val": 6, "test": 6}
    return generate_dataset(
        str(out_dir), seed=seed, counts=counts, num_frames=8, height=32, width=32, workers=workers
    )


def tree_bytes(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_is_deterministic_by_seed_and_lists_are_valid(tmp_path):
    assert generate(tmp_path / "a", workers=1) == {"train": 12, "val": 6, "test": 6}
    generate(tmp_path / "b", workers=2)
    generate(tmp_path / "c", seed=1)
    a, b, c = (tree_bytes(tmp_path / name) for name in "abc")
    assert a == b  # same seed: same bytes, whatever the number of workers
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a if k.suffix == ".mp4")
    root = tmp_path / "a"
    classes = read_classes(str(root / "classes.txt"))
    assert classes == list(CLASSES[:6])
    seen = []
    for split, n in (("train", 12), ("val", 6), ("test", 6)):
        records = read_video_list(str(root / f"{split}.csv"), prefix=str(root), num_classes=len(classes))
        assert len(records) == n and sorted(r.label for r in records) == sorted(list(range(6)) * (n // 6))
        for r in records:
            assert classes[r.label] in r.path
            reader = decord.VideoReader(r.path)
            assert len(reader) == 8 and reader[0].shape == (32, 32, 3)
        seen += [r.path for r in records]
    assert len(set(seen)) == 24


def test_dataset_rejects_unpaired_classes_and_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match="pairs"):
        generate_dataset(str(tmp_path), num_classes=3)
    with pytest.raises(ValueError, match="even"):
        generate_dataset(str(tmp_path), height=33)


def test_make_synthetic_dataset_tool(tmp_path):
    tool = str(REPO / "tools" / "make_synthetic_dataset.py")
    options = "--num-train 4 --num-val 2 --num-test 2 --num-classes 2 --frames 6 --size 32".split()
    result = run_tool(tool, [str(tmp_path / "out"), *options], timeout=120)
    assert "wrote 8 videos" in result.stdout
    assert read_classes(str(tmp_path / "out" / "classes.txt")) == ["move_left", "move_right"]
    assert len(read_video_list(str(tmp_path / "out" / "train.csv"), num_classes=2)) == 4


# --------------------------------------------------------------------------- only order tells the classes


@pytest.mark.parametrize("motion", CLASSES)
def test_a_clip_played_backwards_is_exactly_a_partner_clip(motion):
    params = replace(sample_params(np.random.default_rng(2), motion, H, W), noise_std=0.0)
    backwards = time_reversed(params, T, H, W)
    assert backwards.motion == partner(motion) != motion and partner(partner(motion)) == motion
    reversed_frames = render(params, T, H, W)[::-1]
    assert np.abs(render(backwards, T, H, W).astype(int) - reversed_frames).max() <= 1  # float rounding
    assert not np.array_equal(render(params, T, H, W), reversed_frames)


def test_every_class_draws_everything_but_the_motion_alike():
    for a, b in PAIRS + [("move_left", "rotate_cw"), ("move_up", "expand")]:
        pa, pb = (sample_params(np.random.default_rng(3), m, H, W) for m in (a, b))
        assert replace(pa, motion=b, speed=pb.speed) == pb


def test_every_frame_state_is_uniform_in_every_class():
    """Kolmogorov-Smirnov against the uniform law, per class, frame index and coordinate.

    96 tests at a family-wise 1% (Bonferroni): critical value sqrt(-ln(0.01 / 96 / 2) / 2) / sqrt(n).
    """
    n = 400
    periods = np.array([W, H, 2 * np.pi, 1.0])
    for motion in CLASSES:
        rng = np.random.default_rng(4)
        s = np.stack([states(sample_params(rng, motion, H, W), T, H, W) for _ in range(n)]) / periods
        for t in (0, T // 2, T - 1):
            for coordinate in range(4):
                values = np.sort(s[:, t, coordinate])
                ks = np.max(np.maximum(np.arange(1, n + 1) / n - values, values - np.arange(n) / n))
                assert ks < 2.22 / np.sqrt(n), (motion, t, coordinate, ks)


def permutation_p_value(a, b, permutations=400):
    """P-value of the gap between the mean feature vectors of ``a`` and ``b`` (clips x features),
    against random relabellings of the pooled clips."""

    def gap(x, y):
        return np.abs(x.mean(0) - y.mean(0)).sum()

    pooled, rng = np.concatenate([a, b]), np.random.default_rng(0)
    orders = (rng.permutation(len(pooled)) for _ in range(permutations))
    hits = sum(gap(pooled[o[: len(a)]], pooled[o[len(a) :]]) >= gap(a, b) for o in orders)
    return (hits + 1) / (permutations + 1)


def test_pixel_statistics_of_paired_classes_are_indistinguishable(clips):
    """Per clip, pooled over time: where the object spends its time (mean |frame - temporal median|
    on an 8x8 grid) and the grey-level histogram. Paired classes must not differ beyond what random
    relabelling gives (8 permutation tests, each at 0.5%)."""

    def features(c):
        grey = c.astype(np.float32).mean(axis=-1)
        presence = np.abs(grey - np.median(grey, axis=1, keepdims=True)).mean(axis=1)
        presence = presence.reshape(len(c), 8, H // 8, 8, W // 8).mean(axis=(2, 4)).reshape(len(c), -1)
        histograms = np.stack([np.histogram(g, bins=32, range=(0, 255))[0] / g.size for g in grey])
        return presence, histograms

    for a, b in PAIRS:
        for feature_a, feature_b in zip(features(clips[a]), features(clips[b])):
            assert permutation_p_value(feature_a, feature_b) > 0.005, (a, b)


def nearest_centroid_accuracy(train, train_labels, test, test_labels):
    """Accuracy of a nearest-class-mean classifier on standardised features."""
    mean, std = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mean) / std, (test - mean) / std
    centroids = np.stack([train[train_labels == k].mean(0) for k in np.unique(train_labels)])
    return (np.argmin(((test[:, None] - centroids) ** 2).sum(-1), axis=1) == test_labels).mean()


def frame_level_accuracy(videos):
    """Nearest class mean on 8x8 colour thumbnails of single frames, trained on the first half of
    each class's videos (``N x T x H x W x 3``) and tested on the second half."""
    thumbs = [v.reshape(*v.shape[:2], 8, v.shape[2] // 8, 8, v.shape[3] // 8, 3).mean((3, 5)).astype(np.float32)
              for v in videos.values()]
    halves = [(t[: len(t) // 2], t[len(t) // 2:]) for t in thumbs]
    features = [np.concatenate([h[i].reshape(-1, 8 * 8 * 3) for h in halves]) for i in range(2)]
    labels = [np.concatenate([np.full(h[i].shape[0] * h[i].shape[1], k) for k, h in enumerate(halves)])
              for i in range(2)]
    return nearest_centroid_accuracy(features[0], labels[0], features[1], labels[1])


def test_a_frame_level_classifier_sits_at_chance_while_motion_direction_is_plain(clips):
    """Single frames (8x8 colour thumbnails) carry no class; a temporal cue separates left from right."""
    thumbs = {m: c.reshape(40, T, 8, H // 8, 8, W // 8, 3).mean((3, 5)) for m, c in clips.items()}
    train = np.concatenate([thumbs[m][:20].reshape(20 * T, -1) for m in CLASSES])
    test = np.concatenate([thumbs[m][20:].reshape(20 * T, -1) for m in CLASSES])
    labels = np.repeat(np.arange(len(CLASSES)), 20 * T)
    assert nearest_centroid_accuracy(train, labels, test, labels) < 1 / len(CLASSES) + 0.08  # chance is 1/8

    def horizontal_flow(c):  # brightness constancy: I_t+1 - I_t = -v dI/dx
        grey = c.astype(np.float32).mean(axis=-1)
        dt, dx = np.diff(grey, axis=1), np.gradient(grey, axis=-1)[:, :-1]
        return -(dt * dx).sum(axis=(1, 2, 3)) / (dx * dx).sum(axis=(1, 2, 3))

    assert (horizontal_flow(clips["move_left"]) < 0).all()
    assert (horizontal_flow(clips["move_right"]) > 0).all()
    assert (horizontal_flow(clips["move_left"][:, ::-1]) > 0).all()  # backwards, a left clip moves right
