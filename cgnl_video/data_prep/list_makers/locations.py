"""Where the list files are: the inputs shipped in the repository's ``data_lists/``, the folders
``make_lists`` writes by default, and the command that writes a config's list folder.

The shipped inputs are found next to the package (``<repository>/data_lists/``, as in a clone
or an editable install), from any working directory. The lists are written relative to the
working directory (``data_lists/ucf101/split{N}``, ``data_lists/minikinetics``), because that
is how a config's ``DATA.PATH_TO_DATA_DIR`` is read: run ``make_lists`` and the training from
the same folder, the repository root.
"""

import os
import shlex
from typing import List, Optional, Tuple, Union

DATA_LISTS = "data_lists"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SHIPPED = os.path.join(REPO_ROOT, DATA_LISTS)

UCF101_SPLITS_DIR = os.path.join(SHIPPED, "ucf101", "ucfTrainTestlist")
MINIKINETICS_TRAIN_IDS = os.path.join(SHIPPED, "minikinetics", "train_ytid_list.txt")
MINIKINETICS_VAL_IDS = os.path.join(SHIPPED, "minikinetics", "val_ytid_list.txt")
KINETICS400_VAL_CSV = os.path.join(SHIPPED, "kinetics400", "validate.csv")

MINIKINETICS_OUT_DIR = os.path.join(DATA_LISTS, "minikinetics")
FOLDER_OUT_DIR = os.path.join(DATA_LISTS, "folder")
DATASETS = ("ucf101", "minikinetics", "folder")


def ucf101_out_dir(split: Union[int, str]) -> str:
    """The default output folder of UCF101 split ``split`` (the one its configs read)."""
    return os.path.join(DATA_LISTS, "ucf101", f"split{split}")


def _arguments(tail: List[str]) -> Tuple[str, List[str], Optional[str]]:
    """For a folder ``tail`` = ``[data_lists, ...]``: the dataset, its options, and the output
    folder those options write by default (None: no default fits, ``--out-dir`` is needed)."""
    if len(tail) == 3 and tail[1] == "ucf101" and tail[2] in ("split1", "split2", "split3"):
        split = int(tail[2][-1])
        return "ucf101", ["--split", str(split)], ucf101_out_dir(split)
    if tail == [DATA_LISTS, "minikinetics"]:
        return "minikinetics", [], MINIKINETICS_OUT_DIR
    dataset = tail[1] if len(tail) > 1 and tail[1] in DATASETS else "{" + ",".join(DATASETS) + "}"
    return dataset, [], None


def make_lists_command(data_dir: str, video_root: str) -> Optional[str]:
    """The ``python tools/make_lists.py ...`` command that writes the lists of ``data_dir``
    (videos under ``video_root``), run from the current folder (the script's path relative to
    it when inside the repository, else absolute); None unless ``data_dir`` is under a
    ``data_lists`` folder. ``--out-dir`` is named unless it is the default."""
    parts = os.path.normpath(data_dir).split(os.sep)
    if DATA_LISTS not in parts:
        return None
    tail = parts[len(parts) - 1 - parts[::-1].index(DATA_LISTS):]
    dataset, options, default_out = _arguments(tail)
    if default_out is None or os.path.abspath(default_out) != os.path.abspath(data_dir):
        options += ["--out-dir", shlex.quote(data_dir)]
    script = os.path.join(REPO_ROOT, "tools", "make_lists.py")
    if not os.path.relpath(script).startswith(os.pardir):  # from the repository (or a folder in it)
        script = os.path.relpath(script)
    root = shlex.quote(video_root) if video_root else "VIDEO_ROOT"
    return " ".join(["python", script, dataset, "--video-root", root, *options])
