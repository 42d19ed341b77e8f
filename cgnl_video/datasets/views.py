"""A video's views: its clips and crops, made from one open video.

    views = build_views(cfg, "test")                       # "train", "val" or "test"
    with decoder.open(path, short_side=views.short_side) as video:   # any OpenVideo
        tensor = views(video)                              # uint8 V x C x T x H x W
    tensor = views.read(decoder.open, path)                # the same, opening the file

- train: one clip at a random start (:func:`~cgnl_video.datasets.sampling.random_clip`),
  scale jitter, crop and flip (:class:`~cgnl_video.datasets.transforms.TrainTransform`):
  uint8 ``1 x C x T x crop x crop``. Every random choice is drawn from the ``generator``
  the caller passes, the item's own, seeded with ``(seed, epoch, index)``
  (:func:`~cgnl_video.datasets.batching.item_seed`): the views are a function of those.
- val: the centre clip, centre crop: ``1 x C x T x size x size``.
- test: ``K = TEST.NUM_ENSEMBLE_VIEWS`` clips spread uniformly over the video times
  ``S = TEST.NUM_SPATIAL_CROPS`` crops (1 whole frame with ``TEST.FULLY_CONVOLUTIONAL``):
  ``V = K x S`` views ``V x C x T x h x w``, clip-major: view ``v`` is clip ``v // S``,
  crop ``v % S`` (:class:`~cgnl_video.datasets.transforms.MultiViewTransform`).

The union of the clips' frames is read from the video in one ``get``. Views stay uint8 until
the device (:mod:`cgnl_video.engine.normalize`). The Dataset, the Recognizer (predict,
features, timeline windows) and the attention maps all make their views here.
"""

from typing import Callable, List, Optional, Union

import numpy as np
import torch
from fvcore.common.config import CfgNode

from cgnl_video.datasets import sampling
from cgnl_video.datasets.transforms import MultiViewTransform, TrainTransform, build_transform
from cgnl_video.decoding.video import OpenVideo

# Opens a video: (path, short_side=None or int) -> an OpenVideo (e.g. ``VideoDecoder.open``).
VideoOpener = Callable[..., OpenVideo]


class Views:
    """The views of one split (see the module docstring).

    Args:
        transform: ``TrainTransform`` (train) or ``MultiViewTransform`` (``datasets/transforms.py``).
        num_frames, sampling_rate: T frames every ``sampling_rate`` frames (of a
            ``target_fps`` video when ``target_fps > 0``, see ``sampling.frame_stride``).
        num_clips: K clips (uniformly spread) unless ``train``.
        train: one random clip drawn from the caller's generator.
    """

    def __init__(self, transform: Union[TrainTransform, MultiViewTransform], *, num_frames: int, sampling_rate: int,
                 target_fps: float = 0.0, num_clips: int = 1, train: bool = False):
        self.transform, self.train = transform, train
        self.num_frames, self.sampling_rate, self.target_fps = num_frames, sampling_rate, target_fps
        self.num_clips = 1 if train else num_clips

    @property
    def short_side(self) -> int:
        """The largest short side the views are resized to: open videos scaled down to it."""
        return self.transform.short_side

    @property
    def failed_shape(self) -> tuple:
        """``V x C x T x H x W`` of an evaluation video's views (square ones): the zeros that
        stand for a video that failed, so that batches still collate."""
        size = self.short_side
        return (self.num_clips * self.transform.num_crops, 3, self.num_frames, size, size)

    def clips(self, video: OpenVideo, generator: Optional[torch.Generator] = None) -> List[List[int]]:
        """Frame indices of the clips of ``video``: K lists of T (train: 1, from ``generator``)."""
        stride = sampling.frame_stride(self.sampling_rate, video.fps, self.target_fps)
        if self.train:
            if generator is None:
                raise ValueError("training views draw their clip and crops from the item's generator")
            return [sampling.random_clip(video.num_frames, self.num_frames, stride, generator)]
        return sampling.uniform_clips(video.num_frames, self.num_frames, stride, self.num_clips)

    def __call__(self, video: OpenVideo, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The views of an open ``video``, the union of its clips' frames read once: uint8
        ``V x C x T x H x W``; DecodeError if the frames cannot be decoded. A training clip's
        crop is drawn before the read, which then brings that region of the frames only."""
        clips = np.asarray(self.clips(video, generator))
        union, positions = np.unique(clips, return_inverse=True)
        positions = torch.from_numpy(positions.reshape(clips.shape))
        if not self.train:
            return self.transform(torch.from_numpy(video.get(union)), positions)  # frames: N x H x W x 3
        crop = self.transform.draw(video.size, generator)
        frames = torch.from_numpy(video.get(union, region=crop.region))
        in_order = len(union) == clips.shape[1]  # a clip of distinct frames: the union, in order
        return self.transform.apply(frames if in_order else frames[positions[0]], crop)

    def read(self, opener: VideoOpener, path: str, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The views of the video at ``path``, opened with ``opener`` scaled to :attr:`short_side`."""
        with opener(path, short_side=self.short_side) as video:
            return self(video, generator)


def build_views(cfg: CfgNode, split: str) -> Views:
    """The views of ``split`` ("train", "val" or "test") configured from ``cfg.DATA`` / ``cfg.TEST``."""
    data = cfg.DATA
    return Views(build_transform(cfg, split), num_frames=data.NUM_FRAMES, sampling_rate=data.SAMPLING_RATE,
                 target_fps=data.TARGET_FPS, num_clips=cfg.TEST.NUM_ENSEMBLE_VIEWS if split == "test" else 1,
                 train=split == "train")
