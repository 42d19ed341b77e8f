"""Synthetic motion videos of a symmetric disc: a set the demo's motion generator does not make.

A check of the demo recipe on data it was not tuned on (issue 16). One disc carrying a
``folds``-fold symmetric texture (it looks the same turned by ``2 pi / folds``) drifts or spins
over the motion generator's background (``synthetic.py``, whose dynamics, colours, background,
noise and time-reversal argument it reuses); the classes are the motion generator's first six:

    move_left / move_right   the disc drifts left / right (wrapping around the frame)
    move_up / move_down      ... up / down
    rotate_ccw / rotate_cw   it spins one way / the other, fast: 0.15-0.3 rad per frame by default

Textures (``TEXTURES``):

    stripes   ``folds`` light and ``folds`` dark sectors (angular stripes), nothing else
    checker   a polar checkerboard: the sectors cut by concentric rings (1.5-2.5 rings per radius)

What tells the classes apart, and what can hide it:

- a drift class from its partner: the direction of the disc's displacement, a few pixels per
  sampled frame; from the spin classes: the disc's displacement at all;
- spin direction: only the sign of the turn between sampled frames. The texture repeats every
  ``2 pi / folds``, so a turn of ``s`` looks exactly like a turn of ``s - 2 pi / folds``: a
  model sees the spin direction only while the turn per *sampled* frame (speed x sampling rate)
  stays below half a period, ``pi / folds`` (``max_sampling_rate``). With 3 folds at 0.3 rad
  per frame that is a sampling rate of at most 3 (0.9 rad < 1.047 rad); every 4th frame (1.2
  rad) the fastest spins look like the other direction;
- unlike the motion generator's object, the disc has no shading that marks one orientation:
  nothing but the turn between frames tells the direction.

As in the motion generator, the disc's position and angle start uniformly at random and
everything but the motion is drawn alike for all classes, so one frame has the same
distribution in every class; each class is its partner's time reversal.
"""

from dataclasses import dataclass, replace
from functools import partial
from typing import Tuple

import numpy as np

from cgnl_video.data_prep import synthetic
from cgnl_video.data_prep.synthetic import ANGLE, ClipParams, Task, X, composite, object_frame, paint, states

CLASSES: Tuple[str, ...] = synthetic.CLASSES[:6]
TEXTURES: Tuple[str, ...] = ("stripes", "checker")
DEFAULT_SPIN_SPEED = (0.15, 0.3)  # rad per frame
DEFAULT_DRIFT_SPEED = (0.01, 0.03)  # fraction of the frame size per frame
_RADIUS = (0.2, 0.3)  # fraction of the frame size
_RINGS = (1.5, 2.5)  # checker: rings per disc radius
_EDGE = 4.0  # sharpness of the stripes (tanh of 4 cos): near-binary sectors, anti-aliased


@dataclass(frozen=True)
class SpinParams:
    """Everything that defines one clip; ``render`` is a pure function of it."""

    clip: ClipParams  # the motion generator's: motion, start, speed, radius, colours, noise, seed
    texture: str
    folds: int
    rings: float  # checker: rings per radius


def max_sampling_rate(folds: int, max_speed: float) -> int:
    """The largest sampling rate (frames) at which the fastest spin still turns less than half a
    texture period, ``pi / folds``, between sampled frames: above it the direction aliases."""
    return int(np.ceil(np.pi / folds / max_speed)) - 1


def sample_params(
    rng: np.random.Generator,
    motion: str,
    height: int,
    width: int,
    texture: str = "stripes",
    folds: int = 3,
    spin_speed: Tuple[float, float] = DEFAULT_SPIN_SPEED,
    drift_speed: Tuple[float, float] = DEFAULT_DRIFT_SPEED,
) -> SpinParams:
    """Draws a clip of class ``motion``; everything but the motion is drawn alike for all classes."""
    coordinate = synthetic.MOTIONS[motion][0]
    drawn = synthetic.sample_params(rng, motion, height, width)
    size = min(height, width)
    fraction = rng.uniform(0.0, 1.0)  # where the speed lies in its range, drawn alike for every class
    low, high = spin_speed if coordinate == ANGLE else drift_speed
    scale = 1.0 if coordinate == ANGLE else (width if coordinate == X else height)
    clip = replace(drawn, speed=float((low + fraction * (high - low)) * scale),
                   radius=float(rng.uniform(*_RADIUS) * size))
    return SpinParams(clip, texture, int(folds), float(rng.uniform(*_RINGS)))


def disc_layer(params: SpinParams, state: np.ndarray, height: int, width: int) -> synthetic.Layer:
    """The disc at each frame's ``state`` (``T x 4``): coverage and colour, as ``object_layer``."""
    u, v, _ = object_frame(state, height, width)
    r = np.hypot(u, v)
    shade = np.cos(params.folds * np.arctan2(v, u))
    if params.texture == "checker":
        shade = shade * np.cos(2 * np.pi * params.rings * r / params.clip.radius)
    return paint(params.clip.colours, params.clip.radius - r + 0.5, 0.5 + 0.5 * np.tanh(_EDGE * shade))


def render(params: SpinParams, num_frames: int, height: int, width: int) -> np.ndarray:
    """Renders the clip: ``num_frames x height x width x 3`` uint8."""
    clip = params.clip
    layer = disc_layer(params, states(clip, num_frames, height, width), height, width)
    return composite((clip.seed, clip.colours[2], clip.noise_std), [layer], height, width)


def time_reversed(params: SpinParams, num_frames: int, height: int, width: int) -> SpinParams:
    """The partner-class clip whose frames are ``params``'s in reverse order (noise aside)."""
    return replace(params, clip=synthetic.time_reversed(params.clip, num_frames, height, width))


def spin_task(
    texture: str = "stripes",
    folds: int = 3,
    spin_speed: Tuple[float, float] = DEFAULT_SPIN_SPEED,
    drift_speed: Tuple[float, float] = DEFAULT_DRIFT_SPEED,
) -> Task:
    """The generator for ``generate_dataset(task=...)`` with these options."""
    if texture not in TEXTURES or folds < 1:
        raise ValueError(f"texture {texture!r}, folds {folds}: expected one of {TEXTURES} and folds >= 1")
    for name, (low, high) in (("spin_speed", spin_speed), ("drift_speed", drift_speed)):
        if not 0 < low <= high:
            raise ValueError(f"{name} {low}-{high}: expected 0 < low <= high")
    if drift_speed[1] >= 0.5:
        raise ValueError(f"drift_speed up to {drift_speed[1]}: half a frame per frame or more hides the direction")
    if spin_speed[1] >= np.pi / folds:
        raise ValueError(f"spin_speed up to {spin_speed[1]} rad: {folds} folds alias from pi / {folds} per frame")
    sample = partial(sample_params, texture=texture, folds=folds, spin_speed=tuple(spin_speed),
                     drift_speed=tuple(drift_speed))
    return Task(CLASSES, len(CLASSES), sample, render)


SPIN_TASK = spin_task()
