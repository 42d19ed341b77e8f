"""``tools/benchmark.py blocks``: the CGNL block against its floor and the NL block.

For every case (a T x H x W map at a block width C, inner channels C / 2, batch B)
the candidates run side by side (interleaved, see ``cgnl_video.benchmarks.timing``):

- ``CGNL <kernel>``: ``CGNLBlock(C, C / 2, groups, kernel, order)``, one per kernel;
- ``CGNL floor``: the ``CGNL dot`` block's own ``theta``, ``phi``, ``g`` and ``z``
  convolutions alone, ``z(theta(x) + phi(x) + g(x))``: the two additions stand in
  for the compact kernel so that the backward runs through all four convolutions;
  no compact kernel, GroupNorm or residual;
- ``CGNL floor qkv``: the same with theta's, phi's and g's weights stacked into one
  convolution whose output's three channel slices are added, as the CGNL block's fused
  CPU path computes them (``cgnl_video.models.cgnl_fused``, like timm's qkv): the floor of
  that path's own convolutions (the CPU blocks of at least 4 MiB);
- ``NL``: ``NonLocalBlock(C, C / 2)``, embedded Gaussian, no subsampling;
- ``NL pool 1x2x2``: the same with ``pool_size=(1, 2, 2)``: phi and g from the
  1x2x2 max-pooled block input (the non-local paper's and PySlowFast's subsampling).

Two modes: ``fwd`` is inference (eval mode, ``torch.no_grad``); ``fwd+bwd`` is a
training step's share (train mode, the forward, then ``torch.autograd.grad`` of a
fixed random output gradient with respect to the input and every parameter, so
nothing accumulates from one call to the next). Blocks keep the authors'
initialisation; values do not change the work done.
"""

import argparse
import datetime
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

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
from cgnl_video.models import CGNLBlock, NonLocalBlock
from cgnl_video.models.taylor import KERNELS

FLOOR = "CGNL floor"
FLOOR_STACKED = "CGNL floor qkv"
NL = "NL"
NL_POOLED = "NL pool 1x2x2"
MODES = ("fwd", "fwd+bwd")
DEFAULT_SHAPES = ((4, 14, 14), (8, 14, 14), (16, 28, 28))
# res4 and res3 of a ResNet-50: the stages that take non-local blocks.
DEFAULT_CHANNELS = (1024, 512)
# The targets, checked at TARGET_CASE: CGNL / floor and CGNL dot / NL.
TARGET_CASE = ((8, 14, 14), 1024)
TARGET_FLOOR_RATIO = 1.10
TARGET_NL_RATIO = 0.6


@dataclass(frozen=True)
class Case:
    """One feature map: ``shape`` = (T, H, W) and block width ``channels`` = C."""

    shape: Tuple[int, int, int]
    channels: int

    @property
    def inner(self) -> int:
        return self.channels // 2

    @property
    def size(self) -> int:
        """T x H x W."""
        return self.shape[0] * self.shape[1] * self.shape[2]

    @property
    def shape_label(self) -> str:
        return "x".join(str(size) for size in self.shape)

    @property
    def width_label(self) -> str:
        return f"{self.channels} / {self.inner}"


# Per case, per mode, per candidate.
Results = Dict[Case, Dict[str, Dict[str, Measurement]]]


def cgnl_name(kernel: str) -> str:
    """The candidate name of the CGNL block with ``kernel``."""
    return f"CGNL {kernel}"


class CGNLFloor(nn.Module):
    """A CGNL block's four 1x1x1 convolutions alone (shared, not copied): its floor; with
    ``stacked``, theta, phi and g as one convolution (the fused CPU path's)."""

    def __init__(self, block: CGNLBlock, stacked: bool = False):
        super().__init__()
        self.theta, self.phi, self.g, self.z = block.theta, block.phi, block.g, block.z
        self.stacked = stacked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.stacked:
            return self.z(self.theta(x) + self.phi(x) + self.g(x))
        weight = torch.cat((self.theta.weight, self.phi.weight, self.g.weight))
        theta, phi, g = F.conv3d(x, weight).split(self.theta.out_channels, 1)
        return self.z(theta + phi + g)


