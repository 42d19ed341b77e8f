"""The video Dataset and its DataLoader: list file -> records -> clip indices -> frames -> views.

``build_dataset(cfg, split)`` reads ``{split}.csv`` and ``classes.txt`` from
``DATA.PATH_TO_DATA_DIR`` (a malformed line raises ``ListFormatError`` ``file:line: reason``)
and returns a :class:`VideoDataset` whose items are dicts:

- ``video``: float ``C x T x H x W`` (train: random clip, scale jitter, crop, flip; val: the
  centre clip, centre crop) or, for test, ``V x C x T x H x W`` with ``V = K x S``
  (``K = TEST.NUM_ENSEMBLE_VIEWS`` clips, ``S = TEST.NUM_SPATIAL_CROPS`` crops, or 1 with
  ``TEST.FULLY_CONVOLUTIONAL``), clip-major: view ``v`` is clip ``v // S``, crop ``v % S``;
- ``label`` (int) and ``index`` (int, the video's 0-based line in the list).

A test item decodes the union of its K clips' frames in one pass. Bad videos:

- train/val: a video that cannot be decoded is logged (path and reason) and replaced by
  another random video, at most ``DATA.MAX_DECODE_RETRIES`` times per item, then
  :class:`VideoLoadError` names every file tried. Items carry ``skipped``, the number of
  videos replaced to serve them (summed over a batch, it counts failures across workers).
- test: nothing is replaced or dropped. Items carry ``failed`` (bool) and ``reason``
  (``"path: reason"``, empty if decoded); a failed item's video is zeros of the usual shape
  (``TEST_CROP_SIZE`` square when fully convolutional) so that batches still collate.

``build_loader(cfg, split)`` wraps the dataset in a reproducible DataLoader.
"""

import logging
import os
import random
from typing import Dict, List

import numpy as np
import torch
import torch.distributed as dist
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from cgnl_video.datasets import sampling
from cgnl_video.datasets.decoders import DecodeError, build_decoder
from cgnl_video.datasets.lists import CLASSES_FILE, SPLITS, VideoRecord, list_file, read_classes, read_video_list
from cgnl_video.datasets.transforms import build_transform

logger = logging.getLogger(__name__)

class VideoLoadError(RuntimeError):
    """No decodable video found for an item within ``DATA.MAX_DECODE_RETRIES`` replacements."""


class VideoDataset(Dataset):
    """Videos of one split of a list file, as clip views (see the module docstring)."""

    def __init__(self, records: List[VideoRecord], split: str, cfg: CfgNode):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        self.records, self.split = records, split
        self.transform = build_transform(cfg, split)
        # Videos with a larger short side are decoded straight to this one (None: never).
        self.short_side = self.transform.short_side
        self.num_samples, self.stride = cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE
        self.num_clips = cfg.TEST.NUM_ENSEMBLE_VIEWS if split == "test" else 1
        self.decoder = build_decoder(cfg)
        self.max_retries = cfg.DATA.MAX_DECODE_RETRIES
        self.crop_size = cfg.DATA.TEST_CROP_SIZE
        # Videos found undecodable by this process (path -> reason), never drawn as replacements.
        self.failures: Dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.records)

    def _clips(self, num_frames: int) -> List[List[int]]:
        if self.split == "train":
            return [sampling.random_clip(num_frames, self.num_samples, self.stride)]
        return sampling.uniform_clips(num_frames, self.num_samples, self.stride, self.num_clips)

    def views(self, record: VideoRecord) -> torch.Tensor:
        """All views of ``record``'s video: float ``V x C x T x H x W``; raises DecodeError."""
        with self.decoder.open(record.path, self.short_side) as video:
            clips = np.asarray(self._clips(video.num_frames))
            union, positions = np.unique(clips, return_inverse=True)
            frames = video.get(union)
        return self.transform(frames, torch.from_numpy(positions.reshape(clips.shape)))

    def __getitem__(self, index: int) -> dict:
        if self.split == "test":
            return self._test_item(self.records[index])
        return self._train_item(index)

    def _train_item(self, index: int) -> dict:
        errors: List[DecodeError] = []
        while len(errors) <= self.max_retries:
            record = self.records[index]
            try:
                video = self.views(record)[0]
            except DecodeError as err:
                logger.warning("skipping undecodable video %s: %s", err.path, err.reason)
                self.failures[err.path] = err.reason
                errors.append(err)
                index = self._replacement()
                continue
            return {"video": video, "label": record.label, "index": record.index, "skipped": len(errors)}
        tried = "\n  ".join(str(err) for err in errors)
        raise VideoLoadError(
            f"no decodable video after {len(errors)} attempts (DATA.MAX_DECODE_RETRIES = "
            f"{self.max_retries}):\n  {tried}"
        )

    def _replacement(self) -> int:
        """A random index among the videos not known to be undecodable (any if none is left)."""
        good = [i for i, r in enumerate(self.records) if r.path not in self.failures]
        return random.choice(good or range(len(self.records)))

    def _test_item(self, record: VideoRecord) -> dict:
        try:
            video, reason = self.views(record), ""
        except DecodeError as err:
            logger.warning("test video failed: %s: %s", err.path, err.reason)
            video, reason = torch.zeros(self.test_shape), str(err)
        return {"video": video, "label": record.label, "index": record.index, "failed": bool(reason), "reason": reason}

    @property
    def test_shape(self) -> tuple:
        """Shape of a test item's video, ``V x C x T x H x W`` (square views)."""
        views = self.num_clips * self.transform.num_crops
        return (views, 3, self.num_samples, self.crop_size, self.crop_size)


