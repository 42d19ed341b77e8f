#!/usr/bin/env python3
"""Attention maps of every CGNL / NL block of a trained model on a video:
``python tools/visualize.py --cfg FILE | --run OUTPUT_DIR VIDEO [--out-dir DIR] [--queries Q] [KEY VALUE ...]``."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cgnl_video.config.cli import run_tool  # noqa: E402
from cgnl_video.datasets.decoders import DecodeError  # noqa: E402
from cgnl_video.engine.checkpoint import CheckpointError  # noqa: E402
from cgnl_video.engine.visualize import visualize_video  # noqa: E402
from cgnl_video.inference.recognizer import Recognizer  # noqa: E402


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
    if args.run:
        recognizer = Recognizer.from_run(args.run, args.checkpoint, opts)
    else:
        recognizer = Recognizer(args.cfg_file, args.checkpoint, opts)
    out_dir = args.out_dir or os.path.join(recognizer.cfg.OUTPUT_DIR, "attention_maps")
    for path in visualize_video(recognizer, args.video, out_dir, args.queries):
        print(path)


if __name__ == "__main__":
    run_tool(main, (CheckpointError, DecodeError))
