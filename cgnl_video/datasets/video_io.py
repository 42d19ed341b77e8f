"""Video files: which names are videos, and writing videos (PyAV), the counterpart of the
decoders, for generated data, benchmarks and inference outputs.

    write_video("out.mp4", frames)   # uint8 T x H x W x 3 (RGB), H and W even
"""

import av
import numpy as np

from cgnl_video.utils.io import atomic_output

# File name endings taken for videos when scanning folders (list makers, prediction).
VIDEO_EXTENSIONS = (".avi", ".flv", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".webm", ".wmv")

_X264_OPTIONS = {"threads": "1", "preset": "veryfast", "x264-params": "mbtree=0"}


def write_video(path: str, frames: np.ndarray, fps: int = 25) -> None:
    """Writes ``frames`` (T x H x W x 3 uint8, H and W even) as an H.264 yuv420p mp4, atomically.

    The bytes written depend only on ``frames`` and ``fps`` (see ``_X264_OPTIONS``).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(
            f"frames must be a non-empty T x H x W x 3 uint8 array, got {frames.dtype} {frames.shape}"
        )
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {height}x{width}")
    with atomic_output(path) as tmp:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps, options=_X264_OPTIONS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
