"""Labels for single videos (multi-view), optionally drawn back onto the video (as mmaction2's demo).

Uses the test pipeline of the config: K clips x S crops, softmax scores aggregated.
"""

from typing import List, Sequence, Tuple

import numpy as np
import torch
from fvcore.common.config import CfgNode
from PIL import Image, ImageDraw

from cgnl_video.datasets.decoders import build_decoder
from cgnl_video.datasets.lists import VideoRecord
from cgnl_video.datasets.video_io import write_video
from cgnl_video.datasets.video_dataset import build_dataset
from cgnl_video.engine.inputs import build_normalizer
from cgnl_video.engine.test import video_scores

Prediction = List[Tuple[str, float]]


def predict_videos(model, cfg: CfgNode, paths: Sequence[str], class_names: Sequence[str],
                   device: torch.device) -> List[Prediction]:
    """Top-5 ``(class name, score)`` per video; scores are the aggregated view scores
    divided by the view count (so they read as probabilities with ``sum``)."""
    records = [VideoRecord(path, 0, i) for i, path in enumerate(paths)]
    dataset = build_dataset(cfg, "test", records)
    normalize = build_normalizer(cfg, device)
    results = []
    for record in records:
        views = dataset.views(record)
        scores = video_scores(model, views, cfg, normalize)
        if cfg.TEST.ENSEMBLE_METHOD == "sum":
            scores = scores / len(views)
        top = scores.topk(min(5, len(scores)))
        results.append([(class_names[i], float(s)) for i, s in zip(top.indices, top.values)])
    return results


def draw_predictions(frames: np.ndarray, prediction: Prediction) -> np.ndarray:
    """Writes the top predictions in the top-left corner of every frame (``T x H x W x 3``)."""
    lines = [f"{name}: {score:.2f}" for name, score in prediction[:3]]
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        image = Image.fromarray(frame)
        draw = ImageDraw.Draw(image)
        for row, text in enumerate(lines):
            draw.text((5, 5 + 12 * row), text, fill=(255, 255, 0), stroke_width=1, stroke_fill=(0, 0, 0))
        out[t] = np.asarray(image)
    return out


def write_annotated_video(src: str, dst: str, prediction: Prediction, cfg: CfgNode) -> None:
    """Decodes ``src`` (even-sized, every frame), draws ``prediction``, writes H.264 to ``dst``."""
    with build_decoder(cfg).open(src) as video:
        frames = video.get(range(video.num_frames)).numpy()
    height, width = (s - s % 2 for s in frames.shape[1:3])
    write_video(dst, draw_predictions(frames[:, :height, :width], prediction))
