"""Loading configs: YAML files with ``_BASE_`` inheritance, then ``KEY VALUE`` overrides.

Every failure is a :class:`ConfigError` naming the file or the key at fault.
"""

import os
from typing import Optional, Sequence

import yaml
from fvcore.common.config import CfgNode

from cgnl_video.config.defaults import get_cfg


class ConfigError(ValueError):
    """A config file, override or value that cannot be used; the message names it."""


def _reason(err: Exception) -> str:
    # KeyError wraps its message in quotes; take the plain text.
    return err.args[0] if err.args else repr(err)


def merge_file(cfg: CfgNode, path: str) -> None:
    """Merges the YAML file at ``path`` (and its ``_BASE_`` chain) into ``cfg``."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: config file not found")
    try:
        cfg.merge_from_file(path)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    except (KeyError, ValueError, AssertionError, TypeError) as err:
        raise ConfigError(f"{path}: {_reason(err)}") from err


def merge_overrides(cfg: CfgNode, opts: Sequence[str]) -> None:
    """Merges command-line ``KEY VALUE`` pairs into ``cfg``."""
    if len(opts) % 2:
        raise ConfigError(
            f"command-line overrides must be KEY VALUE pairs; '{opts[-1]}' has no value"
        )
    for key, value in zip(opts[0::2], opts[1::2]):
        try:
            cfg.merge_from_list([key, value])
        except (KeyError, ValueError, AssertionError, TypeError) as err:
            raise ConfigError(f"command-line override {key}={value}: {_reason(err)}") from err


def load_config(path: Optional[str] = None, opts: Sequence[str] = ()) -> CfgNode:
    """Returns the defaults, merged with the file at ``path`` and then ``opts``, frozen."""
    cfg = get_cfg()
    if path:
        merge_file(cfg, path)
    merge_overrides(cfg, list(opts))
    cfg.freeze()
    return cfg
