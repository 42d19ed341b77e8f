"""Lists for any folder-per-class tree, ``<class>/<video>`` (videos may sit deeper).

The classes are the top-level folders holding at least one video, sorted by name;
files directly under the root are ignored. Each class is split on its own
(stratified) by a shuffle seeded with ``seed`` and the class name, so the split of
one class does not change when classes are added: ``round(n * val_ratio)`` videos go
to val, ``round(n * test_ratio)`` to test, the rest to train.
"""

import argparse
import random
from collections import defaultdict
from typing import Dict, List

from cgnl_video.data_prep.list_makers.common import DatasetLists, add_common_arguments, scan_videos
from cgnl_video.data_prep.list_makers.locations import FOLDER_OUT_DIR


def make_lists(
    video_root: str, val_ratio: float = 0.1, test_ratio: float = 0.1, seed: int = 0
) -> DatasetLists:
    """Splits the videos under ``video_root`` into train/val/test, class by class."""
    if val_ratio < 0 or test_ratio < 0 or val_ratio + test_ratio >= 1:
        raise ValueError(f"need val_ratio, test_ratio >= 0 and a sum below 1, got {val_ratio}, {test_ratio}")
    by_class: Dict[str, List[str]] = defaultdict(list)
    for path in scan_videos(video_root):
        if "/" in path:
            by_class[path.split("/")[0]].append(path)
    classes = sorted(by_class)
    splits = {"train": [], "val": [], "test": []}
    for label, name in enumerate(classes):
        videos = sorted(by_class[name])
        random.Random(f"{seed}/{name}").shuffle(videos)
        n_val, n_test = round(len(videos) * val_ratio), round(len(videos) * test_ratio)
        splits["val"] += [(path, label) for path in videos[:n_val]]
        splits["test"] += [(path, label) for path in videos[n_val : n_val + n_test]]
        splits["train"] += [(path, label) for path in videos[n_val + n_test :]]
    return DatasetLists("folder", classes, splits, {name: name for name in splits})


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers the ``folder`` subcommand."""
    parser = subparsers.add_parser(
        "folder",
        help="any <class>/<video> tree, seeded split",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for split in ("val", "test"):
        help_text = f"share of each class for {split} (default: %(default)s)"
        parser.add_argument(f"--{split}-ratio", type=float, default=0.1, help=help_text)
    parser.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    add_common_arguments(parser, lambda args: FOLDER_OUT_DIR, FOLDER_OUT_DIR)
    parser.set_defaults(
        make=lambda args: make_lists(args.video_root, args.val_ratio, args.test_ratio, args.seed)
    )
