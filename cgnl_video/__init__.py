"""cgnl-video: spatio-temporal Compact Generalized Non-local networks for video."""

import warnings

# pytorchvideo 0.1.5 scripts a helper with torch.jit.script at import time, which
# current torch reports as deprecated on every run; it is not ours to fix.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

__version__ = "0.1.0"


def __getattr__(name: str):
    """``cgnl_video.Recognizer``, imported on first use (``import cgnl_video`` stays light)."""
    if name == "Recognizer":
        from cgnl_video.inference.recognizer import Recognizer

        return Recognizer
    raise AttributeError(f"module 'cgnl_video' has no attribute {name!r}")