def build_dataset(cfg: CfgNode, split: str) -> VideoDataset:
    """The ``split`` ("train", "val" or "test") dataset of ``cfg.DATA.PATH_TO_DATA_DIR``."""
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    list_path = list_file(data_dir, split)
    classes = read_classes(os.path.join(data_dir, CLASSES_FILE))
    records = read_video_list(
        list_path, prefix=cfg.DATA.PATH_PREFIX, separator=cfg.DATA.PATH_LABEL_SEPARATOR, num_classes=len(classes)
    )
    if not records:
        raise ValueError(f"{list_path}: no videos listed")
    return VideoDataset(records, split, cfg)


def _seed_worker(worker_id: int) -> None:
    """Seeds ``random`` and NumPy in a worker from its torch seed (base seed + worker id)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _batch_size(cfg: CfgNode, split: str) -> int:
    """Videos per batch; 1 for fully convolutional tests, whose views differ in size per video."""
    if split != "test":
        return cfg.TRAIN.BATCH_SIZE
    return 1 if cfg.TEST.FULLY_CONVOLUTIONAL else cfg.TEST.BATCH_SIZE


def build_loader(cfg: CfgNode, split: str) -> DataLoader:
    """DataLoader over ``build_dataset(cfg, split)``.

    train: ``TRAIN.BATCH_SIZE``, shuffled, last partial batch dropped; val:
    ``TRAIN.BATCH_SIZE``; test: ``TEST.BATCH_SIZE`` (1 with ``TEST.FULLY_CONVOLUTIONAL``: whole
    frames of different aspect ratios do not stack) (both in list order, all kept).
    Under torchrun the sets are split across processes: train and val by a
    ``DistributedSampler`` (disjoint shards), test video ``i`` to process ``i % world_size``. Reproducible for a fixed ``RNG_SEED``: call
    :func:`set_loader_epoch` before each epoch; the shuffle and the workers' base seed then
    depend only on (``RNG_SEED``, epoch), and each worker seeds torch, ``random`` and NumPy
    from its own seed. With ``DATA_LOADER.NUM_WORKERS = 0`` the augmentations draw from the
    main process's generators, which the caller seeds.
    """
    train = split == "train"
    dataset = build_dataset(cfg, split)
    sampler = None
    if dist.is_available() and dist.is_initialized():
        if split == "test":  # every video exactly once over all processes (no padding)
            sampler = list(range(dist.get_rank(), len(dataset), dist.get_world_size()))
        else:
            sampler = DistributedSampler(dataset, shuffle=train, seed=cfg.RNG_SEED, drop_last=train)
    generator = torch.Generator()
    generator.manual_seed(cfg.RNG_SEED)
    loader = DataLoader(
        dataset,
        batch_size=_batch_size(cfg, split),
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train,
        num_workers=cfg.DATA_LOADER.NUM_WORKERS,
        pin_memory=cfg.DATA_LOADER.PIN_MEMORY and torch.cuda.is_available(),
        worker_init_fn=_seed_worker,
        generator=generator,
    )
    loader.seed = cfg.RNG_SEED
    return loader


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Makes ``loader``'s order and worker seeds for ``epoch`` a function of (seed, epoch) only,
    so that a run resumed at ``epoch`` sees the same data as an uninterrupted one."""
    loader.generator.manual_seed(loader.seed * 100003 + epoch)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
