#!/usr/bin/env python3
"""Attention maps of every CGNL / NL block of a trained model on a video:
``python tools/visualize.py --cfg FILE | --run OUTPUT_DIR VIDEO [--out-dir DIR] [--queries Q] [KEY VALUE ...]``."""

import argparse
import os

from cgnl_video.config.cli import run_tool
from cgnl_video.config.loading import load_config, load_run_config


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--cfg", dest="cfg_file", default=None, help="YAML config of the trained model")
    source.add_argument("--run", help="a training run's OUTPUT_DIR (its config.yaml and newest checkpoint)")
    parser.add_argument("--checkpoint", help="weights to use (default: the config's test checkpoint)")
    parser.add_argument("video", help="video file")
    parser.add_argument("--out-dir", default=None, help="output folder (default: OUTPUT_DIR/attention_maps)")
    parser.add_argument("--queries", type=int, default=3, help="query positions per block (default: 3)")
    args, opts = parser.parse_known_args()
    # A bad setting stops here, before torch is imported.
    cfg = load_run_config(args.run, opts) if args.run else load_config(args.cfg_file, opts)
    from cgnl_video.inference.visualize import visualize_video
    from cgnl_video.inference.recognizer import Recognizer

    recognizer = Recognizer.from_cfg(cfg, args.checkpoint)
    out_dir = args.out_dir or os.path.join(recognizer.cfg.OUTPUT_DIR, "attention_maps")
    for path in visualize_video(recognizer, args.video, out_dir, args.queries):
        print(path)


if __name__ == "__main__":
    run_tool(main)
