"""Predictions drawn onto a video while it streams (as mmaction2's demo, without holding the
video in memory); the predictions come from :class:`cgnl_video.inference.recognizer.Recognizer`."""

from typing import List, Sequence

import numpy as np
from PIL import Image, ImageDraw

from cgnl_video.datasets.video_io import VideoWriter
from cgnl_video.errors import UserError
from cgnl_video.inference.prediction import Prediction


class FrameSizeError(UserError, ValueError):
    """Frames too small to draw on: the message names the output file and the size."""


def prediction_lines(prediction: Prediction, count: int = 3) -> List[str]:
    """``"class: score"`` lines of the ``count`` best classes."""
    return [f"{name}: {score:.2f}" for name, score in prediction[:count]]


def draw_text(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """``frame`` (uint8 ``H x W x 3``) with ``lines`` written in its top-left corner (a copy)."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    for row, text in enumerate(lines):
        draw.text((5, 5 + 12 * row), text, fill=(255, 255, 0), stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(image)


class LabelledVideoWriter(VideoWriter):
    """A :class:`VideoWriter` whose frames get text drawn on them (cropped to even sizes, so
    frames of at least 2x2: smaller ones raise :class:`FrameSizeError`)."""

    def write_labelled(self, frame: np.ndarray, lines: Sequence[str]) -> None:
        height, width = frame.shape[0] - frame.shape[0] % 2, frame.shape[1] - frame.shape[1] % 2
        if not (height and width):
            raise FrameSizeError(f"{self.path}: cannot draw on frames of {frame.shape[0]}x{frame.shape[1]}: "
                                 f"a labelled video needs frames of at least 2x2")
        self.write(draw_text(np.ascontiguousarray(frame[:height, :width]), lines))
