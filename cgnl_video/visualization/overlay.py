"""Drawing maps over a clip: a PNG grid (rows: clip, response, one row per query; columns:
frames) and an animated GIF of the same panels side by side, both written atomically."""

from typing import List, Sequence, Tuple

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw

from cgnl_video.utils.io import atomic_output

ALPHA = 0.55  # weight of the map over the frame


def overlay(frames: np.ndarray, maps: torch.Tensor) -> np.ndarray:
    """uint8 frames ``T x H x W x 3`` and maps ``T x H x W`` in [0, 1] -> uint8 ``T x H x W x 3``."""
    heat = colormaps["inferno"](maps.numpy())[..., :3] * 255
    return (ALPHA * heat + (1 - ALPHA) * frames).round().astype(np.uint8)


def mark(panel: np.ndarray, point: Tuple[int, int]) -> np.ndarray:
    """Draws a cross at ``point`` = (y, x) on an ``H x W x 3`` panel (a copy)."""
    image = Image.fromarray(panel)
    y, x = point
    draw = ImageDraw.Draw(image)
    size = max(3, panel.shape[0] // 24)
    draw.line([(x - size, y), (x + size, y)], fill=(0, 255, 0), width=2)
    draw.line([(x, y - size), (x, y + size)], fill=(0, 255, 0), width=2)
    return np.asarray(image)


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    image = Image.fromarray(panel)
    ImageDraw.Draw(image).text((3, 2), text, fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(image)


def grid(rows: Sequence[np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Rows of ``T x H x W x 3`` panels -> one ``(R H) x (T W) x 3`` image, each row named in its
    first panel."""
    lines = []
    for row, name in zip(rows, names):
        panels = [_label(row[0], name), *row[1:]]
        lines.append(np.concatenate(panels, axis=1))
    return np.concatenate(lines, axis=0)


def save_png(image: np.ndarray, path: str) -> None:
    with atomic_output(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def save_gif(rows: Sequence[np.ndarray], names: Sequence[str], path: str, frame_ms: int = 250) -> None:
    """Frame ``t`` of the GIF shows every row's panel ``t`` side by side."""
    frames: List[Image.Image] = []
    for t in range(len(rows[0])):
        panels = [_label(row[t], name) for row, name in zip(rows, names)]
        frames.append(Image.fromarray(np.concatenate(panels, axis=1)))
    with atomic_output(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
