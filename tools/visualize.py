#!/usr/bin/env python3
"""Attention maps of every CGNL / NL block of a trained model on a video:
``python tools/visualize.py --cfg FILE | --run OUTPUT_DIR VIDEO [--out-dir DIR] [--queries Q] [KEY VALUE ...]``."""

import argparse
import os

from cgnl_video.config.cli import add_trained_model_args, run_tool, trained_model_config
from cgnl_video.errors import ConfigError


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    add_trained_model_args(parser, required=False)
    parser.add_argument("video", help="video file")
    parser.add_argument("--out-dir", default=None, help="output folder (default: OUTPUT_DIR/attention_maps)")
    parser.add_argument("--queries", type=int, default=3, help="query positions per block (default: 3)")
    args, opts = parser.parse_known_args()
    # A bad setting stops here, before torch is imported.
    cfg = trained_model_config(args, opts)
    if not any(cfg.NONLOCAL.LOCATION):
        raise ConfigError(f"NONLOCAL.LOCATION={cfg.NONLOCAL.LOCATION}: the model has no CGNL / NL block "
                          "to visualise", key="NONLOCAL.LOCATION")
    from cgnl_video.inference.recognizer import Recognizer
    from cgnl_video.inference.visualize import visualize_video

    recognizer = Recognizer.from_cfg(cfg, args.checkpoint)
    out_dir = args.out_dir or os.path.join(recognizer.cfg.OUTPUT_DIR, "attention_maps")
    for path in visualize_video(recognizer, args.video, out_dir, args.queries):
        print(path)


if __name__ == "__main__":
    run_tool(main)
