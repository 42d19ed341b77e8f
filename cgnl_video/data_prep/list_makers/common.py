"""What the list makers share: tree scanning, ``--check``, writing the outputs, the summary.

A maker turns its dataset's metadata into a :class:`DatasetLists` (classes, entries per
source split, problems found); :func:`finish` then optionally checks every video
(``--check``), writes ``train.csv``, ``val.csv``, ``test.csv``, ``classes.txt`` and
``report.tsv`` under the output folder, and prints a summary.

``report.tsv`` is always written (header only when all went well), one problem a line:
``kind<TAB>split<TAB>item<TAB>detail`` with kind ``missing`` (listed but not on disk),
``unannotated`` (a Kinetics id found in no annotation CSV) or ``unreadable`` (failed
``--check``: not decodable, or the decoder hung past ``--decode-timeout`` or crashed).
"""

import argparse
import logging
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from tqdm import tqdm

from cgnl_video.datasets.lists import CLASSES_FILE, SPLITS, list_file, write_classes, write_video_list
from cgnl_video.datasets.video_io import is_video_name
from cgnl_video.decoding.errors import DecodeError
from cgnl_video.decoding.guard import GuardedDecoder
from cgnl_video.utils.io import atomic_output

logger = logging.getLogger(__name__)

Entry = Tuple[str, int]  # (path relative to the video root, label)

MISSING, UNANNOTATED, UNREADABLE = "missing", "unannotated", "unreadable"
REPORT_FILE = "report.tsv"


@dataclass(frozen=True)
class Problem:
    """A listed video left out of the lists, and why."""

    kind: str
    split: str
    item: str
    detail: str = ""


@dataclass
class DatasetLists:
    """A maker's result.

    ``splits`` maps a source split (``train``, ``val``, ``test``) to its entries;
    ``outputs`` maps each written list (``train``, ``val``, ``test``) to the source
    split it holds, e.g. UCF101 writes its test split as both ``val`` and ``test``.
    """

    name: str
    classes: List[str]
    splits: Dict[str, List[Entry]]
    outputs: Dict[str, str]
    problems: List[Problem] = field(default_factory=list)


def progress(iterable: Iterable, desc: str, total: Optional[int] = None, unit: str = " videos") -> Iterable:
    """A tqdm progress bar on stderr."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True, leave=False)


def _first_visit(folder: str, seen: set) -> bool:
    """True the first time a folder's real path is met: a symlinked folder is followed once, and
    one leading to a folder already scanned (a loop such as ``ln -s .. loop``) is skipped."""
    real = os.path.realpath(folder)
    if real in seen:
        logger.warning("skipping %s: it leads to %s, already scanned", folder, real)
        return False
    seen.add(real)
    return True


def scan_videos(root: str) -> List[str]:
    """Returns the sorted paths (relative to ``root``, ``/``-separated) of all video files below it.

    Symlinked folders are followed, each real folder scanned once (the first path met, in
    ``os.walk`` order); a link back into the tree is skipped with a warning."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"video root {root!r} is not a folder")
    found, seen = [], {os.path.realpath(root)}
    for folder, dirs, files in progress(os.walk(root, followlinks=True), f"scanning {root}", unit=" folders"):
        dirs[:] = [d for d in dirs if not d.startswith(".") and _first_visit(os.path.join(folder, d), seen)]
        rel_folder = os.path.relpath(folder, root)
        for name in files:
            if not name.startswith(".") and is_video_name(name):
                found.append(name if rel_folder == "." else f"{rel_folder}/{name}".replace(os.sep, "/"))
    return sorted(found)


def probe_video(path: str, decoder: GuardedDecoder) -> Optional[str]:
    """Decodes the first and last frame (as training does, in ``decoder``'s watched child
    process); returns None, or why it failed (including a hang or a crash of the decoder)."""
    try:
        with decoder.open(path) as video:
            video.get([0, video.num_frames - 1])
    except DecodeError as err:
        return err.reason
    return None


