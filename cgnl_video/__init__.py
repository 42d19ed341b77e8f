"""cgnl-video: spatio-temporal Compact Generalized Non-local networks for video."""

__version__ = "0.1.0"
