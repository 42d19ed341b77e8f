#!/usr/bin/env python3
"""Top-5 classes of single videos: ``python tools/predict.py --cfg FILE VIDEO [VIDEO ...] [KEY VALUE ...]``.

Loads ``TEST.CHECKPOINT_FILE_PATH`` (default: the newest checkpoint in ``OUTPUT_DIR``),
class names from ``DATA.PATH_TO_DATA_DIR/classes.txt``; ``--out-video PATH`` writes the
(first) video back with its top predictions drawn on the frames.
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from cgnl_video.config.loading import load_config  # noqa: E402
from cgnl_video.config.cli import run_tool  # noqa: E402
from cgnl_video.datasets.decoders import DecodeError  # noqa: E402
from cgnl_video.engine.checkpoint import CheckpointError, find_test_checkpoint, load_for_test  # noqa: E402
from cgnl_video.engine.predict import predict_videos, write_annotated_video  # noqa: E402
from cgnl_video.engine.setup import check_num_classes  # noqa: E402
from cgnl_video.models import build_model  # noqa: E402


CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*$")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config file")
    parser.add_argument("--out-video", help="write the first video here with its predictions drawn")
    parser.add_argument("items", nargs="+", metavar="VIDEO [KEY VALUE ...]",
                        help="video files, then optional config overrides")
    args = parser.parse_intermixed_args()  # options may also follow the videos
    # Everything from the first config key (e.g. TEST.NUM_ENSEMBLE_VIEWS) on is overrides.
    split = next((i for i, item in enumerate(args.items) if CONFIG_KEY.match(item)), len(args.items))
    args.videos, args.opts = args.items[:split], args.items[split:]
    if not args.videos:
        parser.error("no VIDEO given")
    return args


def main():
    args = parse_args()
    cfg = load_config(args.cfg_file, args.opts)
    class_names = check_num_classes(cfg)
    model = build_model(cfg)
    load_for_test(model, find_test_checkpoint(cfg))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    predictions = predict_videos(model, cfg, args.videos, class_names, device)
    for path, prediction in zip(args.videos, predictions):
        print(path)
        for name, score in prediction:
            print(f"  {score:.3f}  {name}")
    if args.out_video:
        write_annotated_video(args.videos[0], args.out_video, predictions[0], cfg)
        print(f"wrote {args.out_video}")


if __name__ == "__main__":
    run_tool(main, (CheckpointError, DecodeError))
