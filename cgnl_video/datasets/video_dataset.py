"""The video Dataset and its DataLoader: list file -> records -> clip indices -> frames -> views.

:class:`VideoDataset` takes explicit arguments; ``build_dataset(cfg, split)`` reads them from
the config (``{split}.csv`` and ``classes.txt`` in ``DATA.PATH_TO_DATA_DIR``; a malformed
line raises ``ListFormatError`` ``file:line: reason``), as ``build_model(cfg)`` does.

Items are addressed by keys ``(index, epoch)`` (see :mod:`cgnl_video.datasets.batching`) and
are dicts:

- ``video``: **uint8** ``C x T x H x W`` (train: random clip, scale jitter, crop, flip; val:
  the centre clip, centre crop) or, for test, ``V x C x T x H x W`` with ``V = K x S``
  (``K = TEST.NUM_ENSEMBLE_VIEWS`` clips, ``S = TEST.NUM_SPATIAL_CROPS`` crops, or 1 with
  ``TEST.FULLY_CONVOLUTIONAL``), clip-major: view ``v`` is clip ``v // S``, crop ``v % S``:
  the views of :mod:`cgnl_video.datasets.views`, made from the video opened once.
  The device makes them float (:mod:`cgnl_video.engine.normalize`).
- ``label`` (int) and ``index`` (int, the video's 0-based line in the list).

Every random choice of a training item (clip start, scale, crop, flip, replacement) comes
from a generator seeded with ``(seed, epoch, index)``: the item is the same whichever
worker, process or accumulation step loads it. A test item decodes the union of its K
clips' frames in one pass. Bad videos:

- train: a video that cannot be decoded is replaced by another, drawn from the item's
  generator among the videos not quarantined, at most ``DATA.MAX_DECODE_RETRIES`` times,
  then :class:`VideoLoadError` names every file tried. Videos listed in ``quarantined``
  (found bad in earlier epochs, see ``engine/quarantine.py``) are replaced without being
  decoded again. Items carry ``failures``: the ``(path, reason)`` of each video that failed
  to serve them (:func:`collate` concatenates them over a batch).
- val and test: nothing is replaced or dropped. Items carry ``failed`` (bool) and ``reason``
  (``"path: reason"``, empty if decoded); a failed item's video is zeros of the usual shape
  (``TEST_CROP_SIZE`` square when fully convolutional) so that batches still collate.

``build_loader(cfg, split)`` wraps the dataset in a DataLoader driven by the batch samplers
of :mod:`cgnl_video.datasets.batching`.
"""

import logging
import os
from typing import AbstractSet, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Dataset, default_collate

from cgnl_video.datasets.batching import GlobalBatchSampler, Key, ShardBatchSampler, item_seed
from cgnl_video.datasets.decoders import DecodeError, build_decoder
from cgnl_video.datasets.lists import CLASSES_FILE, SPLITS, VideoRecord, list_file, read_classes, read_video_list
from cgnl_video.datasets.transforms import channels_last
from cgnl_video.datasets.views import VideoOpener, Views, build_views
from cgnl_video.decoding import memory
from cgnl_video.errors import UserError

logger = logging.getLogger(__name__)


class VideoLoadError(UserError, RuntimeError):
    """No decodable video found for an item within ``DATA.MAX_DECODE_RETRIES`` replacements."""


class VideoDataset(Dataset):
    """Videos of one list as uint8 clip views (see the module docstring).

    Args:
        records: the list's videos.
        views: what an item shows of its video (``datasets/views.py``: train, val or test views).
        opener: opens a video file, e.g. ``VideoDecoder(...).open`` (``datasets/decoders.py``:
            decoding guarded by a watchdog child process, or in-process).
        multi_view: items keep the view dimension (``V x C x T x H x W``; testing).
        max_retries: replacements per training item before :class:`VideoLoadError`.
        seed: the run's seed (items' randomness is seeded from (seed, epoch, index)).
    """

    def __init__(self, records: Sequence[VideoRecord], views: Views, opener: VideoOpener, *,
                 multi_view: bool = False, max_retries: int = 10, seed: int = 0):
        self.records, self.views, self.opener = list(records), views, opener
        self.train, self.multi_view = views.train, multi_view
        self.max_retries, self.seed = max_retries, seed
        # Indices of videos found undecodable in earlier epochs: replaced without decoding.
        # Set in the main process before each epoch; workers see it because the DataLoader
        # forks them again every epoch (see build_loader and engine/quarantine.py).
        self.quarantined: AbstractSet[int] = frozenset()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: Key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if self.train:
            return self._train_item(index, torch.Generator().manual_seed(item_seed(self.seed, epoch, index)))
        return self._eval_item(self.records[index])

    def _train_item(self, index: int, generator: torch.Generator) -> dict:
        failures: List[Tuple[str, str]] = []
        tried = {index}
        if index in self.quarantined:
            index = self._replacement(tried, generator)
        while len(failures) <= self.max_retries:
            record = self.records[index]
            try:
                video = self.views.read(self.opener, record.path, generator)[0]
            except DecodeError as err:
                logger.warning("skipping undecodable video %s: %s", err.path, err.reason)
                failures.append((err.path, err.reason))
                tried.add(index)
                index = self._replacement(tried, generator)
                continue
            return {"video": video, "label": record.label, "index": record.index, "failures": failures}
        named = "\n  ".join(f"{path}: {reason}" for path, reason in failures)
        raise VideoLoadError(
            f"no decodable video after {len(failures)} attempts (DATA.MAX_DECODE_RETRIES = "
            f"{self.max_retries}):\n  {named}"
        )

    def _replacement(self, tried: AbstractSet[int], generator: torch.Generator) -> int:
        """An index drawn from ``generator`` among the videos neither quarantined nor tried
        (by rejection: the excluded videos are few; any video when none is left)."""
        excluded = self.quarantined | tried
        while True:
            index = int(torch.randint(len(self.records), (), generator=generator))
            if index not in excluded or len(excluded) >= len(self.records):
                return index

    def _eval_item(self, record: VideoRecord) -> dict:
        try:
            video, reason = self.views.read(self.opener, record.path), ""
        except DecodeError as err:
            logger.warning("video failed: %s: %s", err.path, err.reason)
            video, reason = torch.zeros(self.views.failed_shape, dtype=torch.uint8), str(err)
        return {"video": video if self.multi_view else video[0], "label": record.label,
                "index": record.index, "failed": bool(reason), "reason": reason}


