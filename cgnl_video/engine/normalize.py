"""The one place where clips become model input: uint8 on the host -> normalised float on the device.

Datasets return uint8 views (``... x C x T x H x W``, 4x smaller than float32 in the loader,
its workers and the host-to-device copy), laid out channels-last in memory as they are cut
from decoded frames (``datasets/transforms.py``); training, validation, testing and
prediction pass them through :class:`InputNormalizer`, which copies them to the device and
there, in one pass, converts them to contiguous float32, then applies
``(x / 255 - DATA.MEAN) / DATA.STD`` in place.
"""

from typing import Sequence

import torch
from fvcore.common.config import CfgNode


class InputNormalizer:
    """uint8 ``... x C x T x H x W`` (C = 3, RGB) -> float32 on ``device``, normalised per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device):
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device)
        std_t = torch.tensor(std, dtype=torch.float32, device=device)
        # (x / 255 - mean) / std == x * scale - shift, broadcast over C (dim -4).
        self.scale = (1.0 / (255.0 * std_t)).view(-1, 1, 1, 1)
        self.shift = (mean_t / std_t).view(-1, 1, 1, 1)
        self.device = device

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        if video.dtype != torch.uint8:
            raise TypeError(f"expected uint8 clips (0-255), got {video.dtype}")
        on_device = video.to(self.device, non_blocking=True)
        out = torch.empty(video.shape, dtype=torch.float32, device=self.device)  # contiguous, whatever the layout
        return out.copy_(on_device).mul_(self.scale).sub_(self.shift)


def build_normalizer(cfg: CfgNode, device: torch.device) -> InputNormalizer:
    """The normaliser of ``DATA.MEAN`` / ``DATA.STD`` on ``device``."""
    return InputNormalizer(cfg.DATA.MEAN, cfg.DATA.STD, device)
