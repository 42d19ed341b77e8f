"""``tools/benchmark.py timeline``: long-video recognition, memory and speed, side by side.

Two generated videos of the same content (a textured pattern drifting across a 320p frame,
25 fps): ``--short`` and ``--long`` minutes. Each is scored along a timeline (``--window`` s
every ``--stride`` s) by a model of ``--cfg`` (random weights: speed and memory do not depend
on them), each run in a fresh process whose peak resident memory is read from the kernel.
Target (issue 9): the long video's peak RSS within 1.2x the short one's (the stream holds one
window, whatever the length). Reported: windows per second and the real-time factor (video
seconds per second of wall time) on this machine.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cgnl_video.benchmarks import markdown_table, update_section
from cgnl_video.benchmarks.timing import machine_description
from cgnl_video.config import load_config
from cgnl_video.datasets.video_io import VideoWriter
from cgnl_video.engine.checkpoint import atomic_save, checkpoint_path
from cgnl_video.models import build_model

TARGET_RSS_RATIO = 1.2
REPO = Path(__file__).resolve().parents[2]
DEFAULT_CFG = str(REPO / "configs" / "demo" / "synthetic_cgnl.yaml")

# Run in a fresh interpreter: scores the timeline and prints its figures as JSON.
_CHILD = """
import json, resource, sys, time
from cgnl_video import Recognizer
run, video, window, stride = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
recognizer = Recognizer.from_run(run, device="cpu")
start = time.perf_counter()
windows = recognizer.timeline(video, window, stride)
seconds = time.perf_counter() - start
print(json.dumps({"windows": len(windows), "seconds": seconds, "video_s": windows[-1].end,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_pattern_video(path: str, minutes: float, fps: int = 25, size=(568, 320)) -> None:
    """A ``minutes``-long video of a random texture drifting two pixels a frame, written as it goes."""
    width, height = size
    texture = np.random.default_rng(0).integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
    with VideoWriter(path, fps) as writer:
        for t in range(int(minutes * 60 * fps)):
            offset = (2 * t) % width
            writer.write(np.ascontiguousarray(texture[:, offset:offset + width]))


def make_run(cfg_file: str, folder: str) -> str:
    """An OUTPUT_DIR with the config and a checkpoint of random weights."""
    run = os.path.join(folder, "run")
    cfg = load_config(cfg_file, ["OUTPUT_DIR", run])
    os.makedirs(run, exist_ok=True)
    Path(run, "config.yaml").write_text(cfg.dump())
    classes = [f"class{i}" for i in range(cfg.MODEL.NUM_CLASSES)]
    atomic_save({"model": build_model(cfg).state_dict(), "epoch": 0, "classes": classes}, checkpoint_path(run, 0))
    return run


def score(run: str, video: str, window: float, stride: float) -> dict:
    result = subprocess.run([sys.executable, "-c", _CHILD, run, video, str(window), str(stride)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``timeline`` subcommand."""
    parser = subparsers.add_parser("timeline", help="long-video timelines: peak memory vs length, windows/s",
                                   description=__doc__.split("\n\n", 1)[1],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", default=DEFAULT_CFG, help="model config (default: the demo's)")
    parser.add_argument("--short", type=float, default=1.0, help="minutes of the short video (default: 1)")
    parser.add_argument("--long", type=float, default=10.0, help="minutes of the long video (default: 10)")
    parser.add_argument("--window", type=float, default=2.0, help="window, seconds (default: 2)")
    parser.add_argument("--stride", type=float, default=1.0, help="stride, seconds (default: 1)")
    parser.add_argument("--out", type=Path, help="Markdown file whose timeline section to write or replace")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    """Writes both videos, scores them in fresh processes, prints (and writes) the table."""
    start = time.perf_counter()
    rows, figures = [], {}
    with tempfile.TemporaryDirectory() as folder:
        run = make_run(args.cfg, folder)
        for name, minutes in (("short", args.short), ("long", args.long)):
            video = os.path.join(folder, f"{name}.mp4")
            write_pattern_video(video, minutes)
            figures[name] = f = score(run, video, args.window, args.stride)
            rows.append([f"{minutes:g} min, 568x320, 25 fps", f["windows"], f"{f['seconds']:.1f}",
                         f"{f['windows'] / f['seconds']:.2f}", f"{f['video_s'] / f['seconds']:.2f}",
                         f"{f['peak_rss_mib']:.0f}"])
    ratio = figures["long"]["peak_rss_mib"] / figures["short"]["peak_rss_mib"]
    body = "\n\n".join([
        "### Long videos: `tools/benchmark.py timeline`",
        f"Command: `python tools/benchmark.py timeline {' '.join(sys.argv[2:])}`".rstrip(),
        f"Machine: {machine_description(torch.device('cpu'))}. Model: `{os.path.relpath(args.cfg, REPO)}` "
        f"(random weights), its test views, window {args.window:g} s every {args.stride:g} s, one process "
        f"per video; {time.perf_counter() - start:.0f} s in all.",
        markdown_table(["video", "windows", "seconds", "windows / s", "real-time factor", "peak RSS MiB"], rows),
        f"Peak RSS long / short = {ratio:.2f} (<= {TARGET_RSS_RATIO}: "
        f"{'met' if ratio <= TARGET_RSS_RATIO else 'MISSED'}).",
    ])
    print(body)
    if args.out is not None:
        update_section(args.out, "timeline-cpu", body)
