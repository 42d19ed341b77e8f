#!/usr/bin/env python3
"""Multi-view test (K clips x S crops): ``python tools/test_net.py --cfg FILE [KEY VALUE ...]``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cgnl_video.datasets.lists import ListFormatError  # noqa: E402
from cgnl_video.engine.checkpoint import CheckpointError  # noqa: E402
from cgnl_video.engine.run_lock import RunLockError  # noqa: E402
from cgnl_video.config.cli import config_from_args, default_parser, run_tool  # noqa: E402
from cgnl_video.engine import distributed as du  # noqa: E402
from cgnl_video.engine.test import run_test  # noqa: E402


def report(results) -> str:
    views = results["num_ensemble_views"] * results["num_spatial_crops"]
    return (
        f"test top1 {results['top1']:.4f} top5 {results['top5']:.4f} "
        f"mean class acc {results['mean_class_acc']:.4f} | {results['num_tested']} videos x "
        f"{views} views ({results['num_ensemble_views']} clips x {results['num_spatial_crops']} crops)"
        f", {results['num_failed']} failed"
    )


def main():
    args = default_parser(__doc__.strip().splitlines()[0]).parse_args()
    try:
        results = run_test(config_from_args(args))
        if du.is_main_process():
            print(report(results))
    finally:
        du.cleanup()


if __name__ == "__main__":
    run_tool(main, (CheckpointError, ListFormatError, RunLockError))
