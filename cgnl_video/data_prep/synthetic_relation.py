"""Synthetic videos whose class is a relation between two distant objects at two times.

Two textured objects (drawn like the motion generator's, ``synthetic.py``, but smaller) sit
on the same toroidal frame about half a frame apart in both x and y (``separation``, closer on
request: ``relation_task``). In the first half
of the clip the *first* object translates along one of four headings (right, down, left,
up) while the second rests; in the second half the first rests and the second
translates. The class is how the second heading relates to the first:

    turn_right   the second object moves along the first's heading turned 90 degrees
                 clockwise on screen (first right, then down; first up, then right ...)
    turn_left    ... turned 90 degrees anticlockwise

Telling them apart needs both objects, far apart, and the order of the two halves:

- each object alone moves along a uniformly random heading (the first's is drawn uniformly,
  the second's is the first's turned, so also uniform), with the same speed, window and
  appearance distribution in both classes: neither object's own motion tells the class;
- ``turn_left`` is ``turn_right`` played backwards (``time_reversed``): the backward clip's
  first mover is the forward second mover, moving the opposite way, and the turn from
  one heading to the other changes sign. So the two classes have the same distribution of
  frame sets and differ only in order: an order-blind model is at chance, and so is a
  frame-level one;
- one frame has the same distribution in both classes: the first object's position is
  uniform on the torus at every frame, and the offset from it to the second is its
  mid-clip value (symmetric about half a frame in x and y) plus a displacement along a
  uniformly random axis direction, whose law at frame ``t`` equals that at frame
  ``T - 1 - t`` with the objects' roles swapped (they are drawn alike);
- the objects stay at least ``min_distance(separation)`` of the frame size apart (toroidal
  distance between centres; ``MIN_DISTANCE`` at the default half frame) at every frame, and
  never overlap. Closer than half a frame, each offset component's sign is drawn too, so that
  the offset's law stays symmetric (the backward clip's offset is the forward one's negative).

A local 3D CNN has to carry a motion direction from one object, across half the frame and
half the clip, to the other before it can compare them; a non-local block relates any two
places and times in one step.
"""

from dataclasses import dataclass, replace
from functools import partial
from typing import Dict, Tuple

import numpy as np

from cgnl_video.data_prep import synthetic
from cgnl_video.data_prep.synthetic import ClipParams, Task, composite, object_layer, states_at

# headings clockwise on screen (the image y axis points down), as the motion generator's classes
HEADINGS: Tuple[str, ...] = ("move_right", "move_down", "move_left", "move_up")
# class -> quarter turns (clockwise on screen) from the first object's heading to the second's
TURNS: Dict[str, int] = {"turn_right": 1, "turn_left": -1}
CLASSES: Tuple[str, ...] = tuple(TURNS)
_JITTER = 0.05
_TRAVEL = (0.15, 0.25)  # fraction of the frame size each object travels in its half
_RADIUS = (0.08, 0.12)  # fraction of the frame size (the motion generator's objects: 0.14-0.22)
DEFAULT_SEPARATION = 0.5  # mid-clip offset per axis, fraction of the frame size


def min_distance(separation: float) -> float:
    """The objects' least centre-to-centre toroidal distance (fraction of the frame size): the mid-clip
    offset is ``separation`` +- ``_JITTER`` per axis and only one object moves at a time, along one
    axis, so the other offset component stays >= ``separation - _JITTER``."""
    return separation - _JITTER


MIN_DISTANCE = min_distance(DEFAULT_SEPARATION)
# closest separation at which two objects of the largest radius cannot overlap
MIN_SEPARATION = 2 * _RADIUS[1] + _JITTER + 0.01


@dataclass(frozen=True)
class RelationParams:
    """Everything that defines one clip; ``render`` is a pure function of it.

    Each object is a ``ClipParams`` whose ``motion`` is its heading, ``speed`` the pixels it
    travels in its half of the clip and ``start`` its state at mid-clip (frame ``(T - 1) / 2``)."""

    relation: str
    first: ClipParams  # moves in the first half
    second: ClipParams  # moves in the second half
    scene: Tuple[int, Tuple[float, float, float], float]  # background seed, colour, noise std


def partner(relation: str) -> str:
    """The class whose clips are this class's clips played backwards."""
    return next(name for name, turn in TURNS.items() if turn == -TURNS[relation])


