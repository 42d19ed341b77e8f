"""The spin set (a symmetric disc drifting or spinning): determinism, order-only classes, aliasing."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tool, try_tool
from test_synthetic import nearest_centroid_accuracy, tree_bytes

from cgnl_video.config import load_config
from cgnl_video.data_prep import synthetic
from cgnl_video.data_prep.synthetic import generate_dataset, partner, states
from cgnl_video.data_prep.synthetic_spin import (
    CLASSES,
    DEFAULT_SPIN_SPEED,
    TEXTURES,
    max_sampling_rate,
    render,
    sample_params,
    spin_task,
    time_reversed,
)
from cgnl_video.datasets.lists import read_classes, read_video_list

REPO = Path(__file__).resolve().parents[1]
T, H, W = 12, 40, 40


def draw(motion, seed=0, **options):
    return sample_params(np.random.default_rng(seed), motion, H, W, **options)


def test_same_seed_same_bytes_and_valid_lists(tmp_path):
    counts = {"train": 6, "val": 6, "test": 6}
    task = spin_task(texture="checker", folds=4, spin_speed=(0.1, 0.2))
    for name, seed, workers in (("a", 0, 1), ("b", 0, 2), ("c", 1, 1)):
        generate_dataset(str(tmp_path / name), seed=seed, counts=counts, num_frames=6, height=32, width=32,
                         workers=workers, task=task)
    a, b, c = (tree_bytes(tmp_path / name) for name in "abc")
    assert a == b  # whatever the number of workers
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a if k.suffix == ".mp4")
    assert read_classes(str(tmp_path / "a" / "classes.txt")) == list(CLASSES)
    records = read_video_list(str(tmp_path / "a" / "test.csv"), prefix=str(tmp_path / "a"), num_classes=6)
    assert sorted(r.label for r in records) == list(range(6))


def test_the_tool_writes_the_spin_set_and_checks_its_options(tmp_path):
    tool = str(REPO / "tools" / "make_synthetic_dataset.py")
    options = "--task spin --texture checker --folds 5 --spin-speed 0.1 0.2 --num-train 6 --num-val 0 --num-test 0"
    result = run_tool(tool, [str(tmp_path / "out"), *options.split(), "--frames", "4", "--size", "32"], timeout=120)
    assert "wrote 6 videos" in result.stdout
    assert read_classes(str(tmp_path / "out" / "classes.txt")) == list(CLASSES)
    for bad, message in (("--folds 3", "option of --task spin"),
                         ("--task spin --folds 3 --spin-speed 0.2 1.1", "alias"),
                         ("--task spin --folds 0", "folds >= 1")):
        refused = try_tool(tool, [str(tmp_path / "x"), *bad.split()], timeout=120)
        assert refused.returncode == 2 and message in refused.stderr, bad
    assert not (tmp_path / "x").exists()


def test_classes_are_the_motion_generators_first_six_in_reversed_pairs():
    assert CLASSES == synthetic.CLASSES[:6]
    assert [partner(m) for m in CLASSES] == [CLASSES[i ^ 1] for i in range(6)]


@pytest.mark.parametrize("texture", TEXTURES)
@pytest.mark.parametrize("motion", CLASSES)
def test_a_clip_played_backwards_is_exactly_a_partner_clip(motion, texture):
    params = draw(motion, 2, texture=texture)
    params = replace(params, clip=replace(params.clip, noise_std=0.0))
    backwards = time_reversed(params, T, H, W)
    assert backwards.clip.motion == partner(motion) != motion
    forwards = render(params, T, H, W)
    assert np.abs(render(backwards, T, H, W).astype(int) - forwards[::-1]).max() <= 1  # float rounding
    assert not np.array_equal(forwards, forwards[::-1])


def test_every_class_draws_everything_but_the_motion_alike():
    spin, drift = (0.15, 0.3), (0.01, 0.03)
    for a, b in [("move_left", "move_right"), ("rotate_ccw", "rotate_cw"), ("move_up", "rotate_cw")]:
        pa, pb = (draw(m, 3, spin_speed=spin, drift_speed=drift) for m in (a, b))
        assert replace(pa, clip=replace(pa.clip, motion=b, speed=pb.clip.speed)) == pb
        # the speed sits at the same place of its class's range
        fractions = []
        for p in (pa, pb):
            low, high = spin if p.clip.motion.startswith("rotate") else drift
            scale = 1.0 if p.clip.motion.startswith("rotate") else W
            fractions.append((p.clip.speed / scale - low) / (high - low))
        assert fractions[0] == pytest.approx(fractions[1]) and 0 <= fractions[0] <= 1


@pytest.mark.parametrize("texture, folds", [("stripes", 3), ("checker", 5)])
def test_the_texture_repeats_every_turn_of_two_pi_over_folds(texture, folds):
    """The premise of aliasing: a turn by one period is invisible, half a period is not."""
    params = draw("rotate_cw", 4, texture=texture, folds=folds)
    params = replace(params, clip=replace(params.clip, noise_std=0.0))
    frame = render(params, 1, H, W)

    def turned(angle):
        start = params.clip.start
        moved = replace(params.clip, start=(start[0], start[1], start[2] + angle, start[3]))
        return render(replace(params, clip=moved), 1, H, W)

    assert np.abs(turned(2 * np.pi / folds).astype(int) - frame).max() <= 1
    assert np.abs(turned(np.pi / folds).astype(int) - frame).max() > 100


def test_max_sampling_rate_keeps_the_turn_below_half_a_period():
    for folds, speed in [(3, 0.3), (3, 0.2), (4, 0.25), (5, 0.2), (2, 0.5)]:
        rate = max_sampling_rate(folds, speed)
        assert rate >= 1 and rate * speed < np.pi / folds <= (rate + 1) * speed
    assert max_sampling_rate(3, 0.3) == 3  # 0.9 rad < 1.047 rad <= 1.2 rad


def test_the_demo_recipe_samples_the_default_spin_set_without_aliasing():
    cfg = load_config(str(REPO / "configs" / "demo" / "synthetic_cgnl.yaml"))
    assert 1 <= cfg.DATA.SAMPLING_RATE <= max_sampling_rate(3, DEFAULT_SPIN_SPEED[1])


def test_every_frame_state_is_uniform_in_every_class():
    """Kolmogorov-Smirnov against the uniform law of x, y and angle, per class and frame index
    (54 tests at a family-wise 1%, Bonferroni)."""
    n, periods = 300, np.array([W, H, 2 * np.pi])
    for motion in CLASSES:
        rng = np.random.default_rng(5)
        s = np.stack([states(sample_params(rng, motion, H, W).clip, T, H, W)[:, :3] for _ in range(n)]) / periods
        for t in (0, T // 2, T - 1):
            for coordinate in range(3):
                values = np.sort(s[:, t, coordinate])
                ks = np.max(np.maximum(np.arange(1, n + 1) / n - values, values - np.arange(n) / n))
                assert ks < np.sqrt(-np.log(0.01 / 54 / 2) / 2) / np.sqrt(n), (motion, t, coordinate, ks)


def test_a_frame_level_classifier_sits_at_chance():
    """Single frames (8x8 colour thumbnails) of 40 clips per class carry no class (chance 1/6), while
    the same classifier on frame differences tells drifting from spinning."""
    rng = np.random.default_rng(6)
    clips = {m: np.stack([render(sample_params(rng, m, H, W), T, H, W) for _ in range(40)]) for m in CLASSES}
    thumbs = {m: c.astype(np.float32).reshape(40, T, 8, H // 8, 8, W // 8, 3).mean((3, 5)) for m, c in clips.items()}
    labels = np.repeat(np.arange(len(CLASSES)), 20 * T)
    train = np.concatenate([thumbs[m][:20].reshape(20 * T, -1) for m in CLASSES])
    test = np.concatenate([thumbs[m][20:].reshape(20 * T, -1) for m in CLASSES])
    assert nearest_centroid_accuracy(train, labels, test, labels) < 1 / 6 + 0.06

    def moving(c):  # how much of the frame changes between frames: the disc's displacement
        grey = c.astype(np.float32).mean(axis=-1)
        return np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2, 3))

    drifting = np.concatenate([moving(clips[m]) for m in CLASSES[:4]])
    spinning = np.concatenate([moving(clips[m]) for m in CLASSES[4:]])
    assert np.median(drifting) != pytest.approx(np.median(spinning), rel=0.05)
