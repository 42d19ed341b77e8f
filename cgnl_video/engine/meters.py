"""Accuracy meters: top-k, mean class accuracy, confusion matrix, multi-view aggregation.

Nothing here knows about decoders or files: scores in, numbers out.
"""

from typing import Callable, Dict, Sequence

import torch

from cgnl_video.choices import ENSEMBLE_METHODS


def aggregate_views(view_scores: torch.Tensor, method: str = "sum") -> torch.Tensor:
    """Combines a video's views: ``V x K`` softmax scores -> ``K`` (sum or max)."""
    if method == "sum":
        return view_scores.sum(0)
    if method == "max":
        return view_scores.max(0).values
    raise ValueError(f"unknown ensemble method '{method}'; expected one of {ENSEMBLE_METHODS}")


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> Dict[int, int]:
    """Number of samples whose label is in the top k of ``scores`` (``N x K``), per k."""
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return {k: int(hits[:, :k].any(dim=1).sum()) for k in ks}


class ClassificationMeter:
    """Accumulates per-video scores and labels; reports top-1/top-5, mean class accuracy."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
        self.top5_hits = 0

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """``scores``: ``N x K``; ``labels``: ``N``."""
        predictions = scores.argmax(dim=1)
        index = labels * self.num_classes + predictions
        self.confusion += torch.bincount(index, minlength=self.num_classes**2).view_as(self.confusion)
        self.top5_hits += topk_correct(scores, labels, (5,))[5]

    def reduce(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replaces the counts with ``reduce_sum`` of them (e.g. summed over processes)."""
        self.confusion = reduce_sum(self.confusion)
        self.top5_hits = int(reduce_sum(torch.tensor(self.top5_hits)))

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    def summary(self) -> Dict[str, float]:
        """``top1``, ``top5``, ``mean_class_acc`` (fractions; classes without videos left out)."""
        count = max(self.count, 1)
        per_class_total = self.confusion.sum(dim=1)
        present = per_class_total > 0
        per_class = self.confusion.diag()[present].double() / per_class_total[present]
        return {
            "top1": float(self.confusion.diag().sum()) / count,
            "top5": self.top5_hits / count,
            "mean_class_acc": float(per_class.mean()) if present.any() else 0.0,
        }
