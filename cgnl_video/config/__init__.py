"""Configuration: defaults, YAML loading and overrides (errors: :class:`cgnl_video.errors.ConfigError`)."""

from cgnl_video.config.defaults import get_cfg
from cgnl_video.config.loading import load_config

__all__ = ["get_cfg", "load_config"]
