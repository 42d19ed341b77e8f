"""Synthetic action videos whose classes can only be told apart by temporal order.

Every clip shows one textured object (a superellipse carrying concentric rings and a
light-to-dark shading across it) over a smooth random background with per-frame noise.
Its state has four cyclic coordinates: x and y (pixels, wrapping around the frame, the
object re-entering on the opposite side), the angle (radians) and the ring phase
(cycles). All four start uniformly at random; the class moves exactly one of them at
a random constant speed, one way or the other:

    move_left / move_right   x decreases / increases
    move_up / move_down      y decreases / increases
    rotate_ccw / rotate_cw   angle increases / decreases (the image y axis points down)
    expand / contract        rings move outwards / inwards

Why no single frame, nor the set of frames without their order, tells the class:

- cyclic coordinates that start uniformly stay uniform at every frame, whatever moves
  and how fast, and the object's size, shape, colours, background and noise are drawn
  the same way for every class: one frame has the same distribution in all classes;
- each class has a partner, its time reversal (``time_reversed``): a clip played
  backwards is exactly a clip of the partner class with another start, which is as
  likely; so a pair's clips have the same distribution of frame sets and differ only
  in order. An order-blind model can at best find the pair (axis of motion), a
  frame-level one nothing.

Speeds stay below half a period per frame (and well below for the rings and rotation,
so that sampling every 2nd to 4th frame keeps the direction unambiguous). The object's
light and dark rings stand out on the near-grey background: with strongly coloured,
textured backgrounds small 3D CNNs did not learn at all in a few hundred steps. As is,
measured on 48x48 clips of 16 frames (stride 2), 6 classes, 1200 training clips, a
3-layer 3D CNN reached 98% test accuracy in 9 epochs while the same network with
temporal kernels of 1 stayed at chance (14-18%).
"""

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from cgnl_video.datasets.lists import CLASSES_FILE, SPLITS, list_file, write_classes, write_video_list
from cgnl_video.datasets.video_io import write_video

X, Y, ANGLE, RING = range(4)

# class name -> (moving coordinate, direction)
MOTIONS: Dict[str, Tuple[int, int]] = {
    "move_left": (X, -1),
    "move_right": (X, 1),
    "move_up": (Y, -1),
    "move_down": (Y, 1),
    "rotate_ccw": (ANGLE, 1),
    "rotate_cw": (ANGLE, -1),
    "expand": (RING, 1),
    "contract": (RING, -1),
}
CLASSES: Tuple[str, ...] = tuple(MOTIONS)

# object light, object dark and background colour ranges: the object's light and dark
# rings stand out on any background (a strongly textured background made learning slow)
COLOUR_RANGES = ((0.65, 1.0), (0.0, 0.35), (0.4, 0.6))
# per-frame speed ranges of each coordinate: fraction of the frame size, rad, cycles. Rotation:
# sampled every 4th frame (the demo), a step turns the object 0.36-0.72 rad, below the 0.79 rad
# at which a square's four-fold symmetry would hide the direction (0.06-0.15 rad/frame left
# rotation direction at chance on some CPUs, issue 9).
_SPEEDS = {X: (0.015, 0.035), Y: (0.015, 0.035), ANGLE: (0.09, 0.18), RING: (0.04, 0.1)}
# contrast of the light-to-dark shading across the object, which shows its orientation
# (0.35 made rotation direction hard to learn for the demo model)
_SHADING = 0.6


# an object's coverage and colour at every pixel of every frame
Layer = Tuple[np.ndarray, np.ndarray]
# what is under the objects: (seed of the background texture and noise, background colour, noise std)
Scene = Tuple[int, Tuple[float, float, float], float]


@dataclass(frozen=True)
class ClipParams:
    """Everything that defines one clip; ``render`` is a pure function of it."""

    motion: str
    start: Tuple[float, float, float, float]  # x, y (pixels), angle (rad), ring phase (cycles)
    speed: float  # > 0, per frame, in the moving coordinate's unit
    radius: float  # pixels
    ring_period: float  # pixels
    shape_power: float  # superellipse exponent: 2 = disk, larger = squarer
    colours: Tuple[Tuple[float, float, float], ...]  # object light, object dark, background (RGB, 0-1)
    noise_std: float  # per-frame Gaussian noise, 0-1 units
    seed: int  # background texture and noise


def partner(motion: str) -> str:
    """The class whose clips are this class's clips played backwards."""
    coordinate, direction = MOTIONS[motion]
    return next(name for name, m in MOTIONS.items() if m == (coordinate, -direction))


def _periods(height: int, width: int) -> Tuple[float, float, float, float]:
    return (float(width), float(height), 2 * np.pi, 1.0)


