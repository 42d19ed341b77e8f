"""``tools/benchmark.py data``: the input pipeline against raw decord decoding, side by side.

Three comparisons, each timed in interleaved rounds (:mod:`cgnl_video.benchmarks.timing`)
on the same videos and frame indices, in one process with one torch thread (the work of
one DataLoader worker), raw decord with the dataset's ``DATA.DECODING_THREADS`` threads;
the config is the default one (T = 8 frames at stride 8, 224 train crops, 10 x 3 test views
of 256) unless ``--set`` overrides it:

1. train clips: ``raw decord``, a ``VideoReader`` and ``get_batch`` of a random clip per
   video, against the dataset's train item (decode, scale jitter, crop, flip; uint8 out).
   Both draw their clip starts from the item's generator (seed, epoch 0, index), so they
   decode the same indices. Target: dataset >= 0.95x the raw clips/s.
2. multi-view test items: ``raw decord`` of the union of the K clips' frames in one
   ``get_batch`` (one pass), the K clips decoded one by one (a reader per clip, as
   datasets with one item per clip do), the dataset's decoding alone (its ``opener`` +
   ``get`` of the union) and the whole test item (decode + K x S uint8 views; normalised
   later, on the device). Target: the item <= 1.2x the one-pass decode, and its bytes 4x
   fewer than float32 views.
3. a 1080p H.264 video (written with ``write_video``): a train clip decoded at full size
   and straight to the transforms' largest short side, raw and through the dataset.

Comparisons 1 and 2 also run a peer on the same videos: pytorchvideo's ``LabeledVideoDataset``
(PyAV, its Kinetics recipe's transforms; :mod:`cgnl_video.benchmarks.pytorchvideo_peer`),
which returns float32 clips.
"""

import argparse
import functools
import itertools
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import decord
import numpy as np
import torch

from cgnl_video.benchmarks import markdown_table, pytorchvideo_peer, update_section
from cgnl_video.benchmarks.timing import Measurement, machine_description, measure
from cgnl_video.config import get_cfg
from cgnl_video.config.loading import merge_overrides
from cgnl_video.datasets import build_dataset, sampling
from cgnl_video.datasets.batching import item_seed
from cgnl_video.datasets.decoders import VideoDecoder, build_decoder, scaled_size
from cgnl_video.datasets.lists import CLASSES_FILE, list_file, write_classes, write_video_list
from cgnl_video.datasets.video_dataset import VideoDataset
from cgnl_video.datasets.video_io import write_video

SHARED_VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "videos"
DEFAULT_VIDEOS = [str(SHARED_VIDEOS / name) for name in ("test.mp4", "test.avi")]
TARGET_TRAIN_RATIO = 0.95
TARGET_TEST_RATIO = 1.2
CPU = torch.device("cpu")

Candidates = Dict[str, Callable[[], object]]


def make_datasets(cfg, paths: Sequence[str], folder: str) -> Dict[str, VideoDataset]:
    """Train and test datasets listing ``paths`` (one class), lists written in ``folder``."""
    for split in ("train", "test"):
        write_video_list(list_file(folder, split), [(os.path.abspath(p), 0) for p in paths])
    write_classes(os.path.join(folder, CLASSES_FILE), ["all"])
    cfg.DATA.PATH_TO_DATA_DIR = folder
    return {split: build_dataset(cfg, split) for split in ("train", "test")}


def every_item(dataset: VideoDataset) -> Callable[[], None]:
    """Builds every item of ``dataset`` (epoch 0)."""

    def call() -> None:
        for index in range(len(dataset)):
            dataset[(index, 0)]

    return call


def raw_random_clips(paths: Sequence[str], cfg, size=(-1, -1)) -> Callable[[], None]:
    """decord alone: per video, a reader and ``get_batch`` of the clip the dataset would draw."""

    def call() -> None:
        for index, path in enumerate(paths):
            reader = decord.VideoReader(path, width=size[0], height=size[1], num_threads=cfg.DATA.DECODING_THREADS)
            generator = torch.Generator().manual_seed(item_seed(cfg.RNG_SEED, 0, index))
            clip = sampling.random_clip(len(reader), cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, generator)
            reader.get_batch(clip).asnumpy()

    return call


PEER = "pytorchvideo LabeledVideoDataset (PyAV, float32)"


def train_candidates(paths: Sequence[str], cfg, dataset: VideoDataset) -> Candidates:
    return {"raw decord get_batch": raw_random_clips(paths, cfg), "dataset train item": every_item(dataset),
            f"{PEER} train clip": pytorchvideo_peer.train_clips(paths, cfg)}


