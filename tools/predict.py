#!/usr/bin/env python3
"""Top-k classes of videos: ``python tools/predict.py --cfg FILE VIDEO|FOLDER|LIST [...] [KEY VALUE ...]``.

A thin client of :class:`cgnl_video.inference.recognizer.Recognizer`: the test views of the
config (``TEST.*``), the checkpoint ``--checkpoint`` (default: ``TEST.CHECKPOINT_FILE_PATH``, else
the newest in ``OUTPUT_DIR``), or ``--run OUTPUT_DIR`` for a training run's config and newest
checkpoint. Folders give every video below them, ``.txt``/``.csv``/``.lst`` files one video per
line. ``--json``: one JSON line per video (``{"video", "top"}`` or ``{"video", "error"}``). A video
that fails is reported on its own and the others go on (exit status 1 if any failed).
``--out-video PATH`` writes the first video back with its top predictions drawn on it.
"""

import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cgnl_video.config.cli import run_tool  # noqa: E402
from cgnl_video.datasets.decoders import DecodeError  # noqa: E402
from cgnl_video.engine.checkpoint import CheckpointError  # noqa: E402
from cgnl_video.engine.predict import write_annotated_video  # noqa: E402
from cgnl_video.inference.inputs import expand_inputs  # noqa: E402
from cgnl_video.inference.recognizer import Recognizer  # noqa: E402

CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*$")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cfg", dest="cfg_file", help="YAML config file")
    source.add_argument("--run", help="a training run's OUTPUT_DIR (its config.yaml and newest checkpoint)")
    parser.add_argument("--checkpoint", help="weights to use (default: the config's test checkpoint)")
    parser.add_argument("--topk", type=int, default=5, help="classes per video (default: 5)")
    parser.add_argument("--json", action="store_true", help="one JSON line per video")
    parser.add_argument("--out-video", help="write the first video here with its predictions drawn")
    parser.add_argument("items", nargs="+", metavar="VIDEO [KEY VALUE ...]",
                        help="videos, folders or list files, then optional config overrides")
    args = parser.parse_intermixed_args()  # options may also follow the videos
    # Everything from the first config key (e.g. TEST.NUM_ENSEMBLE_VIEWS) on is overrides.
    split = next((i for i, item in enumerate(args.items) if CONFIG_KEY.match(item)), len(args.items))
    args.videos, args.opts = expand_inputs(args.items[:split]), args.items[split:]
    if not args.videos:
        parser.error("no video given (or none found in the folders and lists given)")
    return args


def report(path: str, prediction, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"video": path, "top": prediction}), flush=True)
        return
    print(path)
    for name, score in prediction:
        print(f"  {score:.3f}  {name}")


def main():
    args = parse_args()
    if args.run:
        recognizer = Recognizer.from_run(args.run, args.checkpoint, args.opts)
    else:
        recognizer = Recognizer(args.cfg_file, args.checkpoint, args.opts)
    failed = 0
    for number, path in enumerate(args.videos):
        try:
            prediction = recognizer.predict(path, args.topk)
        except DecodeError as err:
            failed += 1
            if args.json:
                print(json.dumps({"video": path, "error": err.reason}), flush=True)
            print(f"error: {err}", file=sys.stderr, flush=True)
            continue
        report(path, prediction, args.json)
        if number == 0 and args.out_video:
            write_annotated_video(path, args.out_video, prediction, recognizer.cfg)
            print(f"wrote {args.out_video}", file=sys.stderr if args.json else sys.stdout)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    run_tool(main, (CheckpointError, DecodeError))
