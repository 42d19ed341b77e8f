"""Mini-Kinetics-200 lists from Kinetics-400 annotation CSVs and the Mini-Kinetics id lists.

Inputs: one or more Kinetics-400 annotation CSVs (``label,youtube_id,time_start,time_end,
split,...``; the first CSV naming an id wins), ``train_ytid_list.txt`` and
``val_ytid_list.txt`` (one YouTube id a line), and a video root laid out either as
``<label>/<ytid>_<start:06d>_<end:06d>.<ext>`` or as flat ``<ytid>.<ext>`` files (both
are recognised from the file names, so mixed trees work too).

The classes are the labels of the listed ids found in the annotations, sorted by name
(200 with complete annotations); they do not depend on which videos are on disk. Ids
in no annotation CSV are reported as ``unannotated``, annotated ids with no video as
``missing``; neither is an error. Mini-Kinetics has no test split: the val split is
written as both ``val.csv`` and ``test.csv``.
"""

import argparse
import csv
import os
import re
from typing import Dict, List, Sequence

from cgnl_video.data_prep.list_makers.common import (
    MISSING,
    UNANNOTATED,
    DatasetLists,
    Problem,
    add_common_arguments,
    scan_videos,
)
from cgnl_video.datasets.lists import ListFormatError

_CLIP_STEM = re.compile(r"^(?P<ytid>[A-Za-z0-9_-]{11})_\d{6}_\d{6}$")


def read_annotations(paths: Sequence[str]) -> Dict[str, str]:
    """Maps youtube id -> label over all CSVs; the first CSV naming an id wins."""
    labels: Dict[str, str] = {}
    for path in paths:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"label", "youtube_id"} - set(reader.fieldnames or ())
            if missing:
                raise ListFormatError(path, 1, f"header lacks column(s) {sorted(missing)}")
            for row in reader:
                if not row["label"] or not row["youtube_id"]:
                    raise ListFormatError(path, reader.line_num, "empty label or youtube_id")
                labels.setdefault(row["youtube_id"], row["label"])
    return labels


def read_ids(path: str) -> List[str]:
    """Reads a youtube-id list, one id a line, without blanks and duplicates, in file order."""
    with open(path, encoding="utf-8") as f:
        return list(dict.fromkeys(line.strip() for line in f if line.strip()))


def index_by_ytid(paths: Sequence[str]) -> Dict[str, str]:
    """Maps youtube id -> relative video path, from ``<ytid>_<start>_<end>.ext`` or ``<ytid>.ext`` names."""
    found: Dict[str, str] = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        match = _CLIP_STEM.match(stem)
        found.setdefault(match["ytid"] if match else stem, path)
    return found


def make_lists(
    annotation_files: Sequence[str], train_ids: str, val_ids: str, video_root: str
) -> DatasetLists:
    """Builds the train and val lists over the videos under ``video_root``."""
    labels = read_annotations(annotation_files)
    ids = {"train": read_ids(train_ids), "val": read_ids(val_ids)}
    classes = sorted({labels[ytid] for split_ids in ids.values() for ytid in split_ids if ytid in labels})
    label_of = {name: label for label, name in enumerate(classes)}
    on_disk = index_by_ytid(scan_videos(video_root))
    splits, problems = {}, []
    for split, split_ids in ids.items():
        splits[split] = []
        for ytid in split_ids:
            if ytid not in labels:
                problems.append(Problem(UNANNOTATED, split, ytid, "in no annotation CSV"))
            elif ytid not in on_disk:
                problems.append(Problem(MISSING, split, ytid, labels[ytid]))
            else:
                splits[split].append((on_disk[ytid], label_of[labels[ytid]]))
    outputs = {"train": "train", "val": "val", "test": "val"}
    return DatasetLists("Mini-Kinetics-200", classes, splits, outputs, problems)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers the ``minikinetics`` subcommand."""
    parser = subparsers.add_parser(
        "minikinetics",
        help="Mini-Kinetics-200 from Kinetics-400 annotations",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--annotations", nargs="+", required=True, help="Kinetics-400 annotation CSV(s)")
    parser.add_argument("--train-ids", required=True, help="train_ytid_list.txt")
    parser.add_argument("--val-ids", required=True, help="val_ytid_list.txt")
    add_common_arguments(parser, "minikinetics")
    parser.set_defaults(
        make=lambda args: make_lists(args.annotations, args.train_ids, args.val_ids, args.video_root)
    )
