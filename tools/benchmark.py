#!/usr/bin/env python
"""Benchmarks, one subcommand each: ``python tools/benchmark.py {blocks,data,decoding,export,gpu,timeline} [-h] ...``.

``blocks``: the CGNL block against its floor and the NL block (``cgnl_video.benchmarks.blocks``);
``data``: the input pipeline (``cgnl_video.benchmarks.data``); ``decoding``: the decoding
watchdog's overhead (``cgnl_video.benchmarks.decoding``); ``export``: eager PyTorch against the
ONNX and TorchScript files (``cgnl_video.benchmarks.export``); ``gpu``: one GPU's check of the
engine, or ``--device cpu --tiny`` (``cgnl_video.benchmarks.gpu``); ``timeline``: long videos'
memory and speed (``cgnl_video.benchmarks.timeline``). Each module registers its
own subparser; see ``cgnl_video/benchmarks/__init__.py``.
"""

import argparse
import importlib
import shlex
import sys
from types import ModuleType
from typing import List, Optional

SUBCOMMANDS = ("blocks", "data", "decoding", "export", "gpu", "timeline")


def benchmark_module(name: str) -> Optional[ModuleType]:
    """``cgnl_video.benchmarks.<name>``, or None while that module does not exist."""
    module_name = f"cgnl_video.benchmarks.{name}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        return None


def build_parser() -> argparse.ArgumentParser:
    """The parser with a subcommand per existing benchmark module."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    subparsers = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name in SUBCOMMANDS:
        module = benchmark_module(name)
        if module is not None:
            module.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    """Parses ``argv`` and runs the chosen benchmark; ``args.command`` is the command line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command = shlex.join(["python", "tools/benchmark.py", *argv])
    args.func(args)


if __name__ == "__main__":
    main()
