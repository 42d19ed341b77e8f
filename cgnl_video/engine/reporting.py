"""Run outputs: stats.jsonl, TensorBoard (when installed), training curves, confusion matrix.

Called on rank 0 only. Every file is written to a temp file then renamed, except
``stats.jsonl``, which is appended one complete line at a time.
"""

import json
import os
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from cgnl_video.utils.io import atomic_output  # noqa: E402


def _save_figure(figure, path: str) -> None:
    try:
        with atomic_output(path) as tmp:
            figure.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(figure)


class StatsWriter:
    """Appends JSON lines to ``OUTPUT_DIR/stats.jsonl`` and mirrors scalars to TensorBoard."""

    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, "stats.jsonl")
        self.tensorboard = _tensorboard_writer(os.path.join(output_dir, "tensorboard"))

    def write(self, record: Dict, step: int) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "iter"):
                    self.tensorboard.add_scalar(f"{record['type']}/{key}", value, step)
            self.tensorboard.flush()

    def read(self) -> List[Dict]:
        if not os.path.exists(self.path):
            return []
        with open(self.path) as handle:
            return [json.loads(line) for line in handle if line.strip()]


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
