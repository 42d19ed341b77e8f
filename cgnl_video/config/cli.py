"""The command line shared by every tool: ``--cfg FILE [KEY VALUE ...]`` (PySlowFast style)."""

import argparse
import sys
from typing import Callable

from cgnl_video.errors import ConfigError
from cgnl_video.config.loading import load_config
from cgnl_video.errors import UserError


def default_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--cfg`` and trailing ``KEY VALUE`` overrides (``opts``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="YAML config file")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[],
        help="config overrides as KEY VALUE pairs, e.g. MODEL.NUM_CLASSES 101",
    )
    return parser


def config_from_args(args: argparse.Namespace):
    """Loads the config named by ``args`` (``--cfg`` and ``opts``)."""
    return load_config(args.cfg_file, args.opts)


def run_tool(main: Callable[[], None]) -> None:
    """Runs a tool's ``main``: a :class:`~cgnl_video.errors.UserError` (bad input, not a bug)
    exits with its message in one line and no traceback; a :class:`ConfigError` says so."""
    try:
        main()
    except ConfigError as err:
        sys.exit(f"config error: {err}")
    except UserError as err:
        sys.exit(f"error: {err}")
