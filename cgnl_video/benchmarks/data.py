"""``tools/benchmark.py data``: the input pipeline against raw decord decoding, side by side.

Three comparisons, each timed in interleaved rounds (:mod:`cgnl_video.benchmarks.timing`)
on the same videos and frame indices, in one process with one torch thread and freed memory
kept for reuse (the work of one DataLoader worker, ``cgnl_video/decoding/memory.py``), raw decord
with the dataset's ``DATA.DECODING_THREADS`` threads; the config is the default one (T = 8
frames at stride 8, 224 train crops, 10 x 3 test views of 256) unless ``--set`` overrides
it. Videos: ``--videos`` (default: the shared test.mp4 and test.avi) and two the benchmark
writes (``--no-made-videos``: not): a Kinetics-like clip (340 x 256, 10 s at 30 fps, a
textured one that decodes like a real clip, :func:`textured_video`) and a 1080p one
(``--hd-frames`` frames). Each video gets its row, and the ratios their geometric mean:

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
3. the 1080p video: a train clip decoded at full size and straight to the transforms'
   largest short side, raw and through the dataset.

The dataset runs as training does: decoding under the watchdog (``DATA.DECODE_TIMEOUT``),
probe verdicts from ``DATA.PROBE_CACHE`` (filled by the warm-up round, as by a run's first
epoch).

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
from typing import Callable, Dict, List, Sequence, Tuple

import av
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
from cgnl_video.datasets.video_io import VideoWriter, write_video
from cgnl_video.decoding import memory

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


def one_item(dataset: VideoDataset, index: int) -> Callable[[], None]:
    """Builds item ``index`` of ``dataset`` (epoch 0)."""
    return lambda: dataset[(index, 0)]


def every_item(dataset: VideoDataset) -> Callable[[], None]:
    """Builds every item of ``dataset`` (epoch 0)."""

    def call() -> None:
        for index in range(len(dataset)):
            dataset[(index, 0)]

    return call


def raw_random_clips(paths: Sequence[str], cfg, size=(-1, -1), first_index: int = 0) -> Callable[[], None]:
    """decord alone: per video, a reader and ``get_batch`` of the clip the dataset would draw
    (the videos are items ``first_index``, ``first_index + 1``, ... of the dataset)."""

    def call() -> None:
        for index, path in enumerate(paths, start=first_index):
            reader = decord.VideoReader(path, width=size[0], height=size[1], num_threads=cfg.DATA.DECODING_THREADS)
            generator = torch.Generator().manual_seed(item_seed(cfg.RNG_SEED, 0, index))
            clip = sampling.random_clip(len(reader), cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, generator)
            reader.get_batch(clip).asnumpy()

    return call


PEER = "pytorchvideo LabeledVideoDataset (PyAV, float32)"
RAW_TRAIN, TRAIN_ITEM, PEER_TRAIN = "raw decord get_batch", "dataset train item", f"{PEER} train clip"
UNION, ONE_BY_ONE = "raw decord, union of the K clips in one get_batch", "raw decord, K clips one by one (a reader each)"
DECODE_ONLY, TEST_ITEM = "dataset decode only (open + get of the union)", "dataset test item (decode + K x S views)"
PEER_TEST, ZEROS = f"{PEER} test item (K clips x S crops)", "float32 zeros of a test item's size (float views would write this)"


def _per_video(paths: Sequence[str], make: Callable[[int, str], Candidates]) -> Dict[str, Candidates]:
    """Each video's candidates, keyed "video | candidate" for one interleaved measurement."""
    return {os.path.basename(path): make(index, path) for index, path in enumerate(paths)}


def train_candidates(paths: Sequence[str], cfg, dataset: VideoDataset) -> Dict[str, Candidates]:
    return _per_video(paths, lambda index, path: {
        RAW_TRAIN: raw_random_clips([path], cfg, first_index=index), TRAIN_ITEM: one_item(dataset, index),
        PEER_TRAIN: pytorchvideo_peer.train_clips([path], cfg)})


