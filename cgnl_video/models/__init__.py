"""Models: the CGNL and NL blocks, the inflated 3D ResNet, ``build_model``."""

from cgnl_video.models.build import build_model
from cgnl_video.models.cgnl import CGNLBlock
from cgnl_video.models.inflate import inflate_from_2d, load_inflated_weights
from cgnl_video.models.nonlocal_block import NonLocalBlock

__all__ = ["CGNLBlock", "NonLocalBlock", "build_model", "inflate_from_2d", "load_inflated_weights"]
