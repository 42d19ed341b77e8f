"""pytorchvideo's ``LabeledVideoDataset`` as a peer of our dataset, for ``tools/benchmark.py data``.

The peer decodes with pytorchvideo 0.1.5's default PyAV decoder (``decoder="pyav"``, no
audio) and samples clips in seconds: ``T x stride / fps`` long, at random for training
(``RandomClipSampler``), ``K`` evenly spaced for testing (``ConstantClipsPerVideoSampler``).
``pytorchvideo.transforms`` does not import in 0.1.5 next to our torchvision, so its Kinetics
recipe's transforms are written here with torch alone, after
``pytorchvideo/transforms/functional.py``: ``uniform_temporal_subsample`` (``T`` of the
clip's frames, equispaced), ``short_side_scale`` (bilinear ``interpolate``, the short side
to the size, the long side ``floor``-ed) and ``uniform_crop`` (left / centre / right); the
training crop and flip are a random crop and a coin flip as ``RandomCrop`` /
``RandomHorizontalFlip``. Its frames are float32 0-255 (``EncodedVideoPyAV.get_clip``).
"""

import math
import random
from typing import Dict, List, Sequence

import decord
import torch
import torch.nn.functional as F
from pytorchvideo.data import LabeledVideoDataset
from pytorchvideo.data.clip_sampling import ConstantClipsPerVideoSampler, RandomClipSampler
from torch.utils.data import SequentialSampler


def temporal_subsample(video: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``num_frames`` equispaced frames of ``C x T x H x W`` (nearest when T is shorter)."""
    indices = torch.linspace(0, video.shape[1] - 1, num_frames).clamp(0, video.shape[1] - 1).long()
    return video.index_select(1, indices)


def short_side_scale(video: torch.Tensor, size: int) -> torch.Tensor:
    """``C x T x H x W`` float32 with its short side scaled to ``size`` (bilinear)."""
    height, width = video.shape[-2:]
    if width < height:
        new_size = (int(math.floor(height / width * size)), size)
    else:
        new_size = (size, int(math.floor(width / height * size)))
    return F.interpolate(video, size=new_size, mode="bilinear", align_corners=False)


def uniform_crop(video: torch.Tensor, size: int, spatial_index: int) -> torch.Tensor:
    """The left / centre / right (0 / 1 / 2) ``size`` square, top / centre / bottom when taller."""
    height, width = video.shape[-2:]
    top, left = int(math.ceil((height - size) / 2)), int(math.ceil((width - size) / 2))
    if height > width:
        top = {0: 0, 1: top, 2: height - size}[spatial_index]
    else:
        left = {0: 0, 1: left, 2: width - size}[spatial_index]
    return video[..., top:top + size, left:left + size]


class TrainTransform:
    """The Kinetics training recipe on the sample's ``video``: subsample, random short-side
    scale in ``jitter``, random ``crop``, random horizontal flip."""

    def __init__(self, num_frames: int, jitter: Sequence[int], crop: int):
        self.num_frames, self.jitter, self.crop = num_frames, jitter, crop

    def __call__(self, sample: Dict) -> Dict:
        video = temporal_subsample(sample["video"], self.num_frames)
        video = short_side_scale(video, random.randint(self.jitter[0], self.jitter[1]))
        top = random.randint(0, video.shape[-2] - self.crop)
        left = random.randint(0, video.shape[-1] - self.crop)
        video = video[..., top:top + self.crop, left:left + self.crop]
        sample["video"] = video.flip(-1) if random.random() < 0.5 else video
        return sample


class TestTransform:
    """The testing recipe on the sample's ``video``: subsample, short side to ``crop``, the
    ``num_crops`` uniform crops stacked (``S x C x T x crop x crop``)."""

    def __init__(self, num_frames: int, crop: int, num_crops: int):
        self.num_frames, self.crop, self.num_crops = num_frames, crop, num_crops

    def __call__(self, sample: Dict) -> Dict:
        video = short_side_scale(temporal_subsample(sample["video"], self.num_frames), self.crop)
        indices = [1] if self.num_crops == 1 else range(self.num_crops)
        sample["video"] = torch.stack([uniform_crop(video, self.crop, index) for index in indices])
        return sample


def clip_duration(path: str, cfg) -> float:
    """Seconds of ``DATA.NUM_FRAMES`` frames at ``DATA.SAMPLING_RATE`` in ``path``."""
    return cfg.DATA.NUM_FRAMES * cfg.DATA.SAMPLING_RATE / decord.VideoReader(path).get_avg_fps()


def _dataset(path: str, sampler, transform) -> LabeledVideoDataset:
    return LabeledVideoDataset([(path, {"label": 0})], sampler, video_sampler=SequentialSampler,
                               transform=transform, decode_audio=False, decoder="pyav")


def train_clips(paths: Sequence[str], cfg):
    """A call: one random training clip per video through ``LabeledVideoDataset``."""
    data = cfg.DATA
    transform = TrainTransform(data.NUM_FRAMES, data.TRAIN_JITTER_SCALES, data.TRAIN_CROP_SIZE)
    datasets = [_dataset(p, RandomClipSampler(clip_duration(p, cfg)), transform) for p in paths]

    def call() -> List[torch.Tensor]:
        return [next(iter(dataset))["video"] for dataset in datasets]

    return call


def test_items(paths: Sequence[str], cfg):
    """A call: per video, its ``K`` clips x ``S`` crops (one test item) through ``LabeledVideoDataset``."""
    clips, crops = cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS
    transform = TestTransform(cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, crops)
    datasets = [_dataset(p, ConstantClipsPerVideoSampler(clip_duration(p, cfg), clips), transform)
                for p in paths]

    def call() -> List[torch.Tensor]:
        items = []
        for dataset in datasets:
            samples = iter(dataset)
            items.append(torch.cat([next(samples)["video"] for _ in range(clips)]))
        return items

    return call
