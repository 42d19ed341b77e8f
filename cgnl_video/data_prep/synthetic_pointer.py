"""Synthetic videos whose class is how a moving object relates to a distant pointer.

A static pointer (a wedge shaded from a dark tail to a light tip) points along one of four
headings (right, down, left, up); half a frame away across its axis, a small object drawn like
the motion generator's (``synthetic.py``) translates along that axis for the whole clip, on the
wrapping (toroidal) frame:

    with_pointer      the object moves the way the pointer points
    against_pointer   ... the opposite way

Telling them apart needs both objects, half a frame apart, and temporal order:

- the pointer's heading is uniform and the object's heading, given the class, is the pointer's or
  its opposite, so each one alone is uniform in both classes: neither tells the class, only the
  pair does (an exclusive or of two signs along the shared axis);
- ``against_pointer`` is ``with_pointer`` played backwards (``time_reversed``): the object moves
  the other way, the pointer stays. The classes have the same distribution of frame sets and
  differ only in order, so an order-blind model is at chance, and so is a frame-level one;
- one frame has the same distribution in both classes: the pointer's place and the object's
  place along the axis are uniform on the torus at every frame, and the object's offset across
  the axis (half a frame, +-``_JITTER``) is drawn alike.

A plain 3D CNN has to bring the pointer's direction and the object's motion into one receptive
field before it can compare them; a non-local block relates the two places in one step (CGNL:
the object's features times a sum over the frame, the pointer's included).
"""

from dataclasses import dataclass, replace
from typing import Dict, Tuple

import numpy as np

from cgnl_video.data_prep import synthetic
from cgnl_video.data_prep.synthetic import ClipParams, Task, composite, object_frame, object_layer, paint, states
from cgnl_video.data_prep.synthetic_relation import HEADINGS, turned

# the angle (rad) that turns a shape's +u axis onto each heading (the image y axis points down)
ANGLES: Dict[str, float] = dict(zip(HEADINGS, (0.0, -np.pi / 2, np.pi, np.pi / 2)))
# class -> the object's heading relative to the pointer's, in quarter turns
RELATIONS: Dict[str, int] = {"with_pointer": 0, "against_pointer": 2}
CLASSES: Tuple[str, ...] = tuple(RELATIONS)
SEPARATION = 0.5  # the object's offset across the pointer's axis, fraction of the frame size
_JITTER = 0.05
_RADIUS = (0.08, 0.12)  # the object's, fraction of the frame size (the motion generator's: 0.14-0.22)
_POINTER_RADIUS = (0.14, 0.2)  # tip to centre, fraction of the frame size


@dataclass(frozen=True)
class PointerParams:
    """Everything that defines one clip; ``render`` is a pure function of it."""

    relation: str
    pointer: Tuple[float, float, str, float]  # centre x, y (pixels), heading, radius (pixels)
    colours: Tuple[Tuple[float, float, float], ...]  # the pointer's light and dark (RGB, 0-1)
    mover: ClipParams  # moves the whole clip along the pointer's axis
    scene: Tuple[int, Tuple[float, float, float], float]  # background seed, colour, noise std


def partner(relation: str) -> str:
    """The class whose clips are this class's clips played backwards."""
    return next(name for name, turn in RELATIONS.items() if turn != RELATIONS[relation])


def time_reversed(params: PointerParams, num_frames: int, height: int, width: int) -> PointerParams:
    """The partner-class clip whose frames are ``params``'s in reverse order (noise aside)."""
    mover = synthetic.time_reversed(params.mover, num_frames, height, width)
    return replace(params, relation=partner(params.relation), mover=mover)


def sample_params(rng: np.random.Generator, relation: str, height: int, width: int) -> PointerParams:
    """Draws a clip of class ``relation``; everything but the object's heading is drawn alike for both."""
    size = min(height, width)
    frame = np.array([width, height], dtype=float)
    heading = HEADINGS[int(rng.integers(len(HEADINGS)))]
    centre = rng.uniform(0.0, 1.0, 2) * frame
    pointer = (float(centre[0]), float(centre[1]), heading, float(rng.uniform(*_POINTER_RADIUS) * size))
    colours = tuple(tuple(float(c) for c in rng.uniform(low, high, 3)) for low, high in synthetic.COLOUR_RANGES[:2])
    drawn = synthetic.sample_params(rng, turned(heading, RELATIONS[relation]), height, width)
    across = 1 - synthetic.MOTIONS[drawn.motion][0]  # the coordinate (X or Y) across the axis
    start = list(drawn.start)
    offset = (SEPARATION + rng.uniform(-_JITTER, _JITTER)) * frame[across]
    start[across] = float(np.mod(centre[across] + offset, frame[across]))
    radius = float(rng.uniform(*_RADIUS) * size)
    mover = replace(drawn, start=tuple(start), radius=radius, ring_period=float(max(3.0, 0.5 * radius)))
    return PointerParams(relation, pointer, colours, mover, (drawn.seed, drawn.colours[2], drawn.noise_std))


def pointer_layer(params: PointerParams, num_frames: int, height: int, width: int) -> synthetic.Layer:
    """The wedge: tip ``radius`` ahead of the centre along the heading, base as far behind and
    as wide, shaded dark at the base to light at the tip; static (``num_frames`` copies)."""
    x, y, heading, radius = params.pointer
    state = np.tile([x, y, ANGLES[heading], 0.0], (num_frames, 1))
    u, v, _ = object_frame(state, height, width)
    # inside: behind the tip's two edges (half-width (radius - u) / 2) and ahead of the base
    inside = np.minimum((radius - u) / 2 - np.abs(v), u + radius)
    return paint(params.colours, inside + 0.5, 0.5 + 0.5 * u / radius)


def render(params: PointerParams, num_frames: int, height: int, width: int) -> np.ndarray:
    """Renders the clip: ``num_frames x height x width x 3`` uint8."""
    mover = object_layer(params.mover, states(params.mover, num_frames, height, width), height, width)
    return composite(params.scene, [pointer_layer(params, num_frames, height, width), mover], height, width)


POINTER_TASK = Task(CLASSES, len(CLASSES), sample_params, render)
