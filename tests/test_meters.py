"""Top-k, mean class accuracy and view aggregation."""

import pytest
import torch

from cgnl_video.engine.meters import ClassificationMeter, aggregate_views, topk_correct


def test_topk_correct():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 1, 0])
    assert topk_correct(scores, labels, (1, 2, 3)) == {1: 1, 2: 2, 3: 3}


def test_mean_class_accuracy_weights_classes_equally():
    meter = ClassificationMeter(3)
    # class 0: 3 videos, all right; class 1: 1 video, wrong; class 2: none.
    meter.update(torch.eye(3)[[0, 0, 0, 2]], torch.tensor([0, 0, 0, 1]))
    summary = meter.summary()
    assert summary["top1"] == pytest.approx(0.75)
    assert summary["mean_class_acc"] == pytest.approx(0.5)
    assert summary["top5"] == 1.0
    assert meter.confusion.tolist() == [[3, 0, 0], [0, 0, 1], [0, 0, 0]]


def test_aggregation_sum_and_max():
    views = torch.tensor([[0.6, 0.4], [0.0, 1.0], [0.55, 0.45]])
    assert aggregate_views(views, "sum").tolist() == pytest.approx([1.15, 1.85])
    assert aggregate_views(views, "max").tolist() == pytest.approx([0.6, 1.0])
    with pytest.raises(ValueError, match="median"):
        aggregate_views(views, "median")


def test_reduce_replaces_every_count():
    meter = ClassificationMeter(2)
    meter.update(torch.tensor([[0.9, 0.1], [0.8, 0.2]]), torch.tensor([0, 1]))
    before = meter.summary()
    meter.reduce(lambda counts: counts * 3)  # as if three processes saw the same videos
    assert meter.count == 6 and meter.top5_hits == 6
    assert meter.summary() == before
