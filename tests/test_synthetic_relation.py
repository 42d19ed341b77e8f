"""The relation set: determinism, and that only two distant objects in temporal order tell the class."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tool, try_tool
from test_synthetic import frame_level_accuracy, tree_bytes

from cgnl_video.data_prep import synthetic_relation
from cgnl_video.data_prep.synthetic import generate_dataset, object_layer
from cgnl_video.data_prep.synthetic_relation import (
    CLASSES,
    HEADINGS,
    MIN_DISTANCE,
    MIN_SEPARATION,
    RELATION_TASK,
    TURNS,
    min_distance,
    object_states,
    relation_task,
    render,
    sample_params,
    toroidal_distance,
)
from cgnl_video.datasets.lists import read_classes, read_video_list

REPO = Path(__file__).resolve().parents[1]
T, H, W = 16, 48, 48


SEPARATIONS = (0.5, MIN_SEPARATION)  # the default, half a frame, and the closest


def draws(relation, n, seed=0, separation=0.5):
    rng = np.random.default_rng(seed)
    return [sample_params(rng, relation, H, W, separation) for _ in range(n)]


def deterministic_dataset(tmp_path, task):
    """Writes a two-class ``task`` set with seed 0 (1 and 2 workers) and seed 1: the same seed gives
    the same bytes, another seed other videos; returns the seed-0 tree (``tree_bytes``) under ``a``."""
    counts = {"train": 4, "val": 2, "test": 2}
    for name, seed, workers in (("a", 0, 1), ("b", 0, 2), ("c", 1, 1)):
        generate_dataset(str(tmp_path / name), seed=seed, counts=counts, num_frames=8, height=32, width=32,
                         workers=workers, task=task)
    a, b, c = (tree_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a if k.suffix == ".mp4")
    records = read_video_list(str(tmp_path / "a" / "train.csv"), prefix=str(tmp_path / "a"), num_classes=2)
    assert sorted(r.label for r in records) == [0, 0, 1, 1]
    return a


def assert_backwards_is_a_partner_clip(params, relation, generator, shape):
    """Played backwards, the noise-free clip of ``params`` (drawn for ``shape`` = T, H, W) is exactly
    ``generator``'s partner-class clip."""
    params = replace(params, scene=params.scene[:2] + (0.0,))  # no noise: the rest must match exactly
    backwards = generator.time_reversed(params, *shape)
    partner_of = generator.partner
    assert backwards.relation == partner_of(relation) != relation and partner_of(partner_of(relation)) == relation
    frames = generator.render(params, *shape)
    assert np.abs(generator.render(backwards, *shape).astype(int) - frames[::-1]).max() <= 1  # float rounding
    assert not np.array_equal(frames, frames[::-1])


def test_same_seed_same_bytes_and_valid_lists(tmp_path):
    deterministic_dataset(tmp_path, RELATION_TASK)
    assert read_classes(str(tmp_path / "a" / "classes.txt")) == list(CLASSES)


def test_the_tool_writes_the_relation_set(tmp_path):
    tool = str(REPO / "tools" / "make_synthetic_dataset.py")
    options = "--task relation --num-train 2 --num-val 2 --num-test 2 --frames 6 --size 32 --workers 1".split()
    result = run_tool(tool, [str(tmp_path), *options], timeout=120)
    assert "wrote 6 videos" in result.stdout
    assert read_classes(str(tmp_path / "classes.txt")) == ["turn_right", "turn_left"]
    too_many = run_tool(tool, [str(tmp_path / "x"), "--task", "relation", "--num-classes", "4"], check=False,
                        timeout=120)
    assert too_many.returncode == 2 and "--num-classes 4: --task relation has 2 classes" in too_many.stderr
    assert "Traceback" not in too_many.stderr and not (tmp_path / "x").exists()
    for bad, message in (("--task relation --separation 0.2", "could overlap"), ("--separation 0.4", "--task relation")):
        refused = try_tool(tool, [str(tmp_path / "x"), *bad.split()], timeout=120)
        assert refused.returncode == 2 and message in refused.stderr, bad
    assert not (tmp_path / "x").exists()


def test_separation_is_checked_and_the_default_draws_nothing_more():
    with pytest.raises(ValueError, match="overlap"):
        relation_task(MIN_SEPARATION - 0.01)
    with pytest.raises(ValueError):
        relation_task(0.51)
    assert MIN_DISTANCE == min_distance(0.5) and min_distance(MIN_SEPARATION) * 1.0 > 2 * 0.12
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    assert RELATION_TASK.sample(rng_a, "turn_left", H, W) == sample_params(rng_b, "turn_left", H, W)
    assert rng_a.random() == rng_b.random()


@pytest.mark.parametrize("separation", SEPARATIONS)
@pytest.mark.parametrize("relation", CLASSES)
def test_a_clip_played_backwards_is_exactly_a_partner_clip(relation, separation):
    assert_backwards_is_a_partner_clip(draws(relation, 1, seed=2, separation=separation)[0], relation,
                                       synthetic_relation, (T, H, W))