def _test_clips(num_frames: int, cfg) -> List[List[int]]:
    return sampling.uniform_clips(num_frames, cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.TEST.NUM_ENSEMBLE_VIEWS)


def _union(clips: List[List[int]]) -> List[int]:
    return sorted(set(itertools.chain.from_iterable(clips)))


def _test_candidates(index: int, path: str, cfg, dataset: VideoDataset) -> Candidates:
    threads = cfg.DATA.DECODING_THREADS

    def union_one_pass() -> None:
        reader = decord.VideoReader(path, num_threads=threads)
        reader.get_batch(_union(_test_clips(len(reader), cfg))).asnumpy()

    def clips_one_by_one() -> None:
        for clip in _test_clips(len(decord.VideoReader(path, num_threads=threads)), cfg):
            decord.VideoReader(path, num_threads=threads).get_batch(clip).asnumpy()

    def dataset_decode() -> None:
        with dataset.opener(path, short_side=dataset.views.short_side) as video:
            video.get(_union(_test_clips(video.num_frames, cfg)))

    return {UNION: union_one_pass, ONE_BY_ONE: clips_one_by_one, DECODE_ONLY: dataset_decode,
            TEST_ITEM: one_item(dataset, index), PEER_TEST: pytorchvideo_peer.test_items([path], cfg),
            ZEROS: lambda: torch.zeros(dataset.views.failed_shape)}


def multiview_candidates(paths: Sequence[str], cfg, dataset: VideoDataset) -> Dict[str, Candidates]:
    return _per_video(paths, lambda index, path: _test_candidates(index, path, cfg, dataset))


def textured_video(path: str, num_frames: int = 300, width: int = 340, height: int = 256, fps: int = 30,
                   seed: int = 0) -> None:
    """A clip that decodes like a real one: a random texture panning 2 px right and 1 px down
    per frame, with per-frame noise; x264's keyframe every 250 frames, like YouTube-sourced
    Kinetics clips (340 x 256, 10 s at 30 fps: 0.4 Mbit/s, a random 8 x 8 clip decodes in
    about half of ../shared's test.mp4's time; the smooth gratings of
    :func:`write_grating_video` decode several times faster still). Written frame by frame."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, ((height + num_frames) // 4 + 2, (width + 2 * num_frames) // 4 + 2, 3))
    texture = np.kron(coarse, np.ones((4, 4, 1))).astype(np.float32)  # 4 x 4 blocks, then smoothed
    texture = (texture + np.roll(texture, 2, 0) + np.roll(texture, 2, 1) + np.roll(texture, (2, 2), (0, 1))) / 4
    with VideoWriter(path, fps) as writer:
        for t in range(num_frames):
            noise = rng.normal(0, NOISE_LEVEL, (height, width, 3))
            writer.write(np.clip(texture[t:t + height, 2 * t:2 * t + width] + noise, 0, 255).astype(np.uint8))


# Per-frame noise of textured_video (grey levels, standard deviation).
NOISE_LEVEL = 5.0


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


def _measure_per_video(title: str, groups: Dict[str, Candidates], args) -> Dict[str, Dict[str, Measurement]]:
    """Every video's candidates in one interleaved measurement; results by video, then candidate."""
    flat = {f"{video} | {name}": call for video, candidates in groups.items() for name, call in candidates.items()}
    results = _measure(title, flat, args)
    return {video: {name: results[f"{video} | {name}"] for name in candidates} for video, candidates in groups.items()}


def table(results: Dict[str, Measurement], count: int, unit: str, reference: str) -> str:
    """Per-``unit`` time, ``unit``/s and time ratio to ``reference``, from ``count`` per call."""
    rows = []
    for name, m in results.items():
        per = m.median_s / count
        ratio = m.median_s / results[reference].median_s
        rows.append([name, f"{per * 1e3:.1f}", f"{1 / per:.2f}", f"{ratio:.2f}", len(m.samples_s)])
    return markdown_table(["", f"ms / {unit}", f"{unit}s / s", f"time / {reference}", "rounds"], rows)


def _ratio(results: Dict[str, Measurement], numerator: str, denominator: str) -> float:
    return results[numerator].median_s / results[denominator].median_s


