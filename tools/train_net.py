#!/usr/bin/env python3
"""Trains (or fine-tunes) a model: ``python tools/train_net.py --cfg FILE [KEY VALUE ...]``.

Works under ``torchrun --nproc_per_node N`` unchanged.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cgnl_video.datasets.lists import ListFormatError  # noqa: E402
from cgnl_video.engine.checkpoint import CheckpointError  # noqa: E402
from cgnl_video.engine.run_lock import RunLockError  # noqa: E402
from cgnl_video.datasets.video_dataset import VideoLoadError  # noqa: E402
from cgnl_video.config.cli import config_from_args, default_parser, run_tool  # noqa: E402
from cgnl_video.engine import distributed as du  # noqa: E402
from cgnl_video.engine.quarantine import TooManyBadVideos  # noqa: E402
from cgnl_video.engine.train import NonFiniteLossError, train  # noqa: E402
from cgnl_video.models.pretrained import PretrainedError  # noqa: E402


def main():
    args = default_parser(__doc__.strip().splitlines()[0]).parse_args()
    try:
        summary = train(config_from_args(args)).val
        if summary is not None and du.is_main_process():
            print(f"val top1 {summary['top1']:.4f} top5 {summary['top5']:.4f} "
                  f"mean class acc {summary['mean_class_acc']:.4f}")
    finally:
        du.cleanup()


if __name__ == "__main__":
    run_tool(main, (CheckpointError, ListFormatError, RunLockError, NonFiniteLossError, PretrainedError,
                    TooManyBadVideos, VideoLoadError))
