#!/usr/bin/env python3
"""Top-k classes of videos: ``python tools/predict.py --cfg FILE VIDEO|FOLDER|LIST [...] [KEY VALUE ...]``.

A thin client of :class:`cgnl_video.inference.recognizer.Recognizer`: the test views of the
config (``TEST.*``), the checkpoint ``--checkpoint`` (default: ``TEST.CHECKPOINT_FILE_PATH``, else
the newest in ``OUTPUT_DIR``), or ``--run OUTPUT_DIR`` for a training run's config and newest
checkpoint. Folders give every video below them, ``.txt``/``.csv``/``.lst`` files one video per
line. ``--json``: one JSON line per video (``{"video", "top"}`` or ``{"video", "error"}``). A video
that fails is reported on its own and the others go on (exit status 1 if any failed).
``--timeline``: sliding windows of ``--window`` seconds every ``--stride`` seconds (``--smooth``
windows averaged), the video decoded once as a stream; ``--timeline-out FILE`` (.json or .csv)
for one video. ``--out-video PATH`` writes the first video back, streaming, with its top
predictions (or the current window's label with ``--timeline``) drawn on it. ``--runtime
onnxruntime`` scores the views in onnxruntime on the CPU, from ``--onnx FILE`` (written by
``tools/export.py``) or else from the model exported on the fly into a cache file.
"""

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import re
import sys

from cgnl_video.config.cli import add_trained_model_args, run_tool, trained_model_config
from cgnl_video.errors import UserError
from cgnl_video.inference.arguments import check_output_file, check_timeline, check_topk
from cgnl_video.inference.sources import expand_inputs, is_input
from cgnl_video.utils.io import atomic_write_text

CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*$")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    add_trained_model_args(parser, required=True)
    parser.add_argument("--topk", type=int, default=5, help="classes per video (default: 5)")
    parser.add_argument("--json", action="store_true", help="one JSON line per video")
    parser.add_argument("--out-video", help="write the first video here with its predictions drawn")
    parser.add_argument("--timeline", action="store_true", help="score sliding windows along each video")
    parser.add_argument("--window", type=float, default=2.0, help="timeline window, seconds (default: 2)")
    parser.add_argument("--stride", type=float, default=1.0, help="timeline stride, seconds (default: 1)")
    parser.add_argument("--smooth", type=int, default=1, help="timeline windows averaged (default: 1, none)")
    parser.add_argument("--timeline-out", help="write the timeline of the (one) video here: .json or .csv")
    parser.add_argument("--runtime", choices=["torch", "onnxruntime"], default="torch",
                        help="what scores the views: eager PyTorch or onnxruntime on the CPU (default: torch)")
    parser.add_argument("--onnx", metavar="FILE",
                        help="the ONNX file of tools/export.py for --runtime onnxruntime (default: export on the fly)")
    parser.add_argument("items", nargs="+", metavar="VIDEO [KEY VALUE ...]",
                        help="videos, folders or list files, then optional config overrides")
    args = parser.parse_intermixed_args()  # options may also follow the videos
    # Everything from the first config key (e.g. TEST.NUM_ENSEMBLE_VIEWS) on is overrides; an
    # existing file or folder, or a video / list name, is an input even when it looks like one
    # (GOPR0001.MP4, CAMERA).
    split = next((i for i, item in enumerate(args.items) if CONFIG_KEY.match(item) and not is_input(item)),
                 len(args.items))
    args.videos, args.opts = expand_inputs(args.items[:split]), args.items[split:]
    if not args.videos:
        parser.error("no video given (or none found in the folders and lists given)")
    if args.timeline_out and (not args.timeline or len(args.videos) != 1):
        parser.error("--timeline-out needs --timeline and exactly one video")
    if args.timeline_out and not args.timeline_out.lower().endswith((".json", ".csv")):
        parser.error(f"--timeline-out {args.timeline_out}: expected a .json or .csv file")
    if args.onnx and args.runtime != "onnxruntime":
        parser.error("--onnx needs --runtime onnxruntime")
    check_topk(args.topk, "--topk")
    if args.timeline:
        check_timeline(args.window, args.stride, args.smooth, args.topk, ("--window", "--stride", "--smooth", "--topk"))
    for name, path in (("--out-video", args.out_video), ("--timeline-out", args.timeline_out)):
        if path is not None:
            check_output_file(path, name)
    return args


def report(path: str, prediction, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"video": path, "top": prediction}), flush=True)
        return
    print(path)
    for name, score in prediction:
        print(f"  {score:.3f}  {name}")


def timeline_text(windows, path: str) -> str:
    """The timeline as JSON (a list of windows) or CSV (start, end, top-k classes and scores)."""
    if path.lower().endswith(".json"):
        return json.dumps([dataclasses.asdict(w) for w in windows], indent=1)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["start", "end", "classes", "scores"])
    for w in windows:
        writer.writerow([f"{w.start:.3f}", f"{w.end:.3f}", ";".join(n for n, _ in w.top),
                         ";".join(f"{s:.4f}" for _, s in w.top)])
    return out.getvalue()


def report_timeline(path: str, windows, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"video": path, "timeline": [dataclasses.asdict(w) for w in windows]}), flush=True)
        return
    print(path)
    for w in windows:
        print(f"  {w.start:8.2f}-{w.end:8.2f} s  {w.top[0][1]:.3f}  {w.top[0][0]}")


def recognise(recognizer, path: str, args, writer) -> None:
    """Predicts (or the timeline of) one video, drawing onto ``writer`` when there is one."""
    if args.timeline:
        on_frame = None if writer is None else (lambda frame, label: writer.write_labelled(frame, [label]))
        windows = recognizer.timeline(path, args.window, args.stride, args.smooth, args.topk, on_frame)
        report_timeline(path, windows, args.json)
        if args.timeline_out:
            atomic_write_text(args.timeline_out, timeline_text(windows, args.timeline_out))
        return
    prediction = recognizer.predict(path, args.topk)
    report(path, prediction, args.json)
    if writer is not None:
        from cgnl_video.inference.labelled_video import prediction_lines

        for frame in recognizer.stream(path):
            writer.write_labelled(frame, prediction_lines(prediction))


def main():
    args = parse_args()
    # A bad setting stops here, before torch is imported.
    cfg = trained_model_config(args, args.opts)
    from cgnl_video.decoding import memory
    from cgnl_video.inference.labelled_video import LabelledVideoWriter
    from cgnl_video.inference.recognizer import Recognizer

    memory.keep_freed_memory()  # each view reuses the last one's buffers (docs/PERFORMANCE.md)
    recognizer = Recognizer.from_cfg(cfg, args.checkpoint, runtime=args.runtime, onnx_file=args.onnx)
    failed = 0
    for number, path in enumerate(args.videos):
        drawing = number == 0 and args.out_video
        try:
            with LabelledVideoWriter(args.out_video, recognizer.fps(path)) if drawing else \
                    contextlib.nullcontext() as writer:
                recognise(recognizer, path, args, writer)
        except UserError as err:  # this video (missing, undecodable, hanging); the others go on
            failed += 1
            if args.json:
                print(json.dumps({"video": path, "error": getattr(err, "reason", str(err))}), flush=True)
            print(f"error: {err}", file=sys.stderr, flush=True)
            continue
        if drawing:
            print(f"wrote {args.out_video}", file=sys.stderr if args.json else sys.stdout)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    run_tool(main)
