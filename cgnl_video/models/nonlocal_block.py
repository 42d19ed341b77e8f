"""The non-local block (Wang et al., CVPR 2018) in 3D: the baseline CGNL is compared with.

With theta, phi, g the 1x1x1 embeddings flattened over T x H x W (N positions
for theta, N' for phi and g): theta is computed from the input x, phi and g from
``maxpool(x)`` when subsampling (N' < N; the non-local paper's code and PySlowFast's
``Nonlocal`` with ``pool_size`` pool the block input before these two convolutions,
which is cheaper than pooling their outputs and is what "NL pool 1x2x2" means):

    y_i = sum_j f(theta_i, phi_j) g_j / C(x)

- ``embedded_gaussian``: ``f / C = softmax_j(theta_i . phi_j / sqrt(inner))`` (the
  scaling of PySlowFast and of the CGNL authors' ``SpatialNL``);
- ``dot``: ``f = theta_i . phi_j``, ``C = N'``.

Output ``bn(z(y)) + x`` with the BatchNorm's gamma initialised to zero, so a new
block is the identity.
"""

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cgnl_video.choices import NL_KERNELS

KERNELS = NL_KERNELS


class NonLocalBlock(nn.Module):
    """Non-local block on ``B x C x T x H x W`` tensors.

    Args:
        in_channels: C.
        inner_channels: channels of theta / phi / g (usually C / 2).
        kernel: ``embedded_gaussian`` (softmax) or ``dot``.
        pool_size: ``(t, h, w)`` max-pool subsampling of the input of phi and g
            (the non-local paper and PySlowFast use ``(1, 2, 2)``); None for none.
    """

    def __init__(
        self,
        in_channels: int,
        inner_channels: int,
        kernel: str = "embedded_gaussian",
        pool_size: Optional[Sequence[int]] = None,
    ):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"unknown non-local kernel '{kernel}'; expected one of {KERNELS}")
        self.kernel = kernel
        self.theta = nn.Conv3d(in_channels, inner_channels, 1)
        self.phi = nn.Conv3d(in_channels, inner_channels, 1)
        self.g = nn.Conv3d(in_channels, inner_channels, 1)
        self.pool = (
            nn.MaxPool3d(tuple(pool_size), stride=tuple(pool_size)) if pool_size else None
        )
        self.z = nn.Conv3d(inner_channels, in_channels, 1)
        self.bn = nn.BatchNorm3d(in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Convolutions from N(0, 0.01), zero biases, zero-gamma BatchNorm."""
        for conv in (self.theta, self.phi, self.g, self.z):
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        # pytorchvideo's ResNet initialisation keeps this gamma at zero.
        self.bn.block_final_bn = True

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x C x T x H x W`` -> ``B x C x T x H x W``."""
        b, _, t, h, w = x.shape
        pooled = self.pool(x) if self.pool is not None else x  # B x C x T' x H' x W'
        theta, phi, g = self.theta(x), self.phi(pooled), self.g(pooled)
        inner = theta.shape[1]
        # B x N x inner queries; B x N' x inner keys and values (contiguous, so that
        # scaled_dot_product_attention takes its memory-efficient kernel).
        query, key, value = (v.reshape(b, inner, -1).transpose(1, 2).contiguous() for v in (theta, phi, g))
        if self.kernel == "embedded_gaussian":
            y = F.scaled_dot_product_attention(query, key, value)
        else:
            # (theta phi^T) g / N' computed as theta (phi^T g) / N': same value, linear cost.
            y = query @ (key.transpose(1, 2) @ value) / key.shape[1]
        y = y.transpose(1, 2).reshape(b, inner, t, h, w)
        return self.bn(self.z(y)) + x
