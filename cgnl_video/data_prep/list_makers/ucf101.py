"""UCF101 lists from the official split files and a video tree.

``make_lists.py ucf101 --video-root ROOT [--split N]`` reads the official files shipped in
``data_lists/ucf101/ucfTrainTestlist/`` and writes ``data_lists/ucf101/split{N}/``, the folder
the UCF101 configs read. Inputs: ``classInd.txt`` (``1 ApplyEyeMakeup`` lines), ``trainlist0N.txt``
(``Class/v_Class_g08_c01.avi 1``, 1-based label) and ``testlist0N.txt`` (no label: it
comes from the class folder through ``classInd.txt``), for split N = 1, 2 or 3.

Listed paths are resolved against the actual tree case-insensitively (the official
files spell ``HandstandPushups/v_HandStandPushups_...`` while copies on disk vary) and
whatever the extension (so trees re-encoded to ``.mp4`` work; the listed extension
wins when both exist). UCF101 has no validation split: the test split is written as
both ``val.csv`` and ``test.csv``, as in PySlowFast/mmaction2 UCF101 setups.
"""

import argparse
import os
from collections import defaultdict
from typing import Dict, List, Optional

from cgnl_video.data_prep.list_makers.common import (
    MISSING,
    DatasetLists,
    Entry,
    Problem,
    add_common_arguments,
    scan_videos,
)
from cgnl_video.data_prep.list_makers.locations import UCF101_SPLITS_DIR, ucf101_out_dir
from cgnl_video.datasets.lists import ListFormatError


def read_class_index(path: str) -> List[str]:
    """Reads ``classInd.txt`` into the class names, label ``i`` = line ``i + 1``."""
    classes = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[0] != str(len(classes) + 1):
                expected = f"{len(classes) + 1} ClassName"
                raise ListFormatError(path, lineno, f"expected '{expected}', got {line.strip()!r}")
            classes.append(fields[1])
    return classes


def read_split_file(path: str, classes: List[str]) -> List[Entry]:
    """Reads a train/test list into (path, 0-based label); a given label must match the folder."""
    label_of = {name.lower(): label for label, name in enumerate(classes)}
    entries = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            folder = fields[0].split("/")[0]
            label = label_of.get(folder.lower())
            if label is None or len(fields) > 2:
                reason = f"expected 'Class/video.avi [LABEL]', Class in classInd.txt; got {line.strip()!r}"
                raise ListFormatError(path, lineno, reason)
            if len(fields) == 2 and fields[1] != str(label + 1):
                reason = f"label {fields[1]} does not match class folder {folder!r}"
                raise ListFormatError(path, lineno, reason)
            entries.append((fields[0], label))
    return entries


class VideoTree:
    """Resolves listed paths against the files present, ignoring case and extension."""

    def __init__(self, paths: List[str]):
        self._by_key: Dict[str, List[str]] = defaultdict(list)
        for path in paths:
            self._by_key[os.path.splitext(path)[0].lower()].append(path)

    def resolve(self, listed: str) -> Optional[str]:
        """The actual relative path of a listed one, or None when absent."""
        stem, ext = os.path.splitext(listed)
        candidates = self._by_key.get(stem.lower(), [])
        same_ext = [path for path in candidates if path.lower().endswith(ext.lower())]
        return (same_ext or candidates or [None])[0]


def make_lists(splits_dir: str, video_root: str, split: int) -> DatasetLists:
    """Builds the lists of one official split over the videos under ``video_root``."""
    classes = read_class_index(os.path.join(splits_dir, "classInd.txt"))
    tree = VideoTree(scan_videos(video_root))
    splits, problems = {}, []
    for source, stem in (("train", "trainlist"), ("test", "testlist")):
        list_file = os.path.join(splits_dir, f"{stem}{split:02d}.txt")
        splits[source] = []
        for listed, label in read_split_file(list_file, classes):
            found = tree.resolve(listed)
            if found is None:
                problems.append(Problem(MISSING, source, listed, f"listed in {list_file}"))
            else:
                splits[source].append((found, label))
    outputs = {"train": "train", "val": "test", "test": "test"}
    return DatasetLists(f"UCF101 split {split}", classes, splits, outputs, problems)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers the ``ucf101`` subcommand."""
    parser = subparsers.add_parser(
        "ucf101",
        help="UCF101 from the official split files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--splits-dir", default=UCF101_SPLITS_DIR,
        help="folder with classInd.txt, trainlist0N.txt, testlist0N.txt (default: the shipped "
        "official files, data_lists/ucf101/ucfTrainTestlist)",
    )
    parser.add_argument("--split", type=int, choices=(1, 2, 3), default=1, help="official split (default: 1)")
    add_common_arguments(parser, lambda args: ucf101_out_dir(args.split), ucf101_out_dir("{N}"))
    parser.set_defaults(make=lambda args: make_lists(args.splits_dir, args.video_root, args.split))
