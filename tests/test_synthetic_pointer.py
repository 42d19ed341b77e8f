"""The pointer set: determinism, and that only a moving object with a distant pointer, in temporal
order, tells the class."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tool
from test_synthetic import frame_level_accuracy, tree_bytes
from test_synthetic_relation import assert_backwards_is_a_partner_clip, deterministic_dataset, two_sample_ks

from cgnl_video.data_prep import synthetic_pointer
from cgnl_video.data_prep.synthetic import MOTIONS, object_layer, states
from cgnl_video.data_prep.synthetic_pointer import (
    CLASSES,
    HEADINGS,
    POINTER_TASK,
    SEPARATION,
    pointer_layer,
    render,
    sample_params,
)
from cgnl_video.datasets.lists import read_classes

REPO = Path(__file__).resolve().parents[1]
T, H, W = 16, 48, 48


def draws(relation, n, seed=0):
    rng = np.random.default_rng(seed)
    return [sample_params(rng, relation, H, W) for _ in range(n)]


def test_same_seed_same_bytes_and_the_tool_writes_the_set(tmp_path):
    a = deterministic_dataset(tmp_path, POINTER_TASK)
    tool = str(REPO / "tools" / "make_synthetic_dataset.py")
    options = "--task pointer --num-train 4 --num-val 2 --num-test 2 --frames 8 --size 32 --workers 1".split()
    assert "wrote 8 videos" in run_tool(tool, [str(tmp_path / "d"), *options], timeout=120).stdout
    assert tree_bytes(tmp_path / "d") == a
    assert read_classes(str(tmp_path / "d" / "classes.txt")) == ["with_pointer", "against_pointer"]


@pytest.mark.parametrize("relation", CLASSES)
def test_a_clip_played_backwards_is_exactly_a_partner_clip(relation):
    assert_backwards_is_a_partner_clip(draws(relation, 1, seed=2)[0], relation, synthetic_pointer, (T, H, W))


def test_both_classes_draw_everything_but_the_movers_heading_alike():
    along, against = (draws(relation, 1, seed=3)[0] for relation in CLASSES)
    assert along.pointer == against.pointer and along.colours == against.colours and along.scene == against.scene
    assert replace(along.mover, motion=against.mover.motion) == against.mover
    assert along.mover.motion == along.pointer[2]
    assert (HEADINGS.index(against.mover.motion) - HEADINGS.index(along.mover.motion)) % 4 == 2


def test_each_object_alone_is_alike_in_both_classes_only_the_pair_differs():
    """Heading counts of the pointer and of the object: uniform in both classes (each within 4.5
    binomial standard deviations of n / 4); the (pointer, object) pairs of the classes are disjoint."""
    n = 800
    pairs = {}
    for relation in CLASSES:
        clips = draws(relation, n, seed=4)
        pairs[relation] = {(c.pointer[2], c.mover.motion) for c in clips}
        for heading_of in (lambda c: c.pointer[2], lambda c: c.mover.motion):
            counts = np.array([sum(heading_of(c) == h for c in clips) for h in HEADINGS])
            assert np.abs(counts - n / 4).max() < 4.5 * np.sqrt(n * 3 / 16), (relation, counts)
    assert len(pairs["with_pointer"]) == 4 and not pairs["with_pointer"] & pairs["against_pointer"]


def mover_offsets(clip):
    """Per frame: the object's offset from the pointer's centre, along and across the axis, wrapped
    to [0, 1) of the frame."""
    coordinate = MOTIONS[clip.mover.motion][0]
    size = np.array([W, H], dtype=float)
    offset = np.mod(states(clip.mover, T, H, W)[:, :2] - np.array(clip.pointer[:2]), size) / size
    return offset[:, coordinate], offset[:, 1 - coordinate]


def test_every_frame_places_the_objects_alike_in_both_classes():
    """Per frame index: the object's offset from the pointer along the axis is uniform, and across it
    has the same law in both classes (two-sample Kolmogorov-Smirnov, 3 frames, family-wise 1%);
    the pointer's centre is uniform."""
    n = 600
    across = {}
    for relation in CLASSES:
        clips = draws(relation, n, seed=5)
        along, across[relation] = (np.stack(v) for v in zip(*map(mover_offsets, clips)))
        for t in (0, T // 2, T - 1):
            values = np.sort(along[:, t])
            assert np.max(np.maximum(np.arange(1, n + 1) / n - values, values - np.arange(n) / n)) < 2.0 / np.sqrt(n)
        centres = np.sort(np.array([c.pointer[0] / W for c in clips]))
        assert np.max(np.abs(centres - (np.arange(n) + 0.5) / n)) < 2.0 / np.sqrt(n)
    critical = np.sqrt(-np.log(0.01 / 3 / 2) / 2) * np.sqrt(2 / n)
    for t in (0, T // 2, T - 1):
        assert two_sample_ks(across["with_pointer"][:, t], across["against_pointer"][:, t]) < critical
    assert np.abs(across["with_pointer"] - SEPARATION).max() <= 0.05 + 1e-9


def test_the_objects_never_overlap():
    for relation in CLASSES:
        for clip in draws(relation, 20, seed=6):
            mover = object_layer(clip.mover, states(clip.mover, T, H, W), H, W)[0]
            pointer = pointer_layer(clip, T, H, W)[0]
            assert pointer.max() == 1.0 and mover.max() == 1.0
            assert (mover * pointer).max() == 0.0


def test_the_pointer_shows_its_heading():
    """Its light tip lies ahead of its centre along the heading, its coverage behind."""
    clip = draws("with_pointer", 1, seed=7)[0]
    clip = replace(clip, pointer=(24.0, 24.0, "move_right", 10.0), colours=((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    alpha, colour = pointer_layer(clip, 1, H, W)
    assert alpha[0, 24, 32, 0] == 1.0 and alpha[0, 24, 12, 0] == 0.0 and alpha[0, 30, 32, 0] == 0.0
    assert colour[0, 24, 32].mean() > 0.8 > 0.2 > colour[0, 24, 16].mean()


def test_a_frame_level_classifier_sits_at_chance():
    """8x8 colour thumbnails of single frames, nearest class mean: at chance (1/2) on held-out clips."""
    videos = {r: np.stack([render(c, T, H, W) for c in draws(r, 60, seed=8)]) for r in CLASSES}
    assert abs(frame_level_accuracy(videos) - 0.5) < 0.06
