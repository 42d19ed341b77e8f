#!/usr/bin/env python3
"""Writes a synthetic action dataset: H.264 mp4 files, train.csv, val.csv, test.csv and
classes.txt under OUT_DIR, deterministic by --seed.

--task motion (cgnl_video/data_prep/synthetic.py): an object moving left/right, up/down,
rotating, its rings expanding or contracting. --task relation
(cgnl_video/data_prep/synthetic_relation.py): two objects half a frame apart, one moving
in the first half of the clip, the other in the second; the class is whether the second
heading is the first turned right or left. Either way the classes differ only in temporal
order: a frame-level model stays at chance. Use OUT_DIR as both DATA.PATH_TO_DATA_DIR and
DATA.PATH_PREFIX."""

import argparse
import os
import sys
import time

from cgnl_video.data_prep.synthetic import MOTION_TASK, generate_dataset
from cgnl_video.data_prep.synthetic_relation import RELATION_TASK

# H.264 yuv420p needs even sizes; below 16 pixels the moving object is a few pixels wide.
MIN_SIZE = 16
TASKS = {"motion": MOTION_TASK, "relation": RELATION_TASK}


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
        "--num-classes", type=int, choices=(2, 4, 6, 8), help="in time-reversed pairs (default: motion 6, relation 2)"
    )
    parser.add_argument("--frames", type=int, default=40, help="frames per video")
    parser.add_argument("--size", type=int, default=112, help="frame height and width (even)")
    parser.add_argument("--fps", type=int, default=25, help="frame rate")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    args = parser.parse_args(argv)
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
        task=TASKS[args.task],
    )
    elapsed = time.perf_counter() - start
    print(f"wrote {sum(counts.values())} videos {counts} to {args.out_dir} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
