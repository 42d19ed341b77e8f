"""Compact Generalized Non-local block (Yue et al., NeurIPS 2018), in 3D.

The block is ``x + gn(z(y))`` with y the compact generalized non-local operation of
``theta(x)``, ``phi(x)`` and ``g(x)`` per channel group (``cgnl_video.models.taylor``).
Two paths compute it: on the CPU, for block inputs of 4 MiB and more, one autograd
function at little more than the four convolutions' cost (``cgnl_video.models.cgnl_fused``);
elsewhere (GPUs, smaller outputs, tracing, autocast, channels-last inputs) the composition of
the convolutions, the compact kernel, GroupNorm and the residual
(:meth:`CGNLBlock.composed_forward`).
"""

from typing import List

import torch
import torch.nn as nn

from cgnl_video.models.cgnl_fused import BlockWeights, Layout, fusable, fused_cgnl
from cgnl_video.models.taylor import compact_generalized_nonlocal, taylor_coefficients


class CGNLBlock(nn.Module):
    """Compact generalized non-local block on ``B x C x T x H x W`` tensors.

    ``theta``, ``phi``, ``g``: 1x1x1 convolutions ``C -> inner`` (no bias); the inner
    channels are split into ``groups`` groups, each one generalized non-local
    operation (see the module docstring); ``z``: grouped 1x1x1 convolution
    ``inner -> C``; ``gn``: ``GroupNorm(groups, C)``; output ``gn(z(y)) + x``.
    Initialised as the authors do (convolutions from N(0, 0.01), GroupNorm weight
    and bias zero), so a new block is the identity.

    Args:
        in_channels: C.
        inner_channels: channels of theta / phi / g (the authors use C / 2).
        groups: number of channel groups (divides both C and inner).
        kernel: ``dot``, ``gaussian`` or ``embedded_gaussian``.
        order: Taylor expansion order P of the gaussian kernels (unused by ``dot``).
        use_scale: divide by sqrt(channels per group x T x H x W).
    """

    def __init__(
        self,
        in_channels: int,
        inner_channels: int,
        groups: int = 8,
        kernel: str = "dot",
        order: int = 3,
        use_scale: bool = False,
    ):
        super().__init__()
        if in_channels % groups or inner_channels % groups:
            raise ValueError(
                f"CGNL groups={groups} must divide in_channels={in_channels} "
                f"and inner_channels={inner_channels}"
            )
        if order < 0:
            raise ValueError(f"CGNL Taylor order must be >= 0, got {order}")
        self.groups = groups
        self.kernel = kernel
        self.order = order
        self.use_scale = use_scale
        self.coefficients = taylor_coefficients(kernel, order)
        self.theta = nn.Conv3d(in_channels, inner_channels, 1, bias=False)
        self.phi = nn.Conv3d(in_channels, inner_channels, 1, bias=False)
        self.g = nn.Conv3d(in_channels, inner_channels, 1, bias=False)
        self.z = nn.Conv3d(inner_channels, in_channels, 1, groups=groups, bias=False)
        self.gn = nn.GroupNorm(groups, in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' initialisation: the block starts as the identity."""
        for conv in (self.theta, self.phi, self.g, self.z):
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.gn.weight)
        nn.init.zeros_(self.gn.bias)

    def extra_repr(self) -> str:
        return (
            f"groups={self.groups}, kernel={self.kernel}, order={self.order}, "
            f"use_scale={self.use_scale}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x C x T x H x W`` -> ``B x C x T x H x W``."""
        coefficients = self.scaled_coefficients(x)
        if fusable(x, coefficients):
            weights = BlockWeights(self.theta.weight, self.phi.weight, self.g.weight, self.z.weight,
                                   self.gn.weight, self.gn.bias)
            return fused_cgnl(x, weights, Layout(self.groups, coefficients, self.gn.eps, self.kernel == "dot"))
        return self.composed_forward(x)

    def scaled_coefficients(self, x: torch.Tensor) -> List[float]:
        """The Taylor coefficients, divided by sqrt(channels per group x T x H x W) with ``use_scale``."""
        if not self.use_scale:
            return self.coefficients
        t, h, w = x.shape[2:]
        scale = (self.theta.out_channels // self.groups * t * h * w) ** -0.5
        return [c * scale for c in self.coefficients]

    def composed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block as a composition of modules and the compact kernel."""
        # theta / phi / g live only inside nonlocal_response: freed before z and GroupNorm run.
        return self.gn(self.z(self.nonlocal_response(x))).add_(x)

    def nonlocal_response(self, x: torch.Tensor) -> torch.Tensor:
        """y of Eq. 12 per group, ``B x inner x T x H x W``: the input of ``z``."""
        b, _, t, h, w = x.shape
        theta, phi, g = self.theta(x), self.phi(x), self.g(x)
        inner = theta.shape[1]
        shape = (b, self.groups, -1)
        y = compact_generalized_nonlocal(
            theta.reshape(shape), phi.reshape(shape), g.reshape(shape), self.scaled_coefficients(x)
        )
        return y.reshape(b, inner, t, h, w)