def collate(items: List[dict]) -> dict:
    """``default_collate`` of items, with training items' ``failures`` concatenated (a list of
    ``(path, reason)`` over the batch, not a tensor) and the videos stacked channels-last
    (``B x ... x C x T x H x W`` over ``B x ... x T x H x W x C`` memory, as the views are
    made: one copy of rows of pixels; the normaliser makes them contiguous float)."""
    failures = [failure for item in items for failure in item.get("failures", [])]
    batch = default_collate([{k: v for k, v in item.items() if k not in ("video", "failures")} for item in items])
    batch["video"] = channels_last(default_collate([item["video"].movedim(-4, -1) for item in items]))
    batch["failures"] = failures
    return batch


def read_records(cfg: CfgNode, split: str) -> List[VideoRecord]:
    """The records of ``split``'s list in ``DATA.PATH_TO_DATA_DIR``, checked against classes.txt."""
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    classes = read_classes(os.path.join(data_dir, CLASSES_FILE))
    path = list_file(data_dir, split)
    records = read_video_list(path, prefix=cfg.DATA.PATH_PREFIX, separator=cfg.DATA.PATH_LABEL_SEPARATOR,
                              num_classes=len(classes))
    if not records:
        raise ValueError(f"{path}: no videos listed")
    return records


def build_dataset(cfg: CfgNode, split: str, records: Optional[Sequence[VideoRecord]] = None) -> VideoDataset:
    """The ``split`` ("train", "val" or "test") dataset of ``cfg`` (``records``: instead of the list)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return VideoDataset(
        read_records(cfg, split) if records is None else records,
        build_views(cfg, split),
        build_decoder(cfg).open,
        multi_view=split == "test",
        max_retries=cfg.DATA.MAX_DECODE_RETRIES,
        seed=cfg.RNG_SEED,
    )


def _batch_sampler(cfg: CfgNode, split: str, num_items: int, world_size: int, rank: int):
    if split == "train":
        return GlobalBatchSampler(num_items, cfg.TRAIN.BATCH_SIZE, world_size, rank,
                                  cfg.TRAIN.ACCUMULATION_STEPS, cfg.RNG_SEED)
    per_process = max(1, cfg.TEST.BATCH_SIZE // world_size)
    if split == "test" and cfg.TEST.FULLY_CONVOLUTIONAL:
        per_process = 1  # whole frames of different aspect ratios do not stack
    return ShardBatchSampler(num_items, per_process, world_size, rank)


def build_loader(cfg: CfgNode, split: str, records: Optional[Sequence[VideoRecord]] = None) -> DataLoader:
    """DataLoader over ``build_dataset(cfg, split, records)`` for this process (of the torchrun
    group if any); ``records``: the list as read by the engine's preflight, else read here.

    train: micro-batches of ``TRAIN.BATCH_SIZE / (world_size x TRAIN.ACCUMULATION_STEPS)``
    from one global order per (``RNG_SEED``, epoch); val and test: every item once over
    all processes, ``TEST.BATCH_SIZE / world_size`` per batch (at least 1; 1 for fully
    convolutional tests). Call :func:`set_loader_epoch` before each epoch.

    Workers are not persistent (``persistent_workers=False``, on purpose): the DataLoader
    forks them again at each epoch's ``iter(loader)``, and that copy of the dataset is how
    the epoch's ``dataset.quarantined`` (set in the main process, ``engine/quarantine.py``)
    reaches them. Persistent workers would keep the first epoch's empty quarantine.
    """
    dataset = build_dataset(cfg, split, records)
    distributed = dist.is_available() and dist.is_initialized()
    world_size, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
    return DataLoader(
        dataset,
        batch_sampler=_batch_sampler(cfg, split, len(dataset), world_size, rank),
        num_workers=cfg.DATA_LOADER.NUM_WORKERS,
        pin_memory=cfg.DATA_LOADER.PIN_MEMORY and torch.cuda.is_available(),
        collate_fn=collate,
        worker_init_fn=memory.keep_freed_memory,  # items reuse the memory of the last ones
        persistent_workers=False,  # the quarantine reaches the workers through their fork (above)
    )


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Sets the epoch of ``loader``'s batches (and of its items' randomness)."""
    loader.batch_sampler.set_epoch(epoch)
