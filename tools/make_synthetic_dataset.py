#!/usr/bin/env python3
"""Writes a synthetic action dataset: H.264 mp4 files, train.csv, val.csv, test.csv and
classes.txt under OUT_DIR, deterministic by --seed.

--task motion (cgnl_video/data_prep/synthetic.py): an object moving left/right, up/down,
rotating, its rings expanding or contracting. --task relation
(cgnl_video/data_prep/synthetic_relation.py): two objects half a frame apart (--separation), one moving
in the first half of the clip, the other in the second; the class is whether the second
heading is the first turned right or left. --task spin
(cgnl_video/data_prep/synthetic_spin.py): a disc with a --folds-fold symmetric --texture drifting
in 4 directions or spinning either way at --spin-speed rad per frame, a set the motion
generator does not make. --task pointer (cgnl_video/data_prep/synthetic_pointer.py): a
static wedge and, half a frame away, an object moving along its axis; the class is whether the
object moves the way the wedge points or against it. Either way the classes differ only in temporal
order: a frame-level model stays at chance. Use OUT_DIR as both DATA.PATH_TO_DATA_DIR and
DATA.PATH_PREFIX."""

import argparse
import os
import sys
import time

from cgnl_video.data_prep.synthetic import MOTION_TASK, generate_dataset
from cgnl_video.data_prep.synthetic_pointer import POINTER_TASK
from cgnl_video.data_prep.synthetic_relation import DEFAULT_SEPARATION, RELATION_TASK, relation_task
from cgnl_video.data_prep.synthetic_spin import DEFAULT_DRIFT_SPEED, DEFAULT_SPIN_SPEED, TEXTURES, spin_task

# H.264 yuv420p needs even sizes; below 16 pixels the moving object is a few pixels wide.
MIN_SIZE = 16
TASKS = {"motion": MOTION_TASK, "relation": RELATION_TASK, "spin": spin_task(), "pointer": POINTER_TASK}
# the options of one task, their defaults and the task they make
TASK_OPTIONS = {
    "spin": ({"texture": "stripes", "folds": 3, "spin_speed": DEFAULT_SPIN_SPEED, "drift_speed": DEFAULT_DRIFT_SPEED},
             spin_task),
    "relation": ({"separation": DEFAULT_SEPARATION}, relation_task),
}
SPIN_OPTIONS = TASK_OPTIONS["spin"][0]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder")
    parser.add_argument("--task", choices=tuple(TASKS), default="motion", help="which generator")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--num-train", type=int, default=240, help="train videos, all classes together")
    parser.add_argument("--num-val", type=int, default=60, help="val videos, all classes together")
    parser.add_argument("--num-test", type=int, default=60, help="test videos, all classes together")
    parser.add_argument(
        "--num-classes", type=int, choices=(2, 4, 6, 8), help="in time-reversed pairs (default: motion 6, relation and pointer 2)"
    )
    parser.add_argument("--frames", type=int, default=40, help="frames per video")
    parser.add_argument("--size", type=int, default=112, help="frame height and width (even)")
    parser.add_argument("--fps", type=int, default=25, help="frame rate")
    spin = parser.add_argument_group("--task spin")
    spin.add_argument("--texture", choices=TEXTURES, help=f"disc texture (default {SPIN_OPTIONS['texture']})")
    spin.add_argument("--folds", type=int, help=f"rotational symmetry of the texture (default {SPIN_OPTIONS['folds']})")
    spin.add_argument("--spin-speed", type=float, nargs=2, metavar=("LOW", "HIGH"),
                      help=f"rad per frame (default {DEFAULT_SPIN_SPEED[0]} {DEFAULT_SPIN_SPEED[1]})")
    spin.add_argument("--drift-speed", type=float, nargs=2, metavar=("LOW", "HIGH"),
                      help=f"frame sizes per frame (default {DEFAULT_DRIFT_SPEED[0]} {DEFAULT_DRIFT_SPEED[1]})")
    relation = parser.add_argument_group("--task relation")
    relation.add_argument("--separation", type=float,
                          help=f"mid-clip offset of the objects per axis, frame sizes (default {DEFAULT_SEPARATION})")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    args = parser.parse_args(argv)
    args.generator = TASKS[args.task]
    for task, (defaults, make_task) in TASK_OPTIONS.items():
        given = [name for name in defaults if getattr(args, name) is not None]
        if given and args.task != task:
            parser.error(f"--{given[0].replace('_', '-')} is an option of --task {task}")
        if given:
            options = {name: default if getattr(args, name) is None else getattr(args, name)
                       for name, default in defaults.items()}
            try:
                args.generator = make_task(**options)
            except ValueError as error:
                parser.error(str(error))
    available = len(TASKS[args.task].classes)
    if (args.num_classes or 0) > available:
        parser.error(f"--num-classes {args.num_classes}: --task {args.task} has {available} classes")
    if args.size < MIN_SIZE or args.size % 2:
        parser.error(f"--size {args.size}: expected an even number >= {MIN_SIZE}")
    for name in ("frames", "fps", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: expected >= 1")
    for name in ("num_train", "num_val", "num_test"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: expected >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    counts = generate_dataset(
        args.out_dir,
        seed=args.seed,
        counts={"train": args.num_train, "val": args.num_val, "test": args.num_test},
        num_classes=args.num_classes,
        num_frames=args.frames,
        height=args.size,
        width=args.size,
        fps=args.fps,
        workers=args.workers,
        task=args.generator,
    )
    elapsed = time.perf_counter() - start
    print(f"wrote {sum(counts.values())} videos {counts} to {args.out_dir} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
