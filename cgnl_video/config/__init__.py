"""Configuration: defaults, YAML loading and overrides."""

from cgnl_video.config.defaults import get_cfg
from cgnl_video.config.loading import ConfigError, load_config

__all__ = ["ConfigError", "get_cfg", "load_config"]