def states(params: ClipParams, num_frames: int, height: int, width: int) -> np.ndarray:
    """The object state (x, y, angle, ring phase) of each frame, ``num_frames x 4``, wrapped."""
    return states_at(params, np.arange(num_frames), height, width)


def states_at(params: ClipParams, times: np.ndarray, height: int, width: int) -> np.ndarray:
    """The state at each of ``times`` (frames after ``params.start``, any sign), ``len(times) x 4``."""
    coordinate, direction = MOTIONS[params.motion]
    velocity = np.zeros(4)
    velocity[coordinate] = direction * params.speed
    raw = np.asarray(params.start) + np.asarray(times, dtype=float)[:, None] * velocity
    return np.mod(raw, _periods(height, width))


def time_reversed(params: ClipParams, num_frames: int, height: int, width: int) -> ClipParams:
    """The partner-class clip whose frames are ``params``'s in reverse order (noise aside)."""
    last = tuple(float(v) for v in states(params, num_frames, height, width)[-1])
    return replace(params, motion=partner(params.motion), start=last)


def sample_params(rng: np.random.Generator, motion: str, height: int, width: int) -> ClipParams:
    """Draws a clip of class ``motion``; everything but the motion is drawn alike for all classes."""
    coordinate = MOTIONS[motion][0]
    low, high = _SPEEDS[coordinate]
    scale = (width, height, 1.0, 1.0)[coordinate]
    size = min(height, width)
    radius = rng.uniform(0.14, 0.22) * size
    return ClipParams(
        motion=motion,
        start=tuple(float(v) for v in rng.uniform(0.0, 1.0, 4) * _periods(height, width)),
        speed=float(rng.uniform(low, high) * scale),
        radius=float(radius),
        ring_period=float(max(3.0, rng.uniform(0.35, 0.6) * radius)),  # >= 3 px: no aliasing
        shape_power=float(rng.uniform(2.0, 5.0)),
        colours=tuple(tuple(float(c) for c in rng.uniform(low, high, 3)) for low, high in COLOUR_RANGES),
        noise_std=float(rng.uniform(0.01, 0.03)),
        seed=int(rng.integers(2**31)),
    )


def _background(rng: np.random.Generator, colour: np.ndarray, height: int, width: int) -> np.ndarray:
    """``colour`` under a faint static texture: three low-frequency plane waves, +-0.1 in all."""
    yy, xx = np.meshgrid(np.arange(height) / height, np.arange(width) / width, indexing="ij")
    texture = np.zeros((height, width))
    for fy, fx, phase in zip(rng.integers(-2, 3, 3), rng.integers(-2, 3, 3), rng.uniform(0, 2 * np.pi, 3)):
        texture += 0.033 * np.cos(2 * np.pi * (fy * yy + fx * xx) + phase)
    return colour + texture[..., None]


