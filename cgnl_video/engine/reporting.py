"""Run outputs: stats.jsonl, TensorBoard (when installed), training curves, confusion matrix.

Called on rank 0 only. Every file is written to a temp file then renamed (``utils/io.py``),
except ``stats.jsonl``, which is appended one complete line at a time. Reading it skips (and
reports) a line torn by a killed run; the next append starts on a new line. A run resumed
at epoch ``e`` first drops the records of epochs after ``e`` (the work it redoes), keeping
the file as it was in ``stats.jsonl.prev``, so no epoch is recorded twice. ``stats.jsonl`` is
read and appended without following a link (``open_no_follow``): a link, special file or
hard-linked file there stops the run in one line.
"""

import json
import logging
import os
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from cgnl_video.utils.io import (  # noqa: E402
    atomic_output,
    atomic_write_text,
    open_no_follow,
    read_text_no_follow,
    write_errors,
)

logger = logging.getLogger(__name__)


def _save_figure(figure, path: str) -> None:
    try:
        with atomic_output(path) as tmp:
            figure.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(figure)


class StatsWriter:
    """Appends JSON lines to ``OUTPUT_DIR/stats.jsonl`` and mirrors scalars to TensorBoard.

    ``resume_epoch``: the epochs completed by the checkpoint the run starts from; records of
    later epochs are dropped (see the module docstring).
    """

    def __init__(self, output_dir: str, resume_epoch: int = 0):
        self.path = os.path.join(output_dir, "stats.jsonl")
        self._drop_after(resume_epoch)
        self.tensorboard = _tensorboard_writer(os.path.join(output_dir, "tensorboard"))

    def _text(self) -> str:
        return read_text_no_follow(self.path) or ""

    def _lines(self) -> List[str]:
        return self._text().splitlines()

    def _parsed(self) -> List[Optional[Dict]]:
        """Each line's record; None (reported) for a line that is not a JSON object."""
        records = []
        for number, line in enumerate(self._lines(), start=1):
            try:
                record = json.loads(line) if line.strip() else None
            except ValueError:
                record = None
            if line.strip() and not isinstance(record, dict):
                logger.warning("%s:%d: skipping a damaged line (a run killed mid-write?)", self.path, number)
                record = None
            records.append(record)
        return records

    def _drop_after(self, epoch: int) -> None:
        text, records = self._text(), self._parsed()
        lines = text.splitlines()
        kept = [line for line, r in zip(lines, records) if r is not None and r.get("epoch", 0) <= epoch]
        if len(kept) == len(lines):
            return
        logger.info("%s: dropping %d line(s) after epoch %d (kept in %s.prev)",
                    self.path, len(lines) - len(kept), epoch, self.path)
        atomic_write_text(self.path + ".prev", text)
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: Dict, step: int) -> None:
        line = json.dumps(record) + "\n"
        with write_errors(self.path):
            fd = open_no_follow(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
            try:
                size = os.fstat(fd).st_size
                torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"  # after a torn last line
                os.write(fd, (("\n" if torn else "") + line).encode("utf-8"))
            finally:
                os.close(fd)
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "iter"):
                    self.tensorboard.add_scalar(f"{record['type']}/{key}", value, step)
            self.tensorboard.flush()

    def read(self) -> List[Dict]:
        """The records of stats.jsonl, damaged lines skipped (with a warning)."""
        return [record for record in self._parsed() if record is not None]


def _tensorboard_writer(folder: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(folder)


def plot_training_curves(records: Sequence[Dict], path: str) -> None:
    """Loss and top-1 per epoch from the ``train_epoch`` / ``val`` records of stats.jsonl."""
    train = [r for r in records if r["type"] == "train_epoch"]
    val = [r for r in records if r["type"] == "val"]
    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot([r["epoch"] for r in train], [r["loss"] for r in train], marker="o")
    loss_ax.set(xlabel="epoch", ylabel="train loss", title="loss")
    acc_ax.plot([r["epoch"] for r in train], [r["top1"] for r in train], marker="o", label="train")
    if val:
        acc_ax.plot([r["epoch"] for r in val], [r["top1"] for r in val], marker="s", label="val")
    acc_ax.set(xlabel="epoch", ylabel="top-1", title="top-1", ylim=(0, 1))
    acc_ax.legend()
    figure.tight_layout()
    _save_figure(figure, path)


def plot_confusion_matrix(confusion: torch.Tensor, class_names: Optional[Sequence[str]], path: str) -> None:
    """Row-normalised confusion matrix (rows: true class, columns: prediction)."""
    counts = confusion.double()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = min(4 + 0.3 * len(rates), 30)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(rates.numpy(), vmin=0, vmax=1, cmap="Blues")
    if class_names is not None and len(class_names) <= 50:
        axis.set_xticks(range(len(class_names)), class_names, rotation=90)
        axis.set_yticks(range(len(class_names)), class_names)
    axis.set(xlabel="predicted", ylabel="true")
    figure.colorbar(image)
    figure.tight_layout()
    _save_figure(figure, path)