def _test_clips(num_frames: int, cfg) -> List[List[int]]:
    return sampling.uniform_clips(num_frames, cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.TEST.NUM_ENSEMBLE_VIEWS)


def _union(clips: List[List[int]]) -> List[int]:
    return sorted(set(itertools.chain.from_iterable(clips)))


def multiview_candidates(paths: Sequence[str], cfg, dataset: VideoDataset) -> Candidates:
    def union_one_pass() -> None:
        for path in paths:
            reader = decord.VideoReader(path, num_threads=cfg.DATA.DECODING_THREADS)
            reader.get_batch(_union(_test_clips(len(reader), cfg))).asnumpy()

    def clips_one_by_one() -> None:
        for path in paths:
            threads = cfg.DATA.DECODING_THREADS
            for clip in _test_clips(len(decord.VideoReader(path, num_threads=threads)), cfg):
                decord.VideoReader(path, num_threads=threads).get_batch(clip).asnumpy()

    def dataset_decode() -> None:
        for record in dataset.records:
            with dataset.opener(record.path, short_side=dataset.views.short_side) as video:
                video.get(_union(_test_clips(video.num_frames, cfg)))

    return {
        "raw decord, union of the K clips in one get_batch": union_one_pass,
        "raw decord, K clips one by one (a reader each)": clips_one_by_one,
        "dataset decode only (open + get of the union)": dataset_decode,
        "dataset test item (decode + K x S views)": every_item(dataset),
        f"{PEER} test item (K clips x S crops)": pytorchvideo_peer.test_items(paths, cfg),
        "float32 zeros of a test item's size (float views would write this)": lambda: [
            torch.zeros(dataset.views.failed_shape) for _ in paths
        ],
    }


def _full_size_open(path: str, short_side=None, decoder: VideoDecoder = None):
    """Opens ``path`` with ``decoder`` without decode-time scaling (the full-size comparison)."""
    return decoder.open(path, None)


def write_grating_video(path: str, num_frames: int, width: int = 1920, height: int = 1080, fps: int = 25) -> None:
    """A ``width`` x ``height`` H.264 video of moving sine gratings (real texture for the codec)."""
    x, y = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)[:, None]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        for channel, period in enumerate((37.0, 53.0, 71.0)):
            wave = np.sin((x + 6 * t) / period) + np.sin((y - 4 * t) / (period * 1.3))
            frames[t, ..., channel] = (127.5 + 63 * wave).astype(np.uint8)
    write_video(path, frames, fps)


def hd_candidates(path: str, cfg, dataset: VideoDataset, full_size: VideoDataset) -> Candidates:
    scaled = scaled_size(1920, 1080, dataset.views.short_side)
    return {
        "raw decord get_batch, 1920x1080": raw_random_clips([path], cfg),
        f"raw decord get_batch, decoded to {scaled[0]}x{scaled[1]}": raw_random_clips([path], cfg, scaled),
        "dataset train item, full-size decode": every_item(full_size),
        f"dataset train item, decoded to {scaled[0]}x{scaled[1]} (default)": every_item(dataset),
    }


