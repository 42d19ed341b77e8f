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

from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from fvcore.common.config import CfgNode
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from cgnl_video.config.validation import check_jitter_scales
from cgnl_video.decoding.video import Region


def _video(frames: torch.Tensor) -> tv_tensors.Video:
    """uint8 ``N x H x W x 3`` -> ``N x 3 x H x W`` video (a view, no copy)."""
    return tv_tensors.Video(frames.permute(0, 3, 1, 2))


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """An integer uniform in ``[low, high]`` from ``generator``."""
    return low + int(torch.randint(high - low + 1, (), generator=generator))


def resized_size(height: int, width: int, short_side: int) -> Tuple[int, int]:
    """(height, width) of a frame whose short side is resized to ``short_side`` (as
    torchvision's ``resize(frame, [short_side])``: the long side rounded down)."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


class TrainCrop(NamedTuple):
    """A training clip's spatial choices: ``region`` (top, left, height, width) of the decoded
    frames that becomes the square crop, and whether the crop is flipped."""

    region: Region
    flip: bool


class TrainTransform:
    """Scale jitter, random crop, optional horizontal flip; one uint8 view per clip.

    The crop is taken where it lies in the frames resized to the drawn scale, but cut from
    the decoded frames first and resized alone (``resized_crop``): the same field of view
    and far fewer pixels resized; the decoder may deliver that region only
    (:meth:`draw`, then :meth:`apply`). ``short_side``: the largest short side the
    transform resizes to (decoders may deliver frames already scaled down to it).
    """

    def __init__(self, jitter_scales: Sequence[int], crop_size: int, flip: bool = True):
        check_jitter_scales(jitter_scales, crop_size)
        low, high = jitter_scales
        self.scales, self.crop_size, self.flip = (low, high), crop_size, flip
        self.short_side = high

    def draw(self, size: Tuple[int, int], generator: torch.Generator) -> TrainCrop:
        """The scale, crop position and flip of one clip of frames of ``size`` (width, height),
        drawn from ``generator`` in that order."""
        width, height = size
        resized_height, resized_width = resized_size(height, width, _randint(*self.scales, generator))
        crop = self.crop_size
        top, left = _randint(0, resized_height - crop, generator), _randint(0, resized_width - crop, generator)
        flip = self.flip and bool(_randint(0, 1, generator))
        scale_y, scale_x = height / resized_height, width / resized_width
        y, x = min(round(top * scale_y), height - 1), min(round(left * scale_x), width - 1)
        region = (y, x, max(1, min(round(crop * scale_y), height - y)), max(1, min(round(crop * scale_x), width - x)))
        return TrainCrop(region, flip)

    def apply(self, frames: torch.Tensor, crop: TrainCrop) -> torch.Tensor:
        """uint8 ``T x h x w x 3`` (a clip's frames, cut to ``crop.region``) -> uint8
        ``1 x C x T x crop x crop``."""
        size = self.crop_size
        video = F.resize(_video(frames), [size, size], antialias=True)
        if crop.flip:
            video = F.horizontal_flip(video)
        return video.as_subclass(torch.Tensor).transpose(0, 1).unsqueeze(0)

    def __call__(self, frames: torch.Tensor, clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 ``N x H x W x 3``, positions ``K x T`` -> uint8 ``K x C x T x crop x crop``."""
        size = (frames.shape[2], frames.shape[1])
        views = []
        for clip in clips:
            crop = self.draw(size, generator)
            top, left, height, width = crop.region
            views.append(self.apply(frames[clip, top:top + height, left:left + width], crop))
        return torch.cat(views)


def crop_offsets(long_side: int, crop_size: int, num_crops: int) -> List[int]:
    """Start of each of ``num_crops`` crops evenly spaced along a side (1: the centre)."""
    slack = long_side - crop_size
    if num_crops == 1:
        return [slack // 2]
    return [slack * i // (num_crops - 1) for i in range(num_crops)]


def channels_last(views: torch.Tensor) -> torch.Tensor:
    """uint8 ``... x T x H x W x C`` memory seen as ``... x C x T x H x W`` (a view): how
    views are laid out until :class:`~cgnl_video.engine.normalize.InputNormalizer` makes
    them contiguous float on the device."""
    return views.movedim(-1, -4)


class MultiViewTransform:
    """Short side to ``crop_size``, then ``num_crops`` square crops (or the whole frame)."""

    def __init__(self, crop_size: int, num_crops: int, fully_convolutional: bool):
        if num_crops < 1:
            raise ValueError(f"TEST.NUM_SPATIAL_CROPS must be >= 1, got {num_crops}")
        self.short_side = crop_size
        self.num_crops = 1 if fully_convolutional else num_crops
        self._crop = not fully_convolutional

    def _crops(self, height: int, width: int) -> List[Tuple[slice, slice]]:
        """(rows, columns) of each square crop along the long side (the whole frame if not cropping)."""
        if not self._crop:
            return [(slice(None), slice(None))]
        size = min(height, width)
        offsets = crop_offsets(max(height, width), size, self.num_crops)
        if width >= height:
            return [(slice(None), slice(x, x + size)) for x in offsets]
        return [(slice(y, y + size), slice(None)) for y in offsets]

    def __call__(self, frames: torch.Tensor, clips: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """uint8 ``N x H x W x 3``, positions ``K x T`` -> uint8 ``K*S x C x T x h x w``, laid
        out channels-last (:func:`channels_last`): each view is one copy of rows of pixels.

        Deterministic (``generator`` is accepted for a uniform interface and unused).
        """
        resized = F.resize(_video(frames), [self.short_side], antialias=True).as_subclass(torch.Tensor)
        source = resized.permute(0, 2, 3, 1)  # N x h x W x 3 (a view where resize kept the layout)
        crops = self._crops(*source.shape[1:3])
        first = source[:1, crops[0][0], crops[0][1]]
        out = torch.empty((len(clips), len(crops), clips.shape[1], *first.shape[1:]), dtype=torch.uint8)
        for k, clip in enumerate(clips):
            for s, (rows, columns) in enumerate(crops):
                torch.index_select(source[:, rows, columns], 0, clip, out=out[k, s])
        return channels_last(out.flatten(0, 1))


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
