#!/usr/bin/env python3
"""Multi-view test (K clips x S crops): ``python tools/test_net.py --cfg FILE [KEY VALUE ...]``."""

from cgnl_video.config.cli import config_from_args, default_parser, run_tool


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
    cfg = config_from_args(args)  # a bad setting stops here, before torch is imported
    from cgnl_video.engine import distributed as du
    from cgnl_video.engine.test import run_test

    try:
        results = run_test(cfg)
        if du.is_main_process():
            print(report(results))
    except KeyboardInterrupt:
        raise KeyboardInterrupt("the test starts over: its results are written when it ends") from None
    finally:
        du.cleanup()


if __name__ == "__main__":
    run_tool(main)
