"""Spatial transforms from decoded frames to normalised clip views (torchvision.transforms.v2).

Both transforms take the decoded frames of an item, uint8 ``N x H x W x 3`` (RGB), and
``clips``, a ``K x T`` integer tensor of positions into those frames (one row per clip),
and return float views ``V x C x T x h x w`` (a transposed view of ``V x T x C x h x w``
memory; collating copies it anyway), normalised as ``(x / 255 - MEAN) / STD``:

- :class:`TrainTransform`: per clip, short side resized to a random size in
  ``DATA.TRAIN_JITTER_SCALES``, a random ``DATA.TRAIN_CROP_SIZE`` square crop, a random
  horizontal flip (with ``DATA.RANDOM_FLIP``); ``V = K``.
- :class:`MultiViewTransform`: short side resized to ``DATA.TEST_CROP_SIZE`` then ``S`` square
  crops of that size spaced evenly along the long side (``S = 1``: the centre; ``S = 3``:
  both ends and the centre), or with ``TEST.FULLY_CONVOLUTIONAL`` the whole resized frame
  (``S = 1``). ``V = K x S``, clip-major: view ``v`` is clip ``v // S``, crop ``v % S``.
  The resize runs once on the ``N`` frames shared by all views.

:func:`build_transform` picks them by split: train -> TrainTransform; val -> one centre
crop (``S = 1``, never fully convolutional, so val batches stack); test -> K x S views.
Each has ``short_side``, the largest short side it resizes to, for decode-time scaling.
"""

from typing import List, Sequence, Union

import torch
from fvcore.common.config import CfgNode
from torchvision import tv_tensors
from torchvision.transforms import v2


def _video(frames: torch.Tensor) -> tv_tensors.Video:
    """uint8 ``N x H x W x 3`` -> ``N x 3 x H x W`` video (a view, no copy)."""
    return tv_tensors.Video(frames.permute(0, 3, 1, 2))


def _normalize(mean: Sequence[float], std: Sequence[float]) -> v2.Transform:
    """uint8 -> float ``(x / 255 - mean) / std``; in place on the fresh float copy of the uint8 input."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std), inplace=True)])


def check_jitter_scales(jitter_scales: Sequence[int], crop_size: int) -> None:
    """Raises ValueError unless the scales are ``[min, max]``, ascending, not below ``crop_size``."""
    if len(jitter_scales) != 2 or not crop_size <= jitter_scales[0] <= jitter_scales[1]:
        raise ValueError(
            f"DATA.TRAIN_JITTER_SCALES={list(jitter_scales)}: expected [min, max], ascending, "
            f"min >= DATA.TRAIN_CROP_SIZE={crop_size}"
        )


class TrainTransform:
    """Scale jitter, random crop, optional horizontal flip, normalisation; one view per clip.

    ``short_side``: the largest short side the transform resizes to (decoders may deliver
    frames already scaled down to it).
    """

    def __init__(self, jitter_scales: Sequence[int], crop_size: int, mean: Sequence[float], std: Sequence[float],
                 flip: bool = True):
        check_jitter_scales(jitter_scales, crop_size)
        low, high = jitter_scales
        self.short_side = high
        self._geometry = v2.Compose([v2.RandomResize(low, high + 1), v2.RandomCrop(crop_size)])
        flips = [v2.RandomHorizontalFlip()] if flip else []
        self._flip_normalize = v2.Compose([*flips, _normalize(mean, std)])

    def _view(self, clip: torch.Tensor) -> torch.Tensor:
        """uint8 ``T x H x W x 3`` -> float ``C x T x crop x crop``."""
        # The resize returns channels-last memory, on which flips and float ops are slow.
        crop = self._geometry(_video(clip)).contiguous()
        return self._flip_normalize(crop).transpose(0, 1)

    def __call__(self, frames: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
        """uint8 ``N x H x W x 3``, positions ``K x T`` -> float ``K x C x T x crop x crop``."""
        return torch.stack([self._view(frames[clip]) for clip in clips]).as_subclass(torch.Tensor)


def crop_offsets(long_side: int, crop_size: int, num_crops: int) -> List[int]:
    """Start of each of ``num_crops`` crops evenly spaced along a side (1: the centre)."""
    slack = long_side - crop_size
    if num_crops == 1:
        return [slack // 2]
    return [slack * i // (num_crops - 1) for i in range(num_crops)]


class MultiViewTransform:
    """Short side to ``crop_size``, then ``num_crops`` square crops (or the whole frame)."""

    def __init__(
        self, crop_size: int, num_crops: int, fully_convolutional: bool, mean: Sequence[float], std: Sequence[float]
    ):
        if num_crops < 1:
            raise ValueError(f"TEST.NUM_SPATIAL_CROPS must be >= 1, got {num_crops}")
        self.short_side = crop_size
        self.num_crops = 1 if fully_convolutional else num_crops
        self._crop = not fully_convolutional
        self._resize = v2.Resize(crop_size)
        self._normalize = _normalize(mean, std)

    def _crops(self, video: torch.Tensor) -> List[torch.Tensor]:
        """Square crops of ``... x H x W`` along its long side, as views."""
        height, width = video.shape[-2:]
        size = min(height, width)
        offsets = crop_offsets(max(height, width), size, self.num_crops)
        if width >= height:
            return [video[..., :, x : x + size] for x in offsets]
        return [video[..., y : y + size, :] for y in offsets]

    def __call__(self, frames: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
        """uint8 ``N x H x W x 3``, positions ``K x T`` -> float ``K*S x C x T x h x w``."""
        video = self._resize(_video(frames)).as_subclass(torch.Tensor)
        per_clip = video[clips]  # K x T x C x h x w
        views = self._crops(per_clip) if self._crop else [per_clip]
        # Crops are gathered in uint8; only the final views are converted to float.
        return self._normalize(torch.stack(views, dim=1).flatten(0, 1)).transpose(1, 2)


def build_transform(cfg: CfgNode, split: str) -> Union[TrainTransform, MultiViewTransform]:
    """The transform of ``split`` ("train", "val" or "test") configured from ``cfg.DATA``/``cfg.TEST``."""
    data = cfg.DATA
    if split == "train":
        return TrainTransform(data.TRAIN_JITTER_SCALES, data.TRAIN_CROP_SIZE, data.MEAN, data.STD, data.RANDOM_FLIP)
    if split == "val":
        return MultiViewTransform(data.TEST_CROP_SIZE, 1, False, data.MEAN, data.STD)
    if split == "test":
        test = cfg.TEST
        return MultiViewTransform(
            data.TEST_CROP_SIZE, test.NUM_SPATIAL_CROPS, test.FULLY_CONVOLUTIONAL, data.MEAN, data.STD
        )
    raise ValueError(f"unknown split {split!r}; expected train, val or test")
