"""``tools/visualize.py``: what each CGNL / NL block of a trained model attends to in a video.

For the video's centre clip (the validation view), per block: a PNG grid (rows: the clip,
the block's response ``|block(x) - x|``, then its attention for the ``num_queries`` positions of
strongest response, each query marked with a green cross; columns: the clip's frames) and
an animated GIF of the same panels. Files: ``OUT_DIR/<block name>.png`` and ``.gif``.
"""

import os
from typing import Dict, List

import numpy as np

from cgnl_video.datasets.views import build_views
from cgnl_video.inference.recognizer import Recognizer
from cgnl_video.visualization.attention import display
from cgnl_video.visualization.maps import BlockMaps, block_maps
from cgnl_video.visualization.overlay import grid, mark, overlay, save_gif, save_png


def _query_point(query, grid_shape, size):
    """A ``(t, h, w)`` position of a ``grid_shape`` grid -> (frame, y, x) of a ``size`` clip (centres)."""
    return tuple(int((q + 0.5) * s / g) for q, g, s in zip(query, grid_shape, size))


def _rows(frames: np.ndarray, maps: BlockMaps) -> Dict[str, np.ndarray]:
    size = frames.shape[:3]  # T x H x W
    rows = {"clip": frames, "response": overlay(frames, display(maps.response, size))}
    shown = display(maps.attention, size)
    for number, query in enumerate(maps.queries):
        frame, y, x = _query_point(query, maps.response.shape, size)
        panels = overlay(frames, shown[number])
        panels[frame] = mark(panels[frame], (y, x))
        rows[f"query {number + 1} (t={frame})"] = panels
    return rows


def visualize_video(recognizer: Recognizer, video: str, out_dir: str, num_queries: int = 3) -> List[str]:
    """Writes the maps of every non-local block of ``recognizer``'s model on ``video`` (its centre
    clip and crop, the validation view); returns the paths written."""
    views = build_views(recognizer.cfg, "val").read(recognizer.decoder.open, video)  # uint8 1 x C x T x H x W
    frames = views[0].permute(1, 2, 3, 0).numpy()  # T x H x W x 3
    written = []
    for name, maps in block_maps(recognizer.model, recognizer.normalize(views), num_queries).items():
        rows = _rows(frames, maps)
        names = [f"{maps.kind} {name}: {row}" if row == "clip" else row for row in rows]
        base = os.path.join(out_dir, name)
        save_png(grid(list(rows.values()), names), base + ".png")
        save_gif(list(rows.values()), names, base + ".gif")
        written += [base + ".png", base + ".gif"]
    return written
