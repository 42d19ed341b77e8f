"""``tools/benchmark.py gpu``: one GPU's check of the engine, in one command (<= 5 minutes on a GPU).

All in one process, in the engine's process group at world size 1 (``engine/distributed.py``'s
backends: ``cpu:gloo,cuda:nccl`` on a GPU, ``gloo`` on the CPU; env:// rendezvous on a free
local port):

1. collectives: every collective of ``engine/distributed.py`` once (``all_reduce_sum`` on a CPU
   and a device tensor, ``gather_lists``, ``broadcast_buffers``, ``barrier``,
   ``check_collective_device``), each result checked (at world size 1 a sum, a gather and a
   broadcast return their input);
2. training steps: each config's model (MiniKinetics ``I3D_8x8_R50_CGNL1`` and ``_NL1``) in fp32,
   AMP fp16 (with the GradScaler) and AMP bf16 (``engine/precision.py``), contiguous and
   ``channels_last_3d`` (model and input), at the per-GPU batch (``TRAIN.BATCH_SIZE`` / ``--gpus``),
   each step the engine's ``train_epoch`` over a one-batch loader, under DistributedDataParallel
   as a torchrun run; clips/s, peak memory of a step above the weights and optimiser state, the
   first step's loss and its relative difference to fp32's (same weights, same clips; dropout
   off so that the losses compare); on a GPU also one SyncBatchNorm (``BN.NORM_TYPE
   sync_batchnorm``) row;
3. multi-view testing: ``engine/scoring.py``'s ``video_scores`` of one video's
   ``TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS`` uint8 views through the normaliser, per
   precision and memory format: views/s;
4. the blocks table of ``tools/benchmark.py blocks`` on this device;
5. loader workers: one worker's train clips/s (``tools/benchmark.py data``'s dataset item, one
   torch thread, on a generated Kinetics-like 340 x 256 30 fps video) against each training
   row's clips/s: the workers one GPU needs.

Clips are synthetic random uint8 (the speed of a step does not depend on the pixels); weights
are the configs' initialisation. ``--device cpu --tiny`` runs everything small on the CPU
(fp16 rows skipped: CPU autocast has no fp16; SyncBatchNorm skipped: torch's takes GPU tensors
only), so that a test keeps the command working before a GPU runs it.
"""

import argparse
import datetime
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch.nn.parallel import DistributedDataParallel

from cgnl_video.benchmarks import blocks, data, markdown_table, update_section
from cgnl_video.benchmarks.collectives import collective_checks, collectives_table, world_of_one
from cgnl_video.benchmarks.timing import (
    Measurement,
    cpu_snapshot,
    format_ms,
    load_note,
    machine_description,
    measure,
    others_cpu_share,
)
from cgnl_video.config.loading import load_config
from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.engine import distributed as du
from cgnl_video.engine.batchnorm import convert_norm
from cgnl_video.engine.normalize import InputNormalizer
from cgnl_video.engine.optim import build_optimizer, build_scheduler
from cgnl_video.engine.precision import build_grad_scaler
from cgnl_video.engine.scoring import video_scores
from cgnl_video.engine.train import NonFiniteLossError, train_epoch
from cgnl_video.models import build_model

