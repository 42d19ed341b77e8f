"""Predictions drawn back onto a video (as mmaction2's demo); the predictions themselves come
from :class:`cgnl_video.inference.recognizer.Recognizer`."""

from typing import List, Tuple

import numpy as np
from fvcore.common.config import CfgNode
from PIL import Image, ImageDraw

from cgnl_video.datasets.decoders import build_decoder
from cgnl_video.datasets.video_io import write_video

Prediction = List[Tuple[str, float]]


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