def test_both_classes_draw_everything_but_the_second_heading_alike():
    right, left = (draws(relation, 1, seed=3)[0] for relation in CLASSES)
    assert right.first == left.first and right.scene == left.scene
    assert replace(right.second, motion=left.second.motion) == left.second
    turn = (HEADINGS.index(right.second.motion) - HEADINGS.index(right.first.motion)) % 4
    assert turn == TURNS["turn_right"] % 4 and (HEADINGS.index(left.second.motion) - HEADINGS.index(left.first.motion)) % 4 == 3


def test_each_object_alone_moves_alike_in_both_classes_only_the_pair_differs():
    """Heading counts of the first and of the second object: uniform in both classes (each count
    within 4.5 binomial standard deviations of n / 4); the (first, second) pairs of the classes
    are disjoint."""
    n = 800
    pairs = {}
    for relation in CLASSES:
        clips = draws(relation, n, seed=4)
        pairs[relation] = {(c.first.motion, c.second.motion) for c in clips}
        for role in ("first", "second"):
            counts = np.array([sum(getattr(c, role).motion == h for c in clips) for h in HEADINGS])
            assert np.abs(counts - n / 4).max() < 4.5 * np.sqrt(n * 3 / 16), (relation, role, counts)
        speeds = [c.first.speed for c in clips], [c.second.speed for c in clips]
        assert abs(np.mean(speeds[0]) - np.mean(speeds[1])) < 0.05 * np.mean(speeds[0])
    assert not pairs["turn_right"] & pairs["turn_left"]


def two_sample_ks(a, b):
    values = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), values, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), values, side="right") / len(b)
    return np.abs(cdf_a - cdf_b).max()


@pytest.mark.parametrize("separation", SEPARATIONS)
def test_every_frame_places_the_objects_alike_in_both_classes(separation):
    """Per frame index: the first object's x and y are uniform, and the offset between the objects
    (wrapped |dx|, |dy|, which do not say which object is which) has the same law in both classes.
    Two-sample Kolmogorov-Smirnov, 3 frames x 2 components, family-wise 1%."""
    n = 600
    offsets = {}
    for relation in CLASSES:
        states = [object_states(c, T, H, W) for c in draws(relation, n, seed=5, separation=separation)]
        first = np.stack([s[0] for s in states])
        d = np.abs(first[..., :2] - np.stack([s[1] for s in states])[..., :2])
        offsets[relation] = np.minimum(d, np.array([W, H]) - d)
        for t in (0, T // 2, T - 1):
            for axis, size in enumerate((W, H)):
                values = np.sort(first[:, t, axis] / size)
                ks = np.max(np.maximum(np.arange(1, n + 1) / n - values, values - np.arange(n) / n))
                assert ks < 2.0 / np.sqrt(n), (relation, t, axis, ks)
    critical = np.sqrt(-np.log(0.01 / 6 / 2) / 2) * np.sqrt(2 / n)
    for t in (0, T // 2, T - 1):
        for axis in range(2):
            ks = two_sample_ks(offsets["turn_right"][:, t, axis], offsets["turn_left"][:, t, axis])
            assert ks < critical, (t, axis, ks)


def test_closer_than_half_a_frame_the_offset_law_is_symmetric():
    """A backward clip's offset from its first to its second mover is the forward one's negative:
    the mid-clip signed offset (wrapped to +-half a frame) must have the same law as its negative
    (two-sample Kolmogorov-Smirnov per axis, 1% each), and cover both signs."""
    n = 600
    clips = draws("turn_right", n, seed=8, separation=MIN_SEPARATION)
    offset = np.array([np.subtract(c.second.start[:2], c.first.start[:2]) for c in clips]) / [W, H]
    offset = np.mod(offset + 0.5, 1.0) - 0.5
    for axis in range(2):
        assert two_sample_ks(offset[:, axis], -offset[:, axis]) < 1.63 * np.sqrt(2 / n)
        assert 0.4 < (offset[:, axis] > 0).mean() < 0.6
    assert np.abs(np.abs(offset) - MIN_SEPARATION).max() <= 0.05 + 1e-9


@pytest.mark.parametrize("separation", SEPARATIONS)
def test_the_objects_stay_far_apart_and_never_overlap(separation):
    for relation in CLASSES:
        clips = draws(relation, 300, seed=6, separation=separation)
        distances = np.stack([toroidal_distance(*object_states(c, T, H, W), H, W) for c in clips])
        assert distances.min() >= min_distance(separation) * min(H, W) - 1e-9
        for c in clips[:10]:
            first, second = object_states(c, T, H, W)
            coverage = object_layer(c.first, first, H, W)[0] * object_layer(c.second, second, H, W)[0]
            assert coverage.max() == 0.0


def test_a_frame_level_classifier_sits_at_chance():
    """8x8 colour thumbnails of single frames, nearest class mean: at chance (1/2) on held-out clips."""
    videos = {r: np.stack([render(c, T, H, W) for c in draws(r, 60, seed=7)]) for r in CLASSES}
    assert abs(frame_level_accuracy(videos) - 0.5) < 0.06