DEFAULT_CONFIGS = ("configs/MiniKinetics/I3D_8x8_R50_CGNL1.yaml", "configs/MiniKinetics/I3D_8x8_R50_NL1.yaml")
PRECISIONS = {"fp32": "none", "fp16": "fp16", "bf16": "bf16"}  # -> TRAIN.MIXED_PRECISION
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
# First-step loss relative to fp32's (contiguous) of the same config: at most this (fp32: room for
# cuDNN's TF32 convolutions, PyTorch's default on GPUs that have them).
LOSS_TOLERANCE = {"fp32": 2e-3, "fp16": 1e-2, "bf16": 5e-2}
TARGET_S = 300.0
# --tiny: R18 at width 8, 8 frames of 32 px, one non-local block in res3 and res4. 8 frames, not 4:
# with 4, res3-res5 run at T = 2, where torch 2.14.1's CPU bf16 Conv3d weight gradient of a
# temporal kernel 3 is wrong (NaN / 1e26 against fp32's ~20; T = 3 and 4 are right), so bf16 steps
# go NaN; the R50 configs run res3-res5 at T = 4.
TINY_OPTS = [
    "RESNET.DEPTH", "18", "RESNET.WIDTH_PER_GROUP", "8", "NONLOCAL.LOCATION", "[[],[0],[0],[]]",
    "CGNL.GROUPS", "2", "DATA.NUM_FRAMES", "8", "DATA.SAMPLING_RATE", "1",
    "DATA.TRAIN_JITTER_SCALES", "[32,40]", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
    "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3", "TEST.MAX_VIEWS_PER_BATCH", "4",
]
# The benchmark's own: dropout off (first-step losses compare), a train log line per step.
BENCH_OPTS = ["MODEL.DROPOUT_RATE", "0.0", "TRAIN.LOG_PERIOD", "1"]
# Loader video (width, height, frames, fps) and how many items a call reads.
KINETICS_LIKE = (340, 256, 300, 30)
TINY_VIDEO = (64, 48, 40, 25)
LOADER_ITEMS = 4
# Blocks table: (shapes, channels, groups).
TINY_BLOCKS = ([(2, 4, 4)], [32], 2)
CPU = torch.device("cpu")


class LayoutNormalizer(InputNormalizer):
    """The engine's normaliser, its output in ``memory_format`` (as a channels-last model takes it)."""

    def __init__(self, cfg, device: torch.device, memory_format: torch.memory_format):
        super().__init__(cfg.DATA.MEAN, cfg.DATA.STD, device)
        self.memory_format = memory_format

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        return super().__call__(video).contiguous(memory_format=self.memory_format)


class LossLog:
    """Stands in for the engine's StatsWriter: keeps the training steps' losses."""

    def __init__(self):
        self.losses: List[float] = []

    def write(self, record: Dict, step: int) -> None:
        self.losses.append(record["loss"])


@dataclass(frozen=True)
class Row:
    """One training or test candidate: config name, precision, memory format, norm."""

    config: str
    precision: str
    memory_format: str
    norm: str = "batchnorm"

    @property
    def label(self) -> str:
        return f"{self.config} {self.precision} {self.memory_format} {self.norm}"


def row_config(base, row: Row):
    """``base`` with the row's precision and norm."""
    cfg = base.clone()
    cfg.defrost()
    cfg.TRAIN.MIXED_PRECISION = PRECISIONS[row.precision]
    cfg.BN.NORM_TYPE = row.norm
    cfg.freeze()
    return cfg


def random_clips(cfg, batch: int, crop: int, device_seed: int = 0) -> torch.Tensor:
    """Synthetic uint8 ``batch x 3 x T x crop x crop`` clips."""
    generator = torch.Generator().manual_seed(device_seed)
    shape = (batch, 3, cfg.DATA.NUM_FRAMES, crop, crop)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def training_step(cfg, row: Row, device: torch.device, batch: int, ddp: bool) -> Tuple[Callable[[], None], LossLog]:
    """A call: one step of the engine's ``train_epoch`` on one synthetic batch, under DDP with ``ddp``."""
    memory_format = MEMORY_FORMATS[row.memory_format]
    torch.manual_seed(0)
    model = convert_norm(cfg, build_model(cfg)).to(device, memory_format=memory_format)
    net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) if ddp else model
    optimizer = build_optimizer(model, cfg)
    state = ckpt.TrainState(model, optimizer, build_scheduler(optimizer, cfg, 1), build_grad_scaler(cfg, device))
    labels = torch.randint(0, cfg.MODEL.NUM_CLASSES, (batch,), generator=torch.Generator().manual_seed(1))
    loader = [{"video": random_clips(cfg, batch, cfg.DATA.TRAIN_CROP_SIZE), "label": labels, "failures": []}]
    normalize, log = LayoutNormalizer(cfg, device, memory_format), LossLog()

    def call() -> None:
        try:
            train_epoch(cfg, net, state, loader, normalize, 0, log)
        except NonFiniteLossError:  # the row's loss check fails; the other rows still run
            log.losses.append(math.nan)

    return call, log