def turned(name: str, quarter_turns: int) -> str:
    """The heading ``quarter_turns`` quarter turns clockwise on screen from heading ``name``."""
    return HEADINGS[(HEADINGS.index(name) + quarter_turns) % len(HEADINGS)]


def object_states(params: RelationParams, num_frames: int, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """The first and the second object's states (``num_frames x 4`` each: x, y, angle, ring phase)."""
    mid = (num_frames - 1) / 2
    t = np.arange(num_frames)
    # time in half clips from mid-clip: the first object moves from -1 to 0, the second from 0 to 1
    first = states_at(params.first, (np.minimum(t, mid) - mid) / mid, height, width)
    second = states_at(params.second, (np.maximum(t, mid) - mid) / mid, height, width)
    return first, second


def time_reversed(params: RelationParams, num_frames: int, height: int, width: int) -> RelationParams:
    """The partner-class clip whose frames are ``params``'s in reverse order (noise aside)."""
    # backwards, the second object moves first, the other way; both keep their mid-clip state
    first = replace(params.second, motion=turned(params.second.motion, 2))
    second = replace(params.first, motion=turned(params.first.motion, 2))
    return replace(params, relation=partner(params.relation), first=first, second=second)


def toroidal_distance(a: np.ndarray, b: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-to-centre distance of states ``a`` and ``b`` (``... x 4``) on the wrapping frame, pixels."""
    d = np.abs(np.asarray(a)[..., :2] - np.asarray(b)[..., :2])
    d = np.minimum(d, np.array([width, height]) - d)
    return np.hypot(d[..., 0], d[..., 1])


def _moving_object(rng: np.random.Generator, heading: str, centre: np.ndarray, height: int, width: int) -> ClipParams:
    """An object drawn like the motion generator's (smaller), at mid-clip state ``centre`` (x, y)."""
    size = min(height, width)
    drawn = synthetic.sample_params(rng, heading, height, width)
    radius = float(rng.uniform(*_RADIUS) * size)
    return replace(
        drawn,
        start=(float(centre[0]), float(centre[1])) + drawn.start[2:],
        radius=radius,
        ring_period=float(max(3.0, rng.uniform(0.35, 0.6) * radius)),
        speed=float(rng.uniform(*_TRAVEL) * size),  # pixels per half clip
    )


def sample_params(
    rng: np.random.Generator, relation: str, height: int, width: int, separation: float = DEFAULT_SEPARATION
) -> RelationParams:
    """Draws a clip of class ``relation``; everything but the second heading is drawn alike for both classes."""
    frame = np.array([width, height], dtype=float)
    first_heading = HEADINGS[int(rng.integers(len(HEADINGS)))]
    centre = rng.uniform(0.0, 1.0, 2) * frame
    offset = (separation + rng.uniform(-_JITTER, _JITTER, 2)) * frame
    first = _moving_object(rng, first_heading, centre, height, width)
    second_heading = turned(first_heading, TURNS[relation])
    second = _moving_object(rng, second_heading, np.mod(centre + offset, frame), height, width)
    scene = (int(rng.integers(2**31)), first.colours[2], float(rng.uniform(0.01, 0.03)))
    if separation < DEFAULT_SEPARATION:  # at half a frame +-offset is the same law on the torus: no draw
        x, y = np.mod(centre + offset * rng.choice([-1.0, 1.0], 2), frame)
        second = replace(second, start=(float(x), float(y)) + second.start[2:])
    return RelationParams(relation, first, second, scene)


def render(params: RelationParams, num_frames: int, height: int, width: int) -> np.ndarray:
    """Renders the clip: ``num_frames x height x width x 3`` uint8."""
    states = object_states(params, num_frames, height, width)
    layers = [object_layer(obj, state, height, width) for obj, state in zip((params.first, params.second), states)]
    return composite(params.scene, layers, height, width)


def relation_task(separation: float = DEFAULT_SEPARATION) -> Task:
    """The generator for ``generate_dataset(task=...)``, the objects ``separation`` apart per axis."""
    if not MIN_SEPARATION <= separation <= DEFAULT_SEPARATION:
        raise ValueError(f"separation {separation}: expected {MIN_SEPARATION:.2f}-{DEFAULT_SEPARATION} of the frame"
                         " (closer, the objects could overlap; half a frame is the farthest on the torus)")
    return Task(CLASSES, len(CLASSES), partial(sample_params, separation=separation), render)


RELATION_TASK = relation_task()
