"""``tools/benchmark.py export``: a model's exported files against eager PyTorch, on the CPU.

For each config (default: the demo config, one 8x96x96 view, and MiniKinetics
``I3D_8x8_R50_CGNL1``, one 8x256x256 view) the model is built (its initial weights:
values do not change the work), exported to ONNX and TorchScript with
``cgnl_video.inference.export``, and four candidates run one float32
``B x 3 x T x H x W`` input side by side (interleaved, see ``cgnl_video.benchmarks.timing``):

- ``eager``: the PyTorch model, eval mode, under ``torch.no_grad``;
- ``eager-onednn``: the same, prepared as the Recognizer's torch runtime prepares it on the
  CPU (``cgnl_video.inference.runtime.cpu_inference_model``: every Conv3d through oneDNN,
  channels_last_3d weights): no row of its own, the column ``/ eager-onednn`` of every row;
- ``onnxruntime``: the ONNX file in an onnxruntime CPU session with as many intra-op
  threads as torch uses;
- ``torchscript``: the traced file from ``torch.jit.load``, under ``torch.no_grad``.

Each file's logits are compared with eager's on the same input (max abs difference).
"""

import argparse
import copy
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

from cgnl_video.benchmarks import markdown_table, update_section
from cgnl_video.benchmarks.timing import (
    Measurement,
    cpu_snapshot,
    format_ms,
    load_note,
    machine_description,
    measure,
    others_cpu_share,
    paired_ratio,
)
from cgnl_video.config.loading import load_config
from cgnl_video.inference.export import FORMATS, export_model, input_shape, load_exported, no_grad_runner
from cgnl_video.inference.runtime import cpu_inference_model
from cgnl_video.models import build_model

DEFAULT_CONFIGS = ("configs/demo/synthetic_cgnl.yaml", "configs/MiniKinetics/I3D_8x8_R50_CGNL1.yaml")
EAGER, EAGER_ONEDNN = "eager", "eager-onednn"
RUNTIME_NAMES = {"onnx": "onnxruntime", "torchscript": "torchscript"}
CPU = torch.device("cpu")


def run_config(cfg_file: str, folder: str, args: argparse.Namespace) -> List[List[str]]:
    """Exports the model of ``cfg_file`` into ``folder`` and times the four candidates:
    one table row each (config, input, runtime, ms, / eager, max abs diff, file MiB, rounds)."""
    cfg = load_config(cfg_file, [])
    model = build_model(cfg).eval()
    video = torch.randn(input_shape(cfg, args.batch), generator=torch.Generator().manual_seed(0))
    runners = {EAGER: no_grad_runner(model), EAGER_ONEDNN: no_grad_runner(cpu_inference_model(copy.deepcopy(model)))}
    sizes = {EAGER: None, EAGER_ONEDNN: None}
    for fmt in FORMATS:
        path = os.path.join(folder, f"{Path(cfg_file).stem}.{fmt}")
        export_model(model, cfg, fmt, path)
        runners[RUNTIME_NAMES[fmt]], sizes[RUNTIME_NAMES[fmt]] = load_exported(path, fmt), os.path.getsize(path)
    expected = runners[EAGER](video)
    diffs = {name: f"{float((run(video) - expected).abs().max()):.1e}" for name, run in runners.items()}
    diffs[EAGER] = f"(max abs logit {float(expected.abs().max()):.2g})"
    results = measure({name: (lambda run=run: run(video)) for name, run in runners.items()},
                      CPU, args.rounds, args.budget)
    return [_row(cfg_file, video.shape, name, results, diffs[name], sizes[name]) for name in runners
            if name != EAGER_ONEDNN]


def _row(cfg_file: str, shape, name: str, results: Dict[str, Measurement], diff: str, size) -> List[str]:
    ratio, onednn = paired_ratio(results[name], results[EAGER]), paired_ratio(results[name], results[EAGER_ONEDNN])
    return [
        f"`{cfg_file}`", " x ".join(str(s) for s in shape), name, format_ms(results[name].median_s),
        f"{ratio:.2f}", diff, "-" if size is None else f"{size / 2**20:,.1f}", str(len(results[name].samples_s)),
        f"{onednn:.2f}",
    ]


def render(rows: List[List[str]], args: argparse.Namespace, elapsed_s: float, others_share) -> str:
    """The report section: command, machine, method, the table."""
    now = datetime.datetime.now(datetime.timezone.utc)
    headers = ["config", "input B x C x T x H x W", "runtime", "median ms", "/ eager",
               "max abs diff vs eager", "file MiB", "rounds", "/ eager-onednn"]
    return "\n\n".join([
        "### Exported models on CPU",
        f"Command: `{args.command}`",
        f"Machine: {machine_description(CPU)}; onnxruntime with the same number of intra-op threads.",
        f"Run: {now:%Y-%m-%d %H:%M} UTC, {elapsed_s:.0f} s in all; float32, one view "
        f"(B={args.batch}), initial weights.{load_note(others_share)}",
        "Time: median over the interleaved rounds of one forward, ms; `/ eager`: the median "
        "over rounds of the runtime's time over eager's in the same round; `/ eager-onednn`: the "
        "same over the time of the Recognizer's CPU eager model (every Conv3d through oneDNN, "
        "channels_last_3d weights: `cgnl_video.inference.runtime.cpu_inference_model`).",
        markdown_table(headers, rows),
    ])


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="eager PyTorch vs onnxruntime vs TorchScript latency of exported models",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), metavar="FILE",
                        help="configs whose models to export and time (default: the demo and "
                        "MiniKinetics I3D_8x8_R50_CGNL1)")
    parser.add_argument("--batch", type=int, default=1, help="views per forward (default: 1)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per config, at most (default: 15)")
    parser.add_argument(
        "--budget", type=float, default=60.0, metavar="SECONDS",
        help="fewer rounds (at least 1) where the rounds would take longer than this, per config (default: 60)",
    )
    parser.add_argument("--out", type=Path, help="Markdown file whose export section to write or replace, atomically")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    """Times every config, prints the report section and writes it to ``--out``."""
    start, start_cpu = time.perf_counter(), cpu_snapshot()
    rows: List[List[str]] = []
    with tempfile.TemporaryDirectory() as folder:
        for cfg_file in args.configs:
            config_start = time.perf_counter()
            rows += run_config(cfg_file, folder, args)
            elapsed = time.perf_counter() - config_start
            print(f"[export] {cfg_file}: {elapsed:.1f} s", file=sys.stderr, flush=True)
    body = render(rows, args, time.perf_counter() - start, others_cpu_share(start_cpu, cpu_snapshot()))
    print(body)
    if args.out is not None:
        update_section(args.out, "export-cpu", body)