def geometric_mean(values: Sequence[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


def describe_video(path: str) -> str:
    """"W x H, N frames at F fps, codec" of ``path`` (as the probe reads it)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 0)
        return f"{stream.width}x{stream.height}, {stream.frames} frames at {rate:g} fps, {stream.codec_context.name}"


def per_video_table(results: Dict[str, Dict[str, Measurement]], videos: Dict[str, str],
                    columns: Sequence[str], ratios: Sequence[Tuple[str, str, str]]
                    ) -> Tuple[str, Dict[str, List[float]]]:
    """One row per video (``videos``: name -> :func:`describe_video`): ms of each of ``columns``,
    then each ``(title, numerator, denominator)`` time ratio; a last row with the ratios'
    geometric means. Returns the table and each ratio's values per video, by title."""
    rows, per_ratio = [], {title: [] for title, _, _ in ratios}
    for video, description in videos.items():
        measured = results[video]
        row = [video, description] + [f"{measured[column].median_s * 1e3:.1f}" for column in columns]
        for title, numerator, denominator in ratios:
            per_ratio[title].append(_ratio(measured, numerator, denominator))
            row.append(f"{per_ratio[title][-1]:.2f}")
        rows.append(row + [min(len(m.samples_s) for m in measured.values())])
    means = [f"{geometric_mean(per_ratio[title]):.2f}" for title, _, _ in ratios]
    rows.append(["geometric mean", "-"] + ["-"] * len(columns) + means + ["-"])
    headers = ["video", "frames"] + [f"{column}, ms" for column in columns] + [t for t, _, _ in ratios] + ["rounds"]
    return markdown_table(headers, rows), per_ratio


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


TRAIN_RATIOS = [("dataset / raw", TRAIN_ITEM, RAW_TRAIN), ("pytorchvideo / dataset", PEER_TRAIN, TRAIN_ITEM)]
TEST_RATIOS = [("item / union", TEST_ITEM, UNION), ("decode only / union", DECODE_ONLY, UNION),
               ("one by one / union", ONE_BY_ONE, UNION), ("pytorchvideo / item", PEER_TEST, TEST_ITEM),
               ("float32 zeros / item", ZEROS, TEST_ITEM)]


def render(args, cfg, videos: Dict[str, str], train, test, hd, test_shape, elapsed_s: float) -> str:
    train_table, train_ratios = per_video_table(train, videos, [RAW_TRAIN, TRAIN_ITEM, PEER_TRAIN], TRAIN_RATIOS)
    test_table, test_ratios = per_video_table(test, videos, [UNION, ONE_BY_ONE, DECODE_ONLY, TEST_ITEM, PEER_TEST],
                                              TEST_RATIOS)
    train_means = {title: geometric_mean(values) for title, values in train_ratios.items()}
    test_means = {title: geometric_mean(values) for title, values in test_ratios.items()}
    train_ratio, test_ratio = 1 / train_means["dataset / raw"], test_means["item / union"]
    worst_train, worst_test = max(train_ratios["dataset / raw"]), max(test_ratios["item / union"])
    data, views = cfg.DATA, cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    item_bytes = math.prod(test_shape)  # uint8
    float_bytes = 4 * item_bytes
    return "\n\n".join([
        "### Data pipeline (CPU, one process = one DataLoader worker)",
        f"Command: `{args.command}`",
        f"Machine: {machine_description(CPU)}; decord {decord.__version__}, PyAV {av.__version__}.",
        f"T = {data.NUM_FRAMES} frames at stride {data.SAMPLING_RATE}, train jitter {list(data.TRAIN_JITTER_SCALES)} "
        f"crop {data.TRAIN_CROP_SIZE}, test K = {cfg.TEST.NUM_ENSEMBLE_VIEWS} clips x S = "
        f"{cfg.TEST.NUM_SPATIAL_CROPS} crops of {data.TEST_CROP_SIZE}; backend {data.DECODING_BACKEND}, "
        f"DATA.DECODE_TIMEOUT {data.DECODE_TIMEOUT} (the watchdog child), probe verdicts cached. Time: median of "
        f"interleaved rounds, every video's candidates in the same rounds; {elapsed_s:.0f} s in all.",
        "Train clips (same videos, same indices), ms per clip:",
        train_table,
        f"Multi-view test items (V = {views} views each), ms per item:",
        test_table,
        f"1080p H.264 clip ({args.hd_frames} frames), decode-time scaling:",
        table(hd, 1, "clip", "raw decord get_batch, 1920x1080"),
        "Targets (issues 8 and 15), geometric means over the videos:\n"
        f"- dataset train clips/s / raw decord clips/s = {train_ratio:.2f} (>= {TARGET_TRAIN_RATIO}: "
        f"{_verdict(train_ratio >= TARGET_TRAIN_RATIO)}; the slowest video {1 / worst_train:.2f})\n"
        f"- test item time / one-pass union decode = {test_ratio:.2f} (<= {TARGET_TEST_RATIO}: "
        f"{_verdict(test_ratio <= TARGET_TEST_RATIO)}; the slowest video {worst_test:.2f}); its decoding alone: "
        f"{test_means['decode only / union']:.2f}\n"
        f"- loader memory per test item: {item_bytes / 2**20:.1f} MiB of uint8 views, against "
        f"{float_bytes / 2**20:.1f} MiB as float32 (4x smaller: met)\n"
        f"- lead over pytorchvideo's LabeledVideoDataset (issue 15: keep it): it takes "
        f"{train_means['pytorchvideo / dataset']:.2f}x the dataset's time per train clip and "
        f"{test_means['pytorchvideo / item']:.2f}x per test item",
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
    parser.add_argument("--no-made-videos", action="store_true",
                        help="train / test tables on --videos only (the 1080p table still runs)")
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


def made_videos(folder: str, hd_frames: int, kinetics_like: bool = True) -> List[str]:
    """The 1080p clip, then (``kinetics_like``) the Kinetics-like clip, written in ``folder``."""
    hd = os.path.join(folder, "hd_1920x1080.mp4")
    textured_video(hd, hd_frames, 1920, 1080, 25, seed=1)
    if not kinetics_like:
        return [hd]
    kinetics = os.path.join(folder, "kinetics_like_340x256.mp4")
    textured_video(kinetics)
    return [hd, kinetics]


def main(args: argparse.Namespace) -> None:
    """Runs the three comparisons, prints the report section and writes it to ``--out``."""
    missing = [p for p in args.videos if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"videos not found: {', '.join(missing)}")
    start = time.perf_counter()
    torch.set_num_threads(1)  # as in a DataLoader worker, which also keeps freed memory:
    memory.keep_freed_memory()
    with tempfile.TemporaryDirectory() as folder:
        cfg = get_cfg()
        cfg.DATA.PROBE_CACHE = os.path.join(folder, "probes.sqlite3")  # filled by the warm-up round
        merge_overrides(cfg, args.opts)
        made = os.path.join(folder, "made")
        os.makedirs(made)
        hd_path, *kinetics = made_videos(made, args.hd_frames, kinetics_like=not args.no_made_videos)
        videos = [*args.videos, *kinetics, *([] if args.no_made_videos else [hd_path])]
        datasets = make_datasets(cfg, videos, folder)
        train = _measure_per_video("train clips", train_candidates(videos, cfg, datasets["train"]), args)
        test = _measure_per_video("test items", multiview_candidates(videos, cfg, datasets["test"]), args)
        hd_set = make_datasets(cfg, [hd_path], made)["train"]
        full_size = build_dataset(cfg, "train", hd_set.records)
        full_size.opener = functools.partial(_full_size_open, decoder=build_decoder(cfg))
        hd = _measure("1080p", hd_candidates(hd_path, cfg, hd_set, full_size), args)
        described = {os.path.basename(path): describe_video(path) for path in videos}
    body = render(args, cfg, described, train, test, hd, datasets["test"].views.failed_shape,
                  time.perf_counter() - start)
    print(body)
    if args.out is not None:
        update_section(args.out, "data-cpu", body)