def scoring_call(cfg, row: Row, device: torch.device) -> Tuple[Callable[[], torch.Tensor], int]:
    """A call: ``video_scores`` of one video's uint8 views; and the number of views."""
    memory_format = MEMORY_FORMATS[row.memory_format]
    torch.manual_seed(0)
    model = build_model(cfg).to(device, memory_format=memory_format).eval()
    views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    clips = random_clips(cfg, views, cfg.DATA.TEST_CROP_SIZE)
    normalize = LayoutNormalizer(cfg, device, memory_format)
    return lambda: video_scores(model, clips, cfg, normalize), views


def rows_for(configs: Dict[str, object], device: torch.device) -> List[Row]:
    precisions = [p for p in PRECISIONS if not (p == "fp16" and device.type == "cpu")]
    return [Row(name, p, f) for name in configs for p in precisions for f in MEMORY_FORMATS]


def _measure(title: str, candidates: Dict[str, Callable], device: torch.device, args) -> Dict[str, Measurement]:
    start = time.perf_counter()
    results = measure(candidates, device, max_rounds=args.rounds, budget_s=args.budget, min_rounds=min(2, args.rounds))
    print(f"[gpu] {title}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return results


@dataclass(frozen=True)
class TrainResult:
    row: Row
    clips_per_s: float
    measurement: Measurement
    losses: List[float]


def run_training(configs: Dict[str, object], device: torch.device, args, ddp: bool) -> List[TrainResult]:
    rows = rows_for(configs, device)
    if device.type == "cuda":
        rows.append(Row(next(iter(configs)), "fp32", "contiguous", "sync_batchnorm"))
    steps, logs = {}, {}
    for row in rows:
        steps[row.label], logs[row.label] = training_step(row_config(configs[row.config], row), row, device, args.batch, ddp)
    results = _measure("training steps", steps, device, args)
    return [TrainResult(row, args.batch / results[row.label].median_s, results[row.label], logs[row.label].losses)
            for row in rows]


def run_testing(configs: Dict[str, object], device: torch.device, args) -> Dict[Row, Tuple[Measurement, int, bool]]:
    calls, views, outputs = {}, {}, {}
    for row in rows_for(configs, device):
        call, views[row] = scoring_call(row_config(configs[row.config], row), row, device)

        def checked(call=call, row=row):
            outputs[row] = call()

        calls[row.label] = checked
    results = _measure("multi-view testing", calls, device, args)
    by_label = {row.label: row for row in views}
    return {by_label[label]: (m, views[by_label[label]], bool(torch.isfinite(outputs[by_label[label]]).all()))
            for label, m in results.items()}


def loader_clips_per_s(cfg, args) -> Tuple[float, str]:
    """One loader worker's train clips/s (one torch thread) on a generated video; its description."""
    width, height, frames, fps = TINY_VIDEO if args.tiny else KINETICS_LIKE
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder:
        paths = [os.path.join(folder, f"kinetics_like_{index}.mp4") for index in range(LOADER_ITEMS)]
        data.write_grating_video(paths[0], frames, width, height, fps)
        for path in paths[1:]:  # the lists refuse a file listed twice
            shutil.copyfile(paths[0], path)
        cfg = cfg.clone()
        cfg.defrost()
        dataset = data.make_datasets(cfg, paths, folder)["train"]
        torch.set_num_threads(1)
        try:
            result = _measure("loader worker", {"train": data.every_item(dataset)}, CPU, args)["train"]
        finally:
            torch.set_num_threads(threads)
    described = (f"a generated {width} x {height} H.264 video of {frames} frames at {fps} fps "
                 f"({len(dataset)} copies, a train item of each a call, {len(result.samples_s)} rounds)")
    return len(dataset) / result.median_s, described


def block_tables(args) -> str:
    if args.tiny:
        shapes, channels, groups = TINY_BLOCKS
    else:
        shapes, channels, groups = blocks.DEFAULT_SHAPES, blocks.DEFAULT_CHANNELS, 8
    block_args = argparse.Namespace(device=args.device, groups=groups, order=3, batch=2, repeats=args.rounds,
                                    budget=args.budget / 5, no_nl=False)
    results = {}
    for shape in shapes:
        for width in channels:
            case = blocks.Case(tuple(shape), width)
            results[case] = blocks.run_case(case, block_args)
    print("[gpu] blocks done", file=sys.stderr, flush=True)
    parts = [blocks.timing_table(results), blocks.ratio_table(results)]
    targets = blocks.target_lines(results)
    return "\n\n".join(parts + (["\n".join(targets)] if targets else []))


def _mib(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:,.1f}"


def _loss_check(result: TrainResult, reference: Optional[TrainResult]) -> Tuple[str, str]:
    """The relative difference of the first loss to the reference's and the verdict."""
    finite = bool(result.losses) and all(math.isfinite(loss) for loss in result.losses)
    if reference is None or not reference.losses:
        return "-", "ok" if finite else "FAILED (non-finite)"
    difference = abs(result.losses[0] - reference.losses[0]) / abs(reference.losses[0])
    tolerance = LOSS_TOLERANCE[result.row.precision]
    ok = finite and difference <= tolerance
    return f"{difference:.1e}", "ok" if ok else f"FAILED (finite {finite}, tolerance {tolerance:.0e})"


def training_table(results: List[TrainResult], worker_clips_per_s: Optional[float]) -> str:
    references = {r.row.config: r for r in results if r.row.precision == "fp32" and r.row.memory_format == "contiguous"
                  and r.row.norm == "batchnorm"}
    headers = ["config", "precision", "memory format", "norm", "clips / s", "ms / step", "step peak MiB",
               "first loss", "rel. diff to fp32", "loss check", "loader workers needed", "rounds"]
    rows = []
    for result in results:
        reference = references.get(result.row.config)
        difference, verdict = _loss_check(result, None if reference is result else reference)
        first = f"{result.losses[0]:.4f}" if result.losses else "-"
        workers = "-" if worker_clips_per_s is None else math.ceil(result.clips_per_s / worker_clips_per_s)
        rows.append([result.row.config, result.row.precision, result.row.memory_format, result.row.norm,
                     f"{result.clips_per_s:,.2f}", format_ms(result.measurement.median_s),
                     _mib(result.measurement.peak_bytes), first, difference, verdict, workers,
                     len(result.measurement.samples_s)])
    return markdown_table(headers, rows)


def testing_table(results: Dict[Row, Tuple[Measurement, int, bool]]) -> str:
    headers = ["config", "precision", "memory format", "views / video", "views / s", "ms / video", "peak MiB",
               "scores finite", "rounds"]
    rows = [[row.config, row.precision, row.memory_format, views, f"{views / m.median_s:,.2f}",
             format_ms(m.median_s), _mib(m.peak_bytes), "ok" if finite else "FAILED", len(m.samples_s)]
            for row, (m, views, finite) in results.items()]
    return markdown_table(headers, rows)


def load_configs(args) -> Dict[str, object]:
    opts = (TINY_OPTS if args.tiny else []) + BENCH_OPTS + list(args.opts)
    return {os.path.splitext(os.path.basename(path))[0]: load_config(path, opts) for path in args.configs}


def per_gpu_batch(configs: Dict[str, object], args) -> int:
    """``--batch``, else the first config's ``TRAIN.BATCH_SIZE`` over ``--gpus`` (2 with ``--tiny``)."""
    if args.batch is not None:
        return args.batch
    if args.tiny:
        return 2
    return max(1, next(iter(configs.values())).TRAIN.BATCH_SIZE // args.gpus)


def render(args, sections: Dict[str, str], notes: List[str], elapsed_s: float, others_share) -> str:
    device = args.device
    now = datetime.datetime.now(datetime.timezone.utc)
    verdict = f" (target <= {TARGET_S:.0f} s: {'met' if elapsed_s <= TARGET_S else 'MISSED'})" if device.type == "cuda" else ""
    head = [
        f"### GPU check on {device.type.upper()}{' (tiny settings)' if args.tiny else ''}",
        f"Command: `{args.command}`",
        f"Machine: {machine_description(device)}; {os.cpu_count()} logical CPUs.",
        f"Run: {now:%Y-%m-%d %H:%M} UTC, {elapsed_s:.0f} s in all{verdict}.{load_note(others_share)} "
        f"Configs: {', '.join(f'`{path}`' for path in args.configs)}"
        f"{' with --tiny overrides' if args.tiny else ''}; per-GPU batch {args.batch}; synthetic random "
        "uint8 clips, the configs' initial weights, dropout off. Time: median of interleaved rounds.",
    ]
    if notes:
        head.append("Notes:\n" + "\n".join(f"- {note}" for note in notes))
    body = [f"{title}:\n\n{text}" for title, text in sections.items()]
    return "\n\n".join(head + body)


SECTION_TITLES = {
    "collectives": "Process group at world size 1: every engine collective once",
    "training": "Training steps (train_epoch under DDP; step peak: allocated above the weights and optimiser state)",
    "testing": "Multi-view testing (video_scores of one video's uint8 views, normaliser included)",
    "blocks": "CGNL / NL blocks (tools/benchmark.py blocks' cases and tables)",
    "loader": "Loader workers",
}


def _sections(args, configs, publish: Callable[[Dict[str, str], List[str]], None]) -> Tuple[Dict[str, str], List[str]]:
    """Runs every part; a part that raises is reported as FAILED and the others still run;
    ``publish`` gets what is done after each part (a run stopped by a timeout keeps that)."""
    sections, notes = {}, []
    device = args.device
    if device.type == "cpu":
        notes += ["fp16 rows skipped: CPU autocast has no fp16 (engine/precision.py trains them in fp32).",
                  "SyncBatchNorm row skipped: torch's SyncBatchNorm takes GPU tensors only "
                  "(torch/nn/modules/batchnorm.py, SyncBatchNorm.forward)."]
    else:
        notes.append("SyncBatchNorm at world size 1 runs torch's local path (SyncBatchNorm.forward syncs only "
                     "when world_size > 1): the row checks the conversion, DDP and the step, not a cross-GPU "
                     "reduction; its first loss is compared with the BatchNorm fp32 row's.")
        notes.append(f"fp32 as PyTorch's defaults have it: torch.backends.cudnn.allow_tf32 = "
                     f"{torch.backends.cudnn.allow_tf32}, torch.backends.cuda.matmul.allow_tf32 = "
                     f"{torch.backends.cuda.matmul.allow_tf32}, torch.backends.cudnn.benchmark = "
                     f"{torch.backends.cudnn.benchmark} (the engine sets none of them).")
    training: List[TrainResult] = []

    def part(name: str, run: Callable[[], str]) -> None:
        try:
            sections[SECTION_TITLES[name]] = run()
        except Exception as error:  # one broken part must not lose the rest of a GPU session
            sections[SECTION_TITLES[name]] = f"FAILED: {type(error).__name__}: {error}"
            print(f"[gpu] {name} FAILED: {error!r}", file=sys.stderr, flush=True)
        publish(sections, notes)

    def train() -> str:
        try:
            training.extend(run_training(configs, device, args, ddp=True))
        except Exception as error:  # e.g. NCCL refused: the steps are still worth having
            notes.append(f"training under DDP failed ({type(error).__name__}: {error}); its rows ran without DDP")
            training.extend(run_training(configs, device, args, ddp=False))
        return "(the table follows once the loader workers are measured)"

    with world_of_one(device) as backend:
        notes.append(f"process group backend: {backend!r}")
        part("collectives", lambda: collectives_table(collective_checks(device)))
        part("training", train)
        part("testing", lambda: testing_table(run_testing(configs, device, args)))
    part("blocks", lambda: block_tables(args))

    worker = {}

    def loader() -> str:
        worker["clips_per_s"], described = loader_clips_per_s(next(iter(configs.values())), args)
        rate = worker["clips_per_s"]
        return (f"One worker (one process, one torch thread, the watchdog on) reads {rate:,.2f} train clips/s "
                f"from {described}; the training table's `loader workers needed` is ceil(clips/s / {rate:,.2f}) "
                f"per GPU; this machine has {os.cpu_count()} logical CPUs.")

    part("loader", loader)
    if training:
        part("training", lambda: training_table(training, worker.get("clips_per_s")))
    return sections, notes


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``gpu`` subcommand."""
    parser = subparsers.add_parser(
        "gpu",
        help="one GPU's check: AMP / channels_last_3d training steps, multi-view testing, NCCL collectives, "
        "SyncBatchNorm, the blocks table, loader workers",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", type=blocks.parse_device, default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny settings (R18 at width 8, 8 frames of 32 px, batch 2, small blocks and video)")
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), metavar="YAML",
                        help="configs whose models train and test (default: MiniKinetics I3D_8x8_R50_CGNL1 and _NL1)")
    parser.add_argument("--gpus", type=int, default=8,
                        help="GPUs the configs' global TRAIN.BATCH_SIZE is split over (default: 8, per-GPU batch 8)")
    parser.add_argument("--batch", type=int, help="per-GPU training batch (default: TRAIN.BATCH_SIZE / --gpus)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per comparison, at most (default: 5)")
    parser.add_argument("--budget", type=float, default=15.0, metavar="SECONDS",
                        help="fewer rounds where a comparison's rounds would take longer than this; the blocks "
                        "table gets a fifth of it per case and mode (default: 15)")
    parser.add_argument("--out", type=Path, help="Markdown file whose gpu section to write or replace, atomically")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY VALUE", dest="opts",
                        help="config overrides for every config, e.g. --set TEST.NUM_ENSEMBLE_VIEWS 3")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    """Runs every part, prints the report section and writes it to ``--out`` (section ``gpu-<device>``)."""
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 or du.is_distributed():
        raise SystemExit("tools/benchmark.py gpu runs in one process (its own world-size-1 group), not under torchrun")
    start, start_cpu = time.perf_counter(), cpu_snapshot()
    if args.device.type == "cuda" and args.device.index is None:  # torch.cuda.set_device needs the index
        args.device = torch.device("cuda", torch.cuda.current_device())
    configs = load_configs(args)
    args.batch = per_gpu_batch(configs, args)
    if args.tiny:
        args.rounds = min(args.rounds, 2)
    def publish(sections: Dict[str, str], notes: List[str], final: bool = False) -> str:
        elapsed, share = time.perf_counter() - start, others_cpu_share(start_cpu, cpu_snapshot())
        body = render(args, sections, notes + ([] if final else ["(partial: the run had not finished)"]), elapsed, share)
        if args.out is not None:
            update_section(args.out, f"gpu-{args.device.type}", body)
        return body

    sections, notes = _sections(args, configs, publish)
    print(publish(sections, notes, final=True))
