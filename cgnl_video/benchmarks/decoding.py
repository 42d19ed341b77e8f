"""``tools/benchmark.py decoding``: what the decoding watchdog costs, side by side in one run.

1. Time: a train clip (``DATA.NUM_FRAMES`` = 8 frames every 8th, short side 256) of each
   video, opened and decoded in this process (``open_video``) against the same clip through
   the :class:`~cgnl_video.decoding.guard.GuardedDecoder` (child process, frames through a
   pipe), in interleaved rounds; the ratio is the median of the per-round ratios.
2. Memory: ``--items`` train clips from a list where one video in three is ``--undecodable``
   (by default the 720p ``corrupted.mp4``: frames past 40 fail), decoded as a loader worker would, in
   process and guarded; the RSS of this process (and of the guard's child) after the first
   and the last item.

The figures are indicative on a shared machine.
"""

import argparse
import time
from typing import Dict, List, Sequence, Tuple

import torch

from cgnl_video.benchmarks import markdown_table
from cgnl_video.benchmarks.data import CPU, DEFAULT_VIDEOS, SHARED_VIDEOS
from cgnl_video.benchmarks.timing import machine_description, measure, paired_ratio
from cgnl_video.datasets.decoders import DecodeError, VideoDecoder
from cgnl_video.datasets.sampling import random_clip

SHORT_SIDE, NUM_FRAMES, STRIDE = 256, 8, 8
UNDECODABLE_720P = str(SHARED_VIDEOS / "corrupted.mp4")


def _rss_mib(pid: str = "self") -> float:
    with open(f"/proc/{pid}/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kib / 1024


def decode_clip(decoder: VideoDecoder, path: str, generator: torch.Generator) -> bool:
    """Decodes one train clip of ``path`` drawn from ``generator``; False if it failed (DecodeError)."""
    try:
        with decoder.open(path, SHORT_SIDE) as video:
            video.get(random_clip(video.num_frames, NUM_FRAMES, STRIDE, generator))
    except DecodeError:
        return False
    return True


def overhead(paths: Sequence[str], rounds: int, budget_s: float) -> Tuple[str, float]:
    """(table, guarded / in-process time ratio) of one train clip of each of ``paths``."""
    decoders = {"in process (DATA.DECODE_TIMEOUT 0)": VideoDecoder("decord", 0),
                "guarded (child process, pipe)": VideoDecoder("decord", 60)}
    candidates = {name: (lambda d=d: [decode_clip(d, p, torch.Generator().manual_seed(0)) for p in paths])
                  for name, d in decoders.items()}
    results = measure(candidates, CPU, max_rounds=rounds, budget_s=budget_s, min_rounds=3)
    names = list(decoders)
    ratio = paired_ratio(results[names[1]], results[names[0]])
    rows = [[name, f"{1000 * r.median_s / len(paths):.1f}", len(r.samples_s)] for name, r in results.items()]
    return markdown_table(["train clip", "ms / clip", "rounds"], rows), ratio


def memory(paths: Sequence[str], undecodable: str, items: int, timeout: int) -> Dict[str, List[float]]:
    """RSS (MiB) after the first and the last of ``items`` clips, one video in three (``undecodable``)
    failing: ``{mode: [first, last, child first, child last, failures]}``."""
    cycle = [paths[0], paths[-1], undecodable]
    figures = {}
    for mode, decoder in (("in process", VideoDecoder("decord", 0)), ("guarded", VideoDecoder("decord", timeout))):
        generator, rss, failures = torch.Generator().manual_seed(0), [], 0
        for index in range(items):
            failures += not decode_clip(decoder, cycle[index % 3], generator)
            if index in (0, items - 1):
                child = decoder.guard._process.pid if decoder.guard else None
                rss.append((_rss_mib(), _rss_mib(str(child)) if child else 0.0))
        figures[mode] = [rss[0][0], rss[-1][0], rss[0][1], rss[-1][1], failures]
        if decoder.guard:
            decoder.guard.close()
    return figures


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``decoding`` subcommand."""
    parser = subparsers.add_parser("decoding", help="the decoding watchdog's time and memory overhead",
                                   description=__doc__.split("\n\n", 1)[1],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", nargs="+", default=DEFAULT_VIDEOS, metavar="PATH",
                        help="decodable videos (default: ../shared/data/videos/test.mp4 and test.avi)")
    parser.add_argument("--undecodable", default=UNDECODABLE_720P, metavar="PATH",
                        help="the failing video of the memory run (default: ../shared/data/videos/corrupted.mp4)")
    parser.add_argument("--items", type=int, default=2000, help="clips of the memory run (default: 2000)")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds, at most (default: 30)")
    parser.add_argument("--budget", type=float, default=30.0, metavar="SECONDS",
                        help="time budget of the timed rounds (default: 30)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    """Measures and prints both comparisons as Markdown."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    table, ratio = overhead(args.videos, args.rounds, args.budget)
    rows = [[mode, f"{a:.0f} -> {b:.0f}", f"{c:.0f} -> {d:.0f}" if c else "-", f"{n}"]
            for mode, (a, b, c, d, n) in memory(args.videos, args.undecodable, args.items, 60).items()]
    print(f"{machine_description(CPU)}\n\n{table}\n\nguarded / in process: {ratio:.3f}x\n")
    print(markdown_table([f"{args.items} clips, 1 in 3 undecodable", "worker RSS MiB first -> last",
                          "child RSS MiB first -> last", "failed clips"], rows))
    print(f"\n({time.perf_counter() - start:.0f} s)")
