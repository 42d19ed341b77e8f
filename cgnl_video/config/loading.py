"""Loading configs: YAML files with ``_BASE_`` inheritance, then ``KEY VALUE`` overrides.

Every failure is a :class:`ConfigError` naming the file or the key at fault. A ``_BASE_``
chain is read here (not by fvcore), so that a missing file or a cycle names the chain, and
every key's origin (the file that set it last, or the command line) is known to the checks
of :mod:`cgnl_video.config.validation`, which :func:`load_config` runs.
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

import yaml
from fvcore.common.config import CfgNode

from cgnl_video.config.defaults import get_cfg
from cgnl_video.config.validation import keep_origins, validate_values
from cgnl_video.errors import ConfigError

BASE_KEY = "_BASE_"
COMMAND_LINE = "command line"  # the origin of a KEY VALUE override



def flatten(node, prefix: str = "") -> Dict[str, object]:
    """``{"A.B": value}`` for every leaf of a (nested) mapping."""
    flat = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        flat.update(flatten(value, name + ".") if isinstance(value, dict) else {name: value})
    return flat


def _reason(err: Exception) -> str:
    # KeyError wraps its message in quotes; take the plain text.
    return err.args[0] if err.args else repr(err)


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses YAML aliases (``*name``): a config needs none, and nested
    aliases expand exponentially (an "alias bomb" of a few hundred bytes)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed in a config")
        return super().compose_node(parent, index)


def _read_yaml(path: str, chain: Tuple[str, ...]) -> dict:
    """The top-level mapping of the YAML file at ``path`` (``chain``: the files naming it as _BASE_)."""
    via = f" (_BASE_ of {' -> '.join(chain)})" if chain else ""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: config file not found{via}")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_NoAliasLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if data is None:
        raise ConfigError(f"{path}: empty config file (expected a mapping of KEY: value){via}")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of KEY: value at the top level, "
                          f"got a {type(data).__name__}{via}")
    return data


def _base_path(path: str, base) -> str:
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: {BASE_KEY}={base!r}: expected a file name")
    base = os.path.expanduser(base)
    return base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)


def file_chain(path: str, chain: Tuple[str, ...] = ()) -> List[Tuple[str, dict]]:
    """``[(file, mapping)]`` of ``path``'s ``_BASE_`` chain, the root first, ``path`` last."""
    if os.path.realpath(path) in map(os.path.realpath, chain):
        raise ConfigError(f"{path}: {BASE_KEY} cycle: {' -> '.join((*chain, path))}")
    data = _read_yaml(path, chain)
    base = data.pop(BASE_KEY, None)
    own = [(path, data)]
    return own if base is None else file_chain(_base_path(path, base), (*chain, path)) + own


def merge_file(cfg: CfgNode, path: str, origins: Optional[Dict[str, str]] = None) -> None:
    """Merges the YAML file at ``path`` (and its ``_BASE_`` chain) into ``cfg``; records in
    ``origins`` the file that set each key."""
    for file, data in file_chain(path):
        try:
            cfg.merge_from_other_cfg(CfgNode(data))
        except (KeyError, ValueError, AssertionError, TypeError) as err:
            raise ConfigError(f"{file}: {_reason(err)}") from None
        if origins is not None:
            origins.update(dict.fromkeys(flatten(data), file))


def merge_overrides(cfg: CfgNode, opts: Sequence[str], origins: Optional[Dict[str, str]] = None) -> None:
    """Merges command-line ``KEY VALUE`` pairs into ``cfg``; records them in ``origins``."""
    if len(opts) % 2:
        raise ConfigError(
            f"command-line overrides must be KEY VALUE pairs; '{opts[-1]}' has no value"
        )
    for key, value in zip(opts[0::2], opts[1::2]):
        try:
            cfg.merge_from_list([key, value])
        except (KeyError, ValueError, AssertionError, TypeError) as err:
            raise ConfigError(f"command-line override {key}={value}: {_reason(err)}") from err
        if origins is not None:
            origins[key] = COMMAND_LINE


def load_run_config(output_dir: str, opts: Sequence[str] = ()) -> CfgNode:
    """The config of the training run in ``output_dir`` (its ``config.yaml``, ``OUTPUT_DIR``
    pointing there), then ``opts``; ConfigError when the folder holds no run."""
    cfg_file = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(cfg_file):
        raise ConfigError(f"{output_dir}: not a training run (no config.yaml)")
    return load_config(cfg_file, ["OUTPUT_DIR", output_dir, *opts])


def load_config(path: Optional[str] = None, opts: Sequence[str] = (), validate: bool = True) -> CfgNode:
    """Returns the defaults, merged with the file at ``path`` and then ``opts``, frozen.

    With ``validate``, every value is checked (:func:`~cgnl_video.config.validation.validate_values`).
    """
    cfg, origins = get_cfg(), {}
    if path:
        merge_file(cfg, path, origins)
    merge_overrides(cfg, list(opts), origins)
    if validate:
        validate_values(cfg, origins)
    keep_origins(cfg, origins)
    cfg.freeze()
    return cfg
