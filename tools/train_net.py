#!/usr/bin/env python3
"""Trains (or fine-tunes) a model: ``python tools/train_net.py --cfg FILE [KEY VALUE ...]``.

Works under ``torchrun --nproc_per_node N`` unchanged.
"""

from cgnl_video.config.cli import config_from_args, default_parser, run_tool


def main():
    args = default_parser(__doc__.strip().splitlines()[0]).parse_args()
    cfg = config_from_args(args)  # a bad setting stops here, before torch is imported
    from cgnl_video.engine import distributed as du
    from cgnl_video.engine.checkpoint import continuation
    from cgnl_video.engine.train import train

    try:
        summary = train(cfg).val
        if summary is not None and du.is_main_process():
            print(f"val top1 {summary['top1']:.4f} top5 {summary['top5']:.4f} "
                  f"mean class acc {summary['mean_class_acc']:.4f}")
    except KeyboardInterrupt:
        raise KeyboardInterrupt(continuation(cfg.OUTPUT_DIR)) from None
    finally:
        du.cleanup()


if __name__ == "__main__":
    run_tool(main)
