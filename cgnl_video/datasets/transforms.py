"""Spatial transforms from decoded frames to uint8 clip views (torchvision.transforms.v2).

Both transforms take the decoded frames of an item, uint8 ``N x H x W x 3`` (RGB), and
``clips``, a ``K x T`` integer tensor of positions into those frames (one row per clip),
and return **uint8** views ``V x C x T x h x w``. Views stay uint8 until the device, where
:class:`cgnl_video.engine.normalize.InputNormalizer` makes them float and normalises them
(``(x / 255 - MEAN) / STD``) in one place for training, testing and prediction:

- :class:`TrainTransform`: per clip, short side resized to a random size in
  ``DATA.TRAIN_JITTER_SCALES``, a random ``DATA.TRAIN_CROP_SIZE`` square crop, a random
  horizontal flip (with ``DATA.RANDOM_FLIP``); ``V = K``. Every random choice is drawn from
  the ``generator`` the caller passes (the item's own), never from a global generator.
- :class:`MultiViewTransform`: short side resized to ``DATA.TEST_CROP_SIZE`` then ``S`` square
  crops of that size spaced evenly along the long side (``S = 1``: the centre; ``S = 3``:
  both ends and the centre), or with ``TEST.FULLY_CONVOLUTIONAL`` the whole resized frame
  (``S = 1``). ``V = K x S``, clip-major: view ``v`` is clip ``v // S``, crop ``v % S``.
  The resize runs once on the ``N`` frames shared by all views.

:func:`build_transform` picks them by split: train -> TrainTransform; val -> one centre
crop (``S = 1``, never fully convolutional, so val batches stack); test -> K x S views.
Each has ``short_side``, the largest short side it resizes to, for decode-time scaling.
"""

from typing import List, Optional, Sequence, Union

import torch
from fvcore.common.config import CfgNode
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from cgnl_video.config.validation import check_jitter_scales


def _video(frames: torch.Tensor) -> tv_tensors.Video:
    """uint8 ``N x H x W x 3`` -> ``N x 3 x H x W`` video (a view, no copy)."""
    return tv_tensors.Video(frames.permute(0, 3, 1, 2))


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """An integer uniform in ``[low, high]`` from ``generator``."""
    return low + int(torch.randint(high - low + 1, (), generator=generator))


class TrainTransform:
    """Scale jitter, random crop, optional horizontal flip; one uint8 view per clip.

    ``short_side``: the largest short side the transform resizes to (decoders may deliver
    frames already scaled down to it).
    """

    def __init__(self, jitter_scales: Sequence[int], crop_size: int, flip: bool = True):
        check_jitter_scales(jitter_scales, crop_size)
        low, high = jitter_scales
        self.scales, self.crop_size, self.flip = (low, high), crop_size, flip
        self.short_side = high

    def _view(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 ``T x H x W x 3`` -> uint8 ``C x T x crop x crop``."""
        video = F.resize(_video(clip), [_randint(*self.scales, generator)], antialias=True)
        height, width = video.shape[-2:]
        size = self.crop_size
        top, left = _randint(0, height - size, generator), _randint(0, width - size, generator)
        video = F.crop(video, top, left, size, size)
        if self.flip and _randint(0, 1, generator):
            video = F.horizontal_flip(video)
        return video.as_subclass(torch.Tensor).transpose(0, 1)

    def __call__(self, frames: torch.Tensor, clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 ``N x H x W x 3``, positions ``K x T`` -> uint8 ``K x C x T x crop x crop``."""
        return torch.stack([self._view(frames[clip], generator) for clip in clips])


def crop_offsets(long_side: int, crop_size: int, num_crops: int) -> List[int]:
    """Start of each of ``num_crops`` crops evenly spaced along a side (1: the centre)."""
    slack = long_side - crop_size
    if num_crops == 1:
        return [slack // 2]
    return [slack * i // (num_crops - 1) for i in range(num_crops)]


class MultiViewTransform:
    """Short side to ``crop_size``, then ``num_crops`` square crops (or the whole frame)."""

    def __init__(self, crop_size: int, num_crops: int, fully_convolutional: bool):
        if num_crops < 1:
            raise ValueError(f"TEST.NUM_SPATIAL_CROPS must be >= 1, got {num_crops}")
        self.short_side = crop_size
        self.num_crops = 1 if fully_convolutional else num_crops
        self._crop = not fully_convolutional

    def _crops(self, video: torch.Tensor) -> List[torch.Tensor]:
        """Square crops of ``... x H x W`` along its long side, as views."""
        height, width = video.shape[-2:]
        size = min(height, width)
        offsets = crop_offsets(max(height, width), size, self.num_crops)
        if width >= height:
            return [video[..., :, x : x + size] for x in offsets]
        return [video[..., y : y + size, :] for y in offsets]

    def __call__(self, frames: torch.Tensor, clips: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """uint8 ``N x H x W x 3``, positions ``K x T`` -> uint8 ``K*S x C x T x h x w``.

        Deterministic (``generator`` is accepted for a uniform interface and unused).
        """
        video = F.resize(_video(frames), [self.short_side], antialias=True).as_subclass(torch.Tensor)
        per_clip = video[clips]  # K x T x C x h x w
        views = self._crops(per_clip) if self._crop else [per_clip]
        return torch.stack(views, dim=1).flatten(0, 1).transpose(1, 2)


def build_transform(cfg: CfgNode, split: str) -> Union[TrainTransform, MultiViewTransform]:
    """The transform of ``split`` ("train", "val" or "test") configured from ``cfg.DATA``/``cfg.TEST``."""
    data = cfg.DATA
    if split == "train":
        return TrainTransform(data.TRAIN_JITTER_SCALES, data.TRAIN_CROP_SIZE, data.RANDOM_FLIP)
    if split == "val":
        return MultiViewTransform(data.TEST_CROP_SIZE, 1, False)
    if split == "test":
        return MultiViewTransform(data.TEST_CROP_SIZE, cfg.TEST.NUM_SPATIAL_CROPS, cfg.TEST.FULLY_CONVOLUTIONAL)
    raise ValueError(f"unknown split {split!r}; expected train, val or test")