def build_candidates(channels: int, groups: int, order: int, with_nl: bool = True) -> Dict[str, nn.Module]:
    """The two floors, the CGNL block of every kernel and (``with_nl``) the two NL blocks at width C."""
    inner = channels // 2
    cgnl = {
        cgnl_name(kernel): CGNLBlock(channels, inner, groups, kernel=kernel, order=order)
        for kernel in KERNELS
    }
    nl = {NL: NonLocalBlock(channels, inner), NL_POOLED: NonLocalBlock(channels, inner, pool_size=(1, 2, 2))}
    dot = cgnl[cgnl_name("dot")]
    floors = {FLOOR: CGNLFloor(dot), FLOOR_STACKED: CGNLFloor(dot, stacked=True)}
    return {**floors, **cgnl, **(nl if with_nl else {})}


def forward_call(module: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Puts ``module`` in eval mode; the call is one inference forward."""
    module.eval()

    def call() -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return call


def forward_backward_call(
    module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor
) -> Callable[[], Tuple[torch.Tensor, ...]]:
    """Puts ``module`` in train mode; the call is a forward and the gradients of all inputs."""
    module.train()
    x = x.detach().requires_grad_(True)
    inputs = [x, *module.parameters()]

    def call() -> Tuple[torch.Tensor, ...]:
        return torch.autograd.grad(module(x), inputs, grad_out)

    return call


def saved_tensor_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd saves for backward in one training forward of ``module`` on ``x``.

    Counted through ``torch.autograd.graph.saved_tensors_hooks``, once per storage (the
    convolutions all save the same ``x``), leaving out the input and the parameters:
    the activations a training step keeps, deterministic and independent of the load.
    """
    held = {t.untyped_storage().data_ptr() for t in (x, *module.parameters())}
    saved: Dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in held:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    module.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(x.detach().requires_grad_(True))
    return sum(saved.values())


def run_case(case: Case, args: argparse.Namespace) -> Dict[str, Dict[str, Measurement]]:
    """Measures every candidate of ``case`` in both modes, fwd first."""
    device = args.device
    torch.manual_seed(0)
    candidates = build_candidates(case.channels, args.groups, args.order, not args.no_nl)
    modules = {name: module.to(device) for name, module in candidates.items()}
    x = torch.randn(args.batch, case.channels, *case.shape, device=device)
    grad_out = torch.randn_like(x)
    # Building a mode's calls sets the modules' train / eval mode: build each just before use.
    fwd = {name: forward_call(module, x) for name, module in modules.items()}
    results = {"fwd": measure(fwd, device, args.repeats, args.budget)}
    fwd_bwd = {name: forward_backward_call(module, x, grad_out) for name, module in modules.items()}
    results["fwd+bwd"] = measure(fwd_bwd, device, args.repeats, args.budget)
    return results


def saved_table(cases: List[Case], args: argparse.Namespace) -> str:
    """One row per case and candidate: MiB autograd saves in a training forward, and / CGNL dot."""
    rows = []
    for case in cases:
        torch.manual_seed(0)
        candidates = build_candidates(case.channels, args.groups, args.order, not args.no_nl)
        x = torch.randn(args.batch, case.channels, *case.shape, device=args.device)
        saved = {name: saved_tensor_bytes(module.to(args.device), x) for name, module in candidates.items()}
        dot = saved[cgnl_name("dot")]
        for name, num_bytes in saved.items():
            rows.append([case.shape_label, case.width_label, name, _mib(num_bytes), f"{num_bytes / dot:.2f}"])
    return markdown_table(["T x H x W", "C / inner", "block", "saved MiB", "/ CGNL dot"], rows)


def _mib(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:,.1f}"


def timing_table(results: Results) -> str:
    """One row per case and candidate: median ms and peak MiB per mode, rounds."""
    headers = ["T x H x W", "C / inner", "block"]
    headers += [f"{mode} {unit}" for mode in MODES for unit in ("ms", "peak MiB")]
    headers.append("rounds")
    rows = []
    for case, by_mode in results.items():
        rounds = " / ".join(str(len(by_mode[mode][FLOOR].samples_s)) for mode in MODES)
        for name in by_mode["fwd"]:
            cells = [case.shape_label, case.width_label, name]
            for mode in MODES:
                cells += [format_ms(by_mode[mode][name].median_s), _mib(by_mode[mode][name].peak_bytes)]
            rows.append(cells + [rounds])
    return markdown_table(headers, rows)


# Ratio table references: candidate name -> column label.
RATIO_REFERENCES = {FLOOR: "floor", FLOOR_STACKED: "floor qkv", NL: "NL", NL_POOLED: "NL pool"}


def ratio_table(results: Results) -> str:
    """One row per case and kernel: CGNL / floor, / floor qkv, / NL and / NL pool 1x2x2, per mode."""
    references = [name for name in RATIO_REFERENCES if all(name in r["fwd"] for r in results.values())]
    headers = ["T x H x W", "C / inner", "kernel"]
    headers += [f"/ {RATIO_REFERENCES[name]} {mode}" for name in references for mode in MODES]
    rows = []
    for case, by_mode in results.items():
        for kernel in KERNELS:
            cells = [case.shape_label, case.width_label, kernel]
            for reference in references:
                for mode in MODES:
                    ratio = paired_ratio(by_mode[mode][cgnl_name(kernel)], by_mode[mode][reference])
                    cells.append(f"{ratio:.2f}")
            rows.append(cells)
    return markdown_table(headers, rows)


def _verdict(ratio: float, target: float) -> str:
    return f"{ratio:.2f} (target <= {target:.2f}: {'met' if ratio <= target else 'MISSED'})"


def _target_case_lines(by_mode: Dict[str, Dict[str, Measurement]], where: str) -> List[str]:
    """CGNL (each kernel) / each floor <= 1.10 and CGNL dot / NL <= 0.6, per mode; NL pooled / NL."""
    lines = []
    for mode in MODES:
        for kernel in KERNELS:
            for floor in (FLOOR, FLOOR_STACKED):
                ratio = paired_ratio(by_mode[mode][cgnl_name(kernel)], by_mode[mode][floor])
                verdict = _verdict(ratio, TARGET_FLOOR_RATIO)
                lines.append(f"- CGNL {kernel} / {RATIO_REFERENCES[floor]}, {where}, {mode}: {verdict}")
        if NL not in by_mode[mode]:
            continue
        ratio = paired_ratio(by_mode[mode][cgnl_name("dot")], by_mode[mode][NL])
        lines.append(f"- CGNL dot / NL, {where}, {mode}: {_verdict(ratio, TARGET_NL_RATIO)}")
        pooled = paired_ratio(by_mode[mode][NL_POOLED], by_mode[mode][NL])
        lines.append(f"- NL pool 1x2x2 / NL, {where}, {mode}: {pooled:.2f} (for reference)")
    return lines


def _growth_lines(results: Results, channels: int) -> List[str]:
    """Whether CGNL dot / NL falls as T x H x W grows at width ``channels``, per mode."""
    cases = sorted((case for case in results if case.channels == channels), key=lambda c: c.size)
    lines = []
    for mode in MODES:
        ratios = [
            paired_ratio(results[case][mode][cgnl_name("dot")], results[case][mode][NL])
            for case in cases
        ]
        falling = all(later < earlier for earlier, later in zip(ratios, ratios[1:]))
        steps = ", ".join(f"{case.shape_label} {ratio:.2f}" for case, ratio in zip(cases, ratios))
        lines.append(
            f"- CGNL dot / NL at C={channels}, {mode}, by T x H x W: {steps} "
            f"(falls as T x H x W grows: {'met' if falling else 'MISSED'})"
        )
    return lines


def target_lines(results: Results) -> List[str]:
    """The issue's targets as Markdown bullets, as far as the measured cases cover them."""
    target = Case(*TARGET_CASE)
    lines = []
    if target in results:
        where = f"{target.shape_label}, C {target.width_label}"
        lines += _target_case_lines(results[target], where)
    with_nl = all(NL in by_mode["fwd"] for by_mode in results.values())
    for channels in sorted({case.channels for case in results}, reverse=True):
        if with_nl and sum(case.channels == channels for case in results) > 1:
            lines += _growth_lines(results, channels)
    return lines


def render(
    results: Results, args: argparse.Namespace, elapsed_s: float, others_share: Optional[float]
) -> str:
    """The report section: command, machine, method, the two tables, the targets."""
    memory = (
        "torch.cuda.max_memory_allocated"
        if args.device.type == "cuda"
        else "torch.profiler's CPU allocator events: the largest running sum of allocations minus frees"
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    parts = [
        f"### Blocks on {args.device.type.upper()}",
        f"Command: `{args.command}`",
        f"Machine: {machine_description(args.device)}.",
        f"Run: {now:%Y-%m-%d %H:%M} UTC, {elapsed_s:.0f} s in all; float32, B={args.batch}, "
        f"{args.groups} groups, inner = C / 2, Taylor order {args.order}.{load_note(others_share)}",
        "Time: median over the interleaved rounds (`rounds`: fwd / fwd+bwd) of one call, ms; "
        "fwd is eval mode under no_grad, fwd+bwd the forward plus the gradients of input and "
        f"parameters. Peak: MiB allocated during one call above its start ({memory}).",
        timing_table(results),
        "CGNL time over the floor's (four convolutions), the qkv floor's (theta, phi and g as one), "
        "the NL block's without subsampling and with the paper's 1x2x2 subsampling, the median "
        "over rounds of the ratio within each round:",
        ratio_table(results),
        "Training memory: MiB of activations autograd saves for backward in one training "
        "forward (`saved_tensor_bytes`: saved-tensor hooks, once per storage, input and "
        "parameters left out):",
        saved_table(list(results), args),
    ]
    targets = target_lines(results)
    if targets:
        parts += ["Targets (issue 2):", "\n".join(targets)]
    return "\n\n".join(parts)


def parse_shape(text: str) -> Tuple[int, int, int]:
    """``"8x14x14"`` -> ``(8, 14, 14)``."""
    try:
        shape = tuple(int(size) for size in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected T x H x W such as 8x14x14, got '{text}'")
    return shape


def parse_device(text: str) -> torch.device:
    """A cpu or an available cuda device."""
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not (device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_available())):
        raise argparse.ArgumentTypeError(f"device '{text}' is not available (cpu, or cuda with a GPU)")
    return device


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``blocks`` subcommand."""
    parser = subparsers.add_parser(
        "blocks",
        help="CGNL block vs its floor vs the NL block: time and peak memory",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--device", type=parse_device, default=torch.device("cpu"), help="cpu (default) or cuda"
    )
    parser.add_argument(
        "--shapes", type=parse_shape, nargs="+", default=list(DEFAULT_SHAPES), metavar="TxHxW",
        help="feature map sizes (default: 4x14x14 8x14x14 16x28x28)",
    )
    parser.add_argument(
        "--channels", type=int, nargs="+", default=list(DEFAULT_CHANNELS), metavar="C",
        help="block widths, every shape at each; inner = C / 2 (default: 1024 512, res4 and res3)",
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's, the number of cores)"
    )
    parser.add_argument(
        "--no-nl", action="store_true",
        help="leave the NL blocks out: more rounds of the CGNL / floor comparison within the budget "
        "at large T x H x W, where one NL call takes seconds",
    )
    parser.add_argument("--batch", type=int, default=2, help="batch size (default: 2)")
    parser.add_argument("--groups", type=int, default=8, help="CGNL groups (default: 8)")
    parser.add_argument(
        "--order", type=int, default=3, help="Taylor order of the Gaussian kernels (default: 3)"
    )
    parser.add_argument(
        "--repeats", type=int, default=15, help="timed rounds per case and mode, at most (default: 15)"
    )
    parser.add_argument(
        "--budget", type=float, default=20.0, metavar="SECONDS",
        help="fewer rounds (at least 1) where the repeats would take longer than this, "
        "per case and mode, judged from the warm-up round (default: 20)",
    )
    parser.add_argument(
        "--out", type=Path, help="Markdown file whose blocks section to write or replace, atomically"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    """Measures every case, prints the report section and writes it to ``--out``."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start, start_cpu = time.perf_counter(), cpu_snapshot()
    results: Results = {}
    for shape in args.shapes:
        for channels in args.channels:
            case = Case(shape, channels)
            case_start = time.perf_counter()
            results[case] = run_case(case, args)
            elapsed = time.perf_counter() - case_start
            print(f"[blocks] {case.shape_label} C={channels}: {elapsed:.1f} s", file=sys.stderr, flush=True)
    others_share = others_cpu_share(start_cpu, cpu_snapshot())
    body = render(results, args, time.perf_counter() - start, others_share)
    print(body)
    if args.out is not None:
        update_section(args.out, f"blocks-{args.device.type}", body)
