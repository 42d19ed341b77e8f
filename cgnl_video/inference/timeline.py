"""Recognition along a long video: sliding windows scored while the video streams by.

The video is decoded once, in display order (by the Recognizer's decoder, under its
watchdog, frames scaled to the test views' short side), into a buffer holding one window:
``window`` seconds, every ``stride`` seconds. Each full window is viewed as a video of its
own (the test config's K clips x S crops) and scored; memory stays that of one window
whatever the video's length. A video shorter than a window gives one window over all of it.
``smooth`` > 1 averages each window's scores with its neighbours' (a centred moving average of
that many windows) before the top-k.

``on_frame(frame, label)`` (optional) receives every frame once, in order, when it leaves
the buffer, with the top-1 label of the last window scored that contains it: the streamed
labelled video of ``tools/predict.py --out-video`` (labels lag by at most one window).
"""

from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, List, Optional, Tuple

import numpy as np
import torch

from cgnl_video.decoding.frames import FramesVideo
from cgnl_video.decoding.video import iter_frames
from cgnl_video.inference.arguments import check_timeline
from cgnl_video.inference.prediction import Prediction

FrameCallback = Callable[[np.ndarray, str], None]


@dataclass
class Window:
    """One scored window: ``start`` / ``end`` in seconds, ``top``: ``(class, score)`` pairs."""

    start: float
    end: float
    top: Prediction


def smooth_scores(scores: torch.Tensor, width: int) -> torch.Tensor:
    """Centred moving average over ``width`` windows of ``W x NUM_CLASSES`` scores (edges:
    the windows that exist)."""
    if width <= 1:
        return scores
    kernel = torch.ones(1, 1, width, dtype=scores.dtype)
    padded = torch.nn.functional.pad(scores.T[:, None], (width // 2, (width - 1) // 2))
    counts = torch.nn.functional.pad(torch.ones(1, 1, len(scores), dtype=scores.dtype),
                                     (width // 2, (width - 1) // 2))
    return (torch.conv1d(padded, kernel) / torch.conv1d(counts, kernel))[:, 0].T


class _Stream:
    """The window buffer of one video: frames in, scores of full windows out."""

    def __init__(self, recognizer, fps: float, window_s: float, stride_s: float, on_frame: Optional[FrameCallback]):
        self.recognizer, self.fps, self.on_frame = recognizer, fps, on_frame
        self.size = max(1, round(window_s * fps))
        self.stride = max(1, round(stride_s * fps))
        self.buffer: Deque[Tuple[int, np.ndarray]] = deque()
        self.start, self.scores, self.spans, self.label = 0, [], [], ""

    def push(self, index: int, frame: np.ndarray) -> None:
        self.buffer.append((index, frame))
        self._release(self.start)  # frames between windows (stride longer than the window)
        if index == self.start + self.size - 1:
            self._score()
            self.start += self.stride
            self._release(self.start)

    def finish(self) -> None:
        if not self.scores and self.buffer:  # shorter than a window: one window over all of it
            self._score()
        self._release(float("inf"))

    def _score(self) -> None:
        frames = np.stack([frame for _, frame in self.buffer])
        scores = self.recognizer.scores(self.recognizer.test_views(FramesVideo(frames, self.fps)))
        first, last = self.buffer[0][0], self.buffer[-1][0]
        self.scores.append(scores)
        self.spans.append((first / self.fps, (last + 1) / self.fps))
        self.label = self.recognizer.class_names[int(scores.argmax())]

    def _release(self, before: float) -> None:
        while self.buffer and self.buffer[0][0] < before:
            _, frame = self.buffer.popleft()
            if self.on_frame is not None:
                self.on_frame(frame, self.label)


def timeline(recognizer, path: str, window: float = 2.0, stride: float = 1.0, smooth: int = 1, topk: int = 5,
             on_frame: Optional[FrameCallback] = None) -> List[Window]:
    """Scored sliding windows (seconds) of the video at ``path``; see the module docstring."""
    check_timeline(window, stride, smooth, topk)
    with recognizer.decoder.open(path, short_side=recognizer.test_views.short_side) as video:
        stream = _Stream(recognizer, video.fps, window, stride, on_frame)
        for index, frame in enumerate(iter_frames(video)):
            stream.push(index, frame)
        stream.finish()
    scores = smooth_scores(torch.stack(stream.scores), smooth)
    return [Window(start, end, recognizer.top(row, topk)) for (start, end), row in zip(stream.spans, scores)]
