"""List files: ``relative/path LABEL`` lines, ``classes.txt``, atomic writes.

A list file (``train.csv``, ``val.csv``, ``test.csv``) holds one video per line::

    ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0
    abseiling/abc_000010_000020.mp4 0

The label is everything after the LAST separator, so paths may themselves contain
the separator (Kinetics class folders such as ``playing bass guitar`` have spaces).
Blank lines are skipped. ``classes.txt`` names the classes, line ``i`` = label ``i``.
Files are read as UTF-8 (a leading byte-order mark is dropped); other bytes raise
``ListFormatError`` naming the line. A video listed twice is reported (a warning naming both
lines) and kept.

Every write goes to a temporary file in the destination folder, then ``os.replace``:
a failure part-way leaves any existing file intact.
"""

import io
import logging
import os
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

from cgnl_video.errors import UserError
from cgnl_video.utils.io import atomic_output

logger = logging.getLogger(__name__)

# Duplicate lines reported one by one per file; more are counted in one last warning.
_MAX_DUPLICATE_WARNINGS = 5

# The list files of a dataset folder (DATA.PATH_TO_DATA_DIR): one per split, and the class names.
SPLITS = ("train", "val", "test")
CLASSES_FILE = "classes.txt"


def list_file(data_dir: str, split: str) -> str:
    """Path of ``split``'s list file (``{split}.csv``) in ``data_dir``."""
    return os.path.join(data_dir, f"{split}.csv")


class ListFormatError(UserError, ValueError):
    """A malformed list or classes file; the message reads ``file:line: reason``."""

    def __init__(self, path: str, line: int, reason: str):
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = path, line, reason


@dataclass(frozen=True)
class VideoRecord:
    """One list entry: ``path`` = prefix joined with the listed path, ``index`` = 0-based line."""

    path: str
    label: int
    index: int


def _write_lines(path: str, lines: Iterable[str]) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line + "\n")


def read_text_lines(path: str) -> List[str]:
    """The lines of a UTF-8 text file (BOM dropped, newlines ``\\n``, ``\\r\\n`` or ``\\r``
    removed); ListFormatError ``file:line`` at the first byte that is not UTF-8."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        offset = err.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, offset) + 1
        raise ListFormatError(path, line, f"not UTF-8 text (byte 0x{data[offset]:02x}: {err.reason})") from None
    return [line.rstrip("\n") for line in io.StringIO(text, newline=None)]


def read_classes(path: str) -> List[str]:
    """Reads ``classes.txt``: one name per line (kept verbatim), trailing blank lines ignored."""
    names = read_text_lines(path)
    while names and not names[-1].strip():
        names.pop()
    seen = {}
    for lineno, name in enumerate(names, start=1):
        if not name.strip():
            raise ListFormatError(path, lineno, "empty class name")
        if name in seen:
            raise ListFormatError(path, lineno, f"duplicate class name {name!r} (first on line {seen[name]})")
        seen[name] = lineno
    return names


def _parse_line(line: str, separator: str, num_classes: Optional[int]) -> Tuple[str, int]:
    """Splits one stripped, non-blank line into (path, label); raises ValueError with the reason."""
    parts = line.rsplit(separator, 1)
    if len(parts) < 2 or not parts[1].strip():
        raise ValueError(f"missing label (expected 'path{separator}LABEL', got {line!r})")
    rel_path, label_text = parts[0].strip(), parts[1].strip()
    if not rel_path:
        raise ValueError(f"missing path in {line!r}")
    try:
        label = int(label_text)
    except ValueError:
        raise ValueError(f"non-integer label {label_text!r}") from None
    if label < 0 or (num_classes is not None and label >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        raise ValueError(f"label {label} outside {bound}")
    return rel_path, label


def read_video_list(
    list_path: str, prefix: str = "", separator: str = " ", num_classes: Optional[int] = None,
    warn_duplicates: bool = True,
) -> List[VideoRecord]:
    """Reads a list file into records; raises ListFormatError ``file:line: reason`` on a bad line.

    ``index`` is the 0-based line index in the file (blank lines count as lines but
    yield no record), so error messages and records point at the same line. A path listed
    twice is kept and, with ``warn_duplicates``, reported.
    """
    records = []
    for index, line in enumerate(read_text_lines(list_path)):
        line = line.strip()
        if not line:
            continue
        try:
            rel_path, label = _parse_line(line, separator, num_classes)
        except ValueError as e:
            raise ListFormatError(list_path, index + 1, str(e)) from None
        records.append(VideoRecord(os.path.join(prefix, rel_path), label, index))
    if warn_duplicates:
        _warn_duplicates(list_path, records)
    return records


def _warn_duplicates(list_path: str, records: Sequence[VideoRecord]) -> None:
    """Logs ``file:line: duplicate of line N`` for videos listed more than once."""
    first = {}
    duplicates = []
    for record in records:
        if record.path in first:
            duplicates.append((record, first[record.path]))
        else:
            first[record.path] = record
    for record, original in duplicates[:_MAX_DUPLICATE_WARNINGS]:
        labels = "" if record.label == original.label else f" with another label ({record.label} vs {original.label})"
        logger.warning("%s:%d: duplicate of line %d (%s)%s", list_path, record.index + 1,
                       original.index + 1, record.path, labels)
    if len(duplicates) > _MAX_DUPLICATE_WARNINGS:
        logger.warning("%s: %d duplicate lines in all", list_path, len(duplicates))


def _format_entry(rel_path: str, label: int, separator: str) -> str:
    if not rel_path or rel_path != rel_path.strip() or "\n" in rel_path or "\r" in rel_path:
        raise ValueError(f"cannot write path {rel_path!r} to a list (empty, padded or multi-line)")
    if int(label) != label or label < 0:
        raise ValueError(f"label of {rel_path!r} must be a non-negative integer, got {label!r}")
    return f"{rel_path}{separator}{int(label)}"


def write_video_list(path: str, entries: Iterable[Tuple[str, int]], separator: str = " ") -> None:
    """Writes ``(relative_path, label)`` entries atomically, one ``path<sep>label`` per line."""
    _write_lines(path, (_format_entry(p, label, separator) for p, label in entries))


def write_classes(path: str, names: Sequence[str]) -> None:
    """Writes ``classes.txt`` atomically; names must be unique, non-empty and single-line."""
    for name in names:
        if not name.strip() or "\n" in name or "\r" in name:
            raise ValueError(f"invalid class name {name!r}")
    if len(set(names)) != len(names):
        raise ValueError("duplicate class names")
    _write_lines(path, names)
