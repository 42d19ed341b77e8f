"""Mini-Kinetics-200 lists from the Mini-Kinetics id lists, Kinetics-400 annotations and a video tree.

``make_lists.py minikinetics --video-root ROOT`` reads the id lists shipped in
``data_lists/minikinetics/`` (``train_ytid_list.txt``, ``val_ytid_list.txt``, one YouTube id a
line) and the Kinetics-400 validation annotations shipped in ``data_lists/kinetics400/``
(``label,youtube_id,time_start,time_end,split``), and writes ``data_lists/minikinetics/``.
``--annotations`` adds CSVs read before the shipped one (the first CSV naming an id wins),
e.g. the Kinetics-400 train CSV, which is not shipped.

The video root is laid out as ``<label>/<ytid>_<start:06d>_<end:06d>.<ext>``, ``<ytid>.<ext>``
or both (recognised from the file names). An id in no annotation CSV takes the label of the
folder holding its video when that folder names a class (compared without case, spaces and
punctuation, so mmaction2's renamed folders such as ``passing_American_football_-in_game-``
match): a tree in class folders needs no train CSV.

The classes are the labels of the listed ids found in the annotations, sorted by name (all
200 from the shipped validation CSV alone); they do not depend on which videos are on disk.
Ids with no label from either source are reported as ``unannotated``, labelled ids with no
video as ``missing``; neither is an error. Mini-Kinetics has no test split: the val split is
written as both ``val.csv`` and ``test.csv``.
"""

import argparse
import csv
import os
import re
from typing import Dict, List, Optional, Sequence

from cgnl_video.data_prep.list_makers.common import (
    MISSING,
    UNANNOTATED,
    DatasetLists,
    Problem,
    add_common_arguments,
    scan_videos,
)
from cgnl_video.data_prep.list_makers.locations import (
    KINETICS400_VAL_CSV,
    MINIKINETICS_OUT_DIR,
    MINIKINETICS_TRAIN_IDS,
    MINIKINETICS_VAL_IDS,
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


def class_key(name: str) -> str:
    """A class name without case, spaces and punctuation, to match renamed class folders."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def folder_label(path: str, class_of_key: Dict[str, str]) -> Optional[str]:
    """The class named by the folder holding ``path`` (see :func:`class_key`), or None."""
    return class_of_key.get(class_key(os.path.basename(os.path.dirname(path))))


def make_lists(
    annotation_files: Sequence[str], train_ids: str, val_ids: str, video_root: str
) -> DatasetLists:
    """Builds the train and val lists over the videos under ``video_root``."""
    labels = read_annotations(annotation_files)
    ids = {"train": read_ids(train_ids), "val": read_ids(val_ids)}
    classes = sorted({labels[ytid] for split_ids in ids.values() for ytid in split_ids if ytid in labels})
    label_of = {name: label for label, name in enumerate(classes)}
    class_of_key = {class_key(name): name for name in classes}
    on_disk = index_by_ytid(scan_videos(video_root))
    splits, problems = {}, []
    for split, split_ids in ids.items():
        splits[split] = []
        for ytid in split_ids:
            path = on_disk.get(ytid)
            label = labels.get(ytid) or (folder_label(path, class_of_key) if path else None)
            if not label:
                problems.append(Problem(UNANNOTATED, split, ytid, "in no annotation CSV nor in a class folder"))
            elif path is None:
                problems.append(Problem(MISSING, split, ytid, label))
            else:
                splits[split].append((path, label_of[label]))
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
    parser.add_argument(
        "--annotations", nargs="+", default=[],
        help="Kinetics-400 annotation CSV(s), e.g. the train CSV, read before the shipped "
        "data_lists/kinetics400/validate.csv",
    )
    ids_help = "{0} YouTube ids (default: the shipped data_lists/minikinetics/{0}_ytid_list.txt)"
    parser.add_argument("--train-ids", default=MINIKINETICS_TRAIN_IDS, help=ids_help.format("train"))
    parser.add_argument("--val-ids", default=MINIKINETICS_VAL_IDS, help=ids_help.format("val"))
    add_common_arguments(parser, lambda args: MINIKINETICS_OUT_DIR, MINIKINETICS_OUT_DIR)
    parser.set_defaults(make=lambda args: make_lists(
        [*args.annotations, KINETICS400_VAL_CSV], args.train_ids, args.val_ids, args.video_root
    ))