def check_videos(lists: DatasetLists, video_root: str, workers: int = 1, timeout: float = 60.0) -> None:
    """Drops the entries whose video does not decode within ``timeout`` seconds per call,
    recording each as ``unreadable``; ``workers`` threads, each with its decoder process."""
    paths = sorted({path for entries in lists.splits.values() for path, _ in entries})
    full_paths = [os.path.join(video_root, path) for path in paths]
    local, decoders = threading.local(), []

    def probe(path: str) -> Optional[str]:
        if not hasattr(local, "decoder"):
            local.decoder = GuardedDecoder("decord", timeout)
            decoders.append(local.decoder)
        return probe_video(path, local.decoder)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        reasons = list(progress(pool.map(probe, full_paths), "checking", total=len(paths)))
    for decoder in decoders:
        decoder.close()
    bad = {path: reason for path, reason in zip(paths, reasons) if reason is not None}
    for split, entries in lists.splits.items():
        lists.problems.extend(Problem(UNREADABLE, split, p, bad[p]) for p, _ in entries if p in bad)
        lists.splits[split] = [entry for entry in entries if entry[0] not in bad]


def write_report(path: str, problems: List[Problem]) -> None:
    """Writes ``report.tsv`` (see the module docstring); tabs and newlines in fields become spaces."""

    def clean(text: str) -> str:
        return text.replace("\t", " ").replace("\n", " ")

    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("kind\tsplit\titem\tdetail\n")
        for p in problems:
            f.write("\t".join(clean(x) for x in (p.kind, p.split, p.item, p.detail)) + "\n")


def write_outputs(lists: DatasetLists, out_dir: str, separator: str = " ") -> None:
    """Writes the list files, ``classes.txt`` and ``report.tsv`` under ``out_dir``."""
    for name in SPLITS:
        write_video_list(list_file(out_dir, name), lists.splits[lists.outputs[name]], separator)
    write_classes(os.path.join(out_dir, CLASSES_FILE), lists.classes)
    write_report(os.path.join(out_dir, REPORT_FILE), lists.problems)


def summary(lists: DatasetLists, out_dir: str) -> str:
    """A few lines saying what was listed, written and left out, per source split."""
    counts = Counter((p.split, p.kind) for p in lists.problems)
    lines = [f"{lists.name}: {len(lists.classes)} classes -> {out_dir}"]
    for split, entries in lists.splits.items():
        left_out = ", ".join(f"{counts[split, kind]} {kind}" for kind in (MISSING, UNANNOTATED, UNREADABLE))
        lines.append(f"  {split:5s}: {len(entries)} written ({left_out})")
    for name in SPLITS:
        lines.append(f"  {name}.csv <- {lists.outputs[name]} split")
    lines.append(f"  {len(lists.problems)} problems listed in {os.path.join(out_dir, REPORT_FILE)}")
    return "\n".join(lines)


def add_common_arguments(
    parser: argparse.ArgumentParser, default_out_dir: Callable[[argparse.Namespace], str], shown: str
) -> None:
    """The options every subcommand has; ``default_out_dir(args)`` is the output folder
    without ``--out-dir`` (relative to the working directory), ``shown`` how ``--help`` names it."""
    parser.add_argument("--video-root", required=True, help="folder the list paths are relative to")
    parser.add_argument("--out-dir", help=f"output folder (default: {shown}, relative to the working directory)")
    parser.set_defaults(default_out_dir=default_out_dir)
    parser.add_argument(
        "--check", action="store_true", help="decode each video's first and last frame; report the failures"
    )
    parser.add_argument("--workers", type=int, default=2, help="threads for --check (default: %(default)s)")
    parser.add_argument("--decode-timeout", type=float, default=60.0,
                        help="--check: seconds a video may take to open or decode (default: %(default)s)")
    parser.add_argument("--separator", default=" ", help="path/label separator (default: a space)")


def finish(args: argparse.Namespace) -> DatasetLists:
    """Runs the subcommand's maker (``args.make``), ``--check``, the writes and the summary."""
    lists = args.make(args)
    if args.check:
        check_videos(lists, args.video_root, args.workers, args.decode_timeout)
    out_dir = args.out_dir or args.default_out_dir(args)
    write_outputs(lists, out_dir, args.separator)
    print(summary(lists, out_dir))
    return lists
