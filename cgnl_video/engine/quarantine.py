"""Bad training videos: recorded once, skipped afterwards, and a stop when there are too many.

``OUTPUT_DIR/bad_videos.tsv`` has one line per video that failed to decode in training:
``path<TAB>reason<TAB>epoch`` (the 1-based epoch it failed in), rewritten atomically after
each epoch by rank 0 (read without following a link: ``utils/io.py``). At the start of epoch
``e`` (1-based) the videos that failed in epochs before ``e`` are quarantined: the dataset
replaces them without decoding them again. A resumed run reads the file, so it skips the same videos at the same epochs as an
uninterrupted run. When more than ``DATA.MAX_BAD_FRACTION`` of the list has failed, training
stops with :class:`TooManyBadVideos`.

Where the state lives: the file (rank 0 writes it), a :class:`Quarantine` per process (every
rank records the failures gathered from all ranks, so all agree), and, for the loading,
``VideoDataset.quarantined``: a frozenset of dataset indices that ``engine/train.py`` sets
on the main process's dataset before each epoch (``Quarantine.before(epoch)``). It reaches
the DataLoader workers only because the DataLoader forks them again at each epoch's
``iter(loader)``, each with a copy of the dataset as it is then. ``build_loader`` therefore
keeps ``persistent_workers=False`` (no config key changes it; ``tests/test_video_dataset.py``
fails if it does): persistent workers would keep the first epoch's empty set and decode the
bad videos again every epoch. Whoever makes workers persistent must send the set to them
(e.g. through the batch sampler's keys) first.
"""

import csv
import io
import logging
import os
from typing import Dict, FrozenSet, Iterable, List, Sequence, Tuple

from cgnl_video.datasets.lists import VideoRecord
from cgnl_video.errors import UserError
from cgnl_video.utils.io import atomic_write_text, read_text_no_follow

logger = logging.getLogger(__name__)

FILE_NAME = "bad_videos.tsv"


class TooManyBadVideos(UserError, RuntimeError):
    """More than ``DATA.MAX_BAD_FRACTION`` of the training list failed to decode."""


class Quarantine:
    """The bad videos of one run's training list (``records``), read from and written to ``output_dir``."""

    def __init__(self, output_dir: str, records: Sequence[VideoRecord], max_fraction: float):
        self.path = os.path.join(output_dir, FILE_NAME)
        self.max_fraction, self.num_videos = max_fraction, len(records)
        self._indices: Dict[str, List[int]] = {}
        for position, record in enumerate(records):  # dataset index -> path
            self._indices.setdefault(record.path, []).append(position)
        self.entries: Dict[str, Tuple[str, int]] = self._read()  # path -> (reason, epoch)

    def _read(self) -> Dict[str, Tuple[str, int]]:
        text = read_text_no_follow(self.path)  # a link there stops the run (UnsafePathError)
        if text is None:
            return {}
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), delimiter="\t") if row]
        entries = {}
        for lineno, row in enumerate(rows, start=1):
            if len(row) != 3 or not row[2].isdigit():
                logger.warning("%s:%d: ignoring malformed line %r", self.path, lineno, "\t".join(row))
                continue
            entries[row[0]] = (row[1], int(row[2]))
        return entries

    def before(self, epoch: int) -> FrozenSet[int]:
        """Dataset indices of the videos that failed before ``epoch`` (1-based)."""
        return frozenset(i for path, (_, failed_in) in self.entries.items() if failed_in < epoch
                         for i in self._indices.get(path, ()))

    def add(self, failures: Iterable[Tuple[str, str]], epoch: int, write: bool) -> List[str]:
        """Records ``(path, reason)`` failures of ``epoch`` (1-based); rank 0 passes ``write``.
        Returns the newly recorded paths. Raises TooManyBadVideos past the allowed fraction."""
        new = []
        for path, reason in failures:
            if path not in self.entries:
                self.entries[path] = (reason.replace("\t", " ").replace("\n", " "), epoch)
                new.append(path)
        if new and write:
            atomic_write_text(self.path, self._text())
            logger.warning("%d video(s) failed in epoch %d and will be skipped from now on (%s)",
                           len(new), epoch, self.path)
        self._check_fraction()
        return new

    def _text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        for path, (reason, epoch) in self.entries.items():
            writer.writerow([path, reason, epoch])
        return out.getvalue()

    def _check_fraction(self) -> None:
        bad = sum(1 for path in self.entries if path in self._indices)
        if bad > self.max_fraction * self.num_videos:
            raise TooManyBadVideos(
                f"{bad} of the {self.num_videos} training videos failed to decode, more than "
                f"DATA.MAX_BAD_FRACTION = {self.max_fraction}; see {self.path}"
            )