def object_frame(state: np.ndarray, height: int, width: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pixel in the rotating frame of an object at each frame's ``state`` (``T x 4``): its
    offsets ``u``, ``v`` (pixels, ``T x H x W``) from the centre on the torus, and the ring phase
    (``T x 1 x 1``)."""
    x, y, angle, phase = state.astype(np.float32).T[..., None, None]
    dx = np.mod(np.arange(width, dtype=np.float32)[None, None, :] - x + width / 2, width) - width / 2
    dy = np.mod(np.arange(height, dtype=np.float32)[None, :, None] - y + height / 2, height) - height / 2
    u = dx * np.cos(angle) - dy * np.sin(angle)
    v = dx * np.sin(angle) + dy * np.cos(angle)
    return u, v, phase


def paint(colours: Tuple[Tuple[float, float, float], ...], alpha: np.ndarray, shade: np.ndarray) -> Layer:
    """A layer of coverage ``alpha`` whose colour goes from ``colours[1]`` (dark, ``shade`` 0) to
    ``colours[0]`` (light, ``shade`` 1); both ``T x H x W``."""
    light, dark = np.asarray(colours[:2], dtype=np.float32)
    shade = np.clip(shade, 0.0, 1.0)[..., None]
    return np.clip(alpha, 0.0, 1.0)[..., None], light * shade + dark * (1 - shade)


def object_layer(params: ClipParams, state: np.ndarray, height: int, width: int) -> Layer:
    """The object of ``params`` at each frame's ``state`` (``T x 4``): its coverage ``T x H x W x 1``
    (0-1, anti-aliased edge) and colour ``T x H x W x 3``."""
    u, v, phase = object_frame(state, height, width)
    p = params.shape_power
    norm = (np.abs(u) ** p + np.abs(v) ** p) ** (1 / p)
    shade = 0.5 + 0.3 * np.cos(2 * np.pi * (norm / params.ring_period - phase)) + _SHADING * u / params.radius
    return paint(params.colours, params.radius - norm + 0.5, shade)


def composite(scene: Scene, layers: Sequence[Layer], height: int, width: int) -> np.ndarray:
    """``layers`` over the scene's background, plus its per-frame noise: ``T x H x W x 3`` uint8."""
    seed, background_colour, noise_std = scene
    rng = np.random.default_rng(seed)
    frames = _background(rng, np.asarray(background_colour, dtype=np.float32), height, width).astype(np.float32)
    for alpha, colour in layers:
        frames = alpha * colour + (1 - alpha) * frames
    frames += noise_std * rng.standard_normal(frames.shape[:3] + (1,), dtype=np.float32)
    return (np.clip(frames, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def render(params: ClipParams, num_frames: int, height: int, width: int) -> np.ndarray:
    """Renders the clip: ``num_frames x height x width x 3`` uint8."""
    layer = object_layer(params, states(params, num_frames, height, width), height, width)
    return composite((params.seed, params.colours[2], params.noise_std), [layer], height, width)


# (path relative to the output folder, class, seed of the video: (dataset seed, split index, video index))
Job = Tuple[str, str, Tuple[int, int, int]]


def plan_dataset(counts: Dict[str, int], classes: Sequence[str], seed: int) -> Dict[str, List[Job]]:
    """The videos of each split; video ``i`` of a split has class ``i % len(classes)`` (balanced)."""
    plan = {}
    for split_index, split in enumerate(SPLITS):
        motions = [classes[i % len(classes)] for i in range(counts[split])]
        plan[split] = [
            (f"videos/{m}/{split}_{i:05d}.mp4", m, (seed, split_index, i)) for i, m in enumerate(motions)
        ]
    return plan


@dataclass(frozen=True)
class Task:
    """A generator: its classes, in time-reversed pairs (partners adjacent), and how to draw one
    clip of a class (``sample(rng, class, height, width)``) and render it
    (``render(params, num_frames, height, width)``, uint8 frames)."""

    classes: Tuple[str, ...]
    default_num_classes: int
    sample: Callable[[np.random.Generator, str, int, int], Any]
    render: Callable[[Any, int, int, int], np.ndarray]


MOTION_TASK = Task(CLASSES, 6, sample_params, render)


def _make_video(task: Task, out_dir: str, num_frames: int, height: int, width: int, fps: int, job: Job) -> None:
    rel_path, label, seed = job
    params = task.sample(np.random.default_rng(seed), label, height, width)
    write_video(os.path.join(out_dir, rel_path), task.render(params, num_frames, height, width), fps)


def generate_dataset(
    out_dir: str,
    seed: int = 0,
    counts: Optional[Dict[str, int]] = None,
    num_classes: Optional[int] = None,
    num_frames: int = 40,
    height: int = 112,
    width: int = 112,
    fps: int = 25,
    workers: int = 1,
    task: Task = MOTION_TASK,
) -> Dict[str, int]:
    """Writes ``videos/<class>/<split>_<i>.mp4``, ``{train,val,test}.csv`` and ``classes.txt``.

    ``counts`` gives the videos per split (default 240 / 60 / 60). List paths are
    relative to ``out_dir``: use it as both ``DATA.PATH_TO_DATA_DIR`` and
    ``DATA.PATH_PREFIX``. ``num_classes`` (even; default ``task.default_num_classes``, 6 of
    the motion task's 8) takes the first classes of ``task.classes``, which come in
    time-reversed pairs. The files depend on the arguments only, not on ``workers``
    (processes). Returns the number of videos per split.
    """
    counts = counts or {"train": 240, "val": 60, "test": 60}
    num_classes = num_classes or task.default_num_classes
    if num_classes % 2 or not 2 <= num_classes <= len(task.classes):
        raise ValueError(
            f"num_classes must be even and at most {len(task.classes)} (whole time-reversed pairs), got {num_classes}"
        )
    if height % 2 or width % 2:
        raise ValueError(f"H.264 yuv420p needs an even frame size, got {height}x{width}")
    classes = task.classes[:num_classes]
    plan = plan_dataset(counts, classes, seed)
    make = partial(_make_video, task, out_dir, num_frames, height, width, fps)
    jobs = [job for split in SPLITS for job in plan[split]]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(make, jobs, chunksize=8))
    else:
        for job in jobs:
            make(job)
    for split in SPLITS:
        entries = [(path, classes.index(label)) for path, label, _ in plan[split]]
        write_video_list(list_file(out_dir, split), entries)
    write_classes(os.path.join(out_dir, CLASSES_FILE), classes)
    return {split: len(plan[split]) for split in SPLITS}
