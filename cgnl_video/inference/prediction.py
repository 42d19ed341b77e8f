"""What recognising a video gives: a :data:`Prediction`, the best classes with their scores."""

from typing import List, Sequence, Tuple

import torch

# ``(class name, score)`` pairs, best first (scores: the combined softmax scores of the views).
Prediction = List[Tuple[str, float]]


def top_classes(scores: torch.Tensor, class_names: Sequence[str], topk: int = 5) -> Prediction:
    """``(class name, score)`` of the ``topk`` largest of ``NUM_CLASSES`` ``scores``."""
    best = scores.topk(min(topk, len(scores)))
    return [(class_names[i], float(s)) for i, s in zip(best.indices, best.values)]