def _measure(title: str, candidates: Candidates, args) -> Dict[str, Measurement]:
    start = time.perf_counter()
    results = measure(candidates, CPU, max_rounds=args.rounds, budget_s=args.budget, min_rounds=3)
    print(f"[data] {title}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return results


def table(results: Dict[str, Measurement], count: int, unit: str, reference: str) -> str:
    """Per-``unit`` time, ``unit``/s and time ratio to ``reference``, from ``count`` per call."""
    rows = []
    for name, m in results.items():
        per = m.median_s / count
        ratio = m.median_s / results[reference].median_s
        rows.append([name, f"{per * 1e3:.1f}", f"{1 / per:.2f}", f"{ratio:.2f}", len(m.samples_s)])
    return markdown_table(["", f"ms / {unit}", f"{unit}s / s", f"time / {reference}", "rounds"], rows)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def render(args, cfg, train, test, hd, test_shape, elapsed_s: float) -> str:
    train_ratio = train["raw decord get_batch"].median_s / train["dataset train item"].median_s
    union = "raw decord, union of the K clips in one get_batch"
    test_ratio = test["dataset test item (decode + K x S views)"].median_s / test[union].median_s
    decode_ratio = test["dataset decode only (open + get of the union)"].median_s / test[union].median_s
    peer_train = train[f"{PEER} train clip"].median_s / train["dataset train item"].median_s
    peer_test = test[f"{PEER} test item (K clips x S crops)"].median_s / test["dataset test item (decode + K x S views)"].median_s
    data, views = cfg.DATA, cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    item_bytes = math.prod(test_shape)  # uint8
    float_bytes = 4 * item_bytes
    return "\n\n".join([
        "### Data pipeline (CPU, one process = one DataLoader worker)",
        f"Command: `{args.command}`",
        f"Machine: {machine_description(CPU)}; decord {decord.__version__}.",
        f"Videos: {', '.join(os.path.basename(p) for p in args.videos)}; T = {data.NUM_FRAMES} frames at "
        f"stride {data.SAMPLING_RATE}, train jitter {list(data.TRAIN_JITTER_SCALES)} crop {data.TRAIN_CROP_SIZE}, "
        f"test K = {cfg.TEST.NUM_ENSEMBLE_VIEWS} clips x S = {cfg.TEST.NUM_SPATIAL_CROPS} crops of "
        f"{data.TEST_CROP_SIZE}; backend {data.DECODING_BACKEND}. Time: median of interleaved rounds; "
        f"{elapsed_s:.0f} s in all.",
        "Train clips (same videos, same indices):",
        table(train, len(args.videos), "clip", "raw decord get_batch"),
        f"Multi-view test items (V = {views} views each):",
        table(test, len(args.videos), "item", union),
        f"1080p H.264 clip ({args.hd_frames} frames written by write_video):",
        table(hd, 1, "clip", "raw decord get_batch, 1920x1080"),
        "Targets (issue 8):\n"
        f"- dataset train clips/s / raw decord clips/s = {train_ratio:.2f} (>= {TARGET_TRAIN_RATIO}: "
        f"{_verdict(train_ratio >= TARGET_TRAIN_RATIO)})\n"
        f"- test item time / one-pass union decode = {test_ratio:.2f} (<= {TARGET_TEST_RATIO}: "
        f"{_verdict(test_ratio <= TARGET_TEST_RATIO)}); its decoding alone: {decode_ratio:.2f}\n"
        f"- loader memory per test item: {item_bytes / 2**20:.1f} MiB of uint8 views, against "
        f"{float_bytes / 2**20:.1f} MiB as float32 (4x smaller: met)\n"
        f"- lead over pytorchvideo's LabeledVideoDataset (issue 15: keep it): it takes {peer_train:.2f}x the "
        f"dataset's time per train clip and {peer_test:.2f}x per test item",
    ])


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``data`` subcommand."""
    parser = subparsers.add_parser(
        "data",
        help="input pipeline vs raw decord: train clips, multi-view test items, 1080p decode-time scaling",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--videos", nargs="+", default=DEFAULT_VIDEOS, metavar="PATH",
        help="videos to read (default: ../shared/data/videos/test.mp4 and test.avi)",
    )
    parser.add_argument("--hd-frames", type=int, default=64, help="frames of the 1080p video (default: 64)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per comparison, at most (default: 15)")
    parser.add_argument(
        "--budget", type=float, default=60.0, metavar="SECONDS",
        help="fewer rounds (at least 3) where the rounds would take longer than this (default: 60)",
    )
    parser.add_argument("--out", type=Path, help="Markdown file whose data section to write or replace, atomically")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY VALUE", dest="opts",
        help="config overrides, e.g. --set TEST.NUM_ENSEMBLE_VIEWS 3 DATA.DECODING_BACKEND pyav",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    """Runs the three comparisons, prints the report section and writes it to ``--out``."""
    missing = [p for p in args.videos if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"videos not found: {', '.join(missing)}")
    start = time.perf_counter()
    torch.set_num_threads(1)  # as in a DataLoader worker
    cfg = get_cfg()
    merge_overrides(cfg, args.opts)
    with tempfile.TemporaryDirectory() as folder:
        datasets = make_datasets(cfg, args.videos, folder)
        train = _measure("train clips", train_candidates(args.videos, cfg, datasets["train"]), args)
        test = _measure("test items", multiview_candidates(args.videos, cfg, datasets["test"]), args)
        hd_path = os.path.join(folder, "hd", "1080p.mp4")
        os.makedirs(os.path.dirname(hd_path))
        write_grating_video(hd_path, args.hd_frames)
        hd_set = make_datasets(cfg, [hd_path], os.path.dirname(hd_path))["train"]
        full_size = build_dataset(cfg, "train", hd_set.records)
        full_size.opener = functools.partial(_full_size_open, decoder=build_decoder(cfg))
        hd = _measure("1080p", hd_candidates(hd_path, cfg, hd_set, full_size), args)
    body = render(args, cfg, train, test, hd, datasets["test"].views.failed_shape, time.perf_counter() - start)
    print(body)
    if args.out is not None:
        update_section(args.out, "data-cpu", body)
