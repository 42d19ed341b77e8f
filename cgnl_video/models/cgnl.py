"""Compact Generalized Non-local block (Yue et al., NeurIPS 2018), in 3D.

The generalized non-local operation (Eq. 8 of the paper) correlates every
position of every channel with every other inside a channel group: with
``theta``, ``phi`` and ``g`` flattened over (channels of the group, T, H, W) into
vectors of length M = C_g * T * H * W,

    y_i = s * sum_j f(theta_i, phi_j) * g_j,

where ``s`` is 1, or 1 / sqrt(M) with ``use_scale``. The pairwise kernel ``f`` is a
Taylor series ``f(a, b) = sum_p c_p a^p b^p``, so (Eq. 12)

    y_i = s * sum_p c_p * theta_i^p * (sum_j phi_j^p * g_j),

which costs O(P * M) instead of O(M^2). The semantics follow the authors'
official 2D code (``SpatialCGNL`` / ``SpatialCGNLx``) with T x H flattened into
one spatial axis.
"""

import math
from typing import List

import torch
import torch.nn as nn

from cgnl_video.choices import CGNL_KERNELS

KERNELS = CGNL_KERNELS

# gamma of the Gaussian RBF kernel exp(-gamma * |a - b|^2), as in the official code.
GAUSSIAN_GAMMA = 1e-4


def taylor_coefficients(kernel: str, order: int) -> List[float]:
    """Returns ``[c_0, ..., c_P]`` with ``f(a, b) = sum_p c_p a^p b^p``.

    - ``dot``: ``f = a * b``, so ``[0, 1]`` whatever the order.
    - ``gaussian``: ``exp(-gamma (a - b)^2)`` with the official code's simplification
      ``exp(-gamma (a^2 + b^2)) ~ exp(-2 gamma)``, so ``c_p = exp(-2 gamma) (2 gamma)^p / p!``.
    - ``embedded_gaussian``: ``exp(a * b)``, so ``c_p = 1 / p!``.
    """
    if kernel == "dot":
        return [0.0, 1.0]
    if kernel == "gaussian":
        beta = math.exp(-2 * GAUSSIAN_GAMMA)
        return [beta * (2 * GAUSSIAN_GAMMA) ** p / math.factorial(p) for p in range(order + 1)]
    if kernel == "embedded_gaussian":
        return [1.0 / math.factorial(p) for p in range(order + 1)]
    raise ValueError(f"unknown CGNL kernel '{kernel}'; expected one of {KERNELS}")


def compact_generalized_nonlocal(
    theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor, coefficients: List[float]
) -> torch.Tensor:
    """The compact form (Eq. 12) of ``y_i = sum_j f(theta_i, phi_j) g_j`` per group.

    Args:
        theta, phi, g: ``B x G x M`` (M = channels per group x T x H x W).
        coefficients: ``[c_0, ..., c_P]`` of the Taylor kernel.
    Returns:
        ``B x G x M``.
    """
    # moments[p] = c_p * sum_j phi_j^p g_j, each B x G x 1 (None where c_p = 0).
    moments = []
    power = None
    for p, coef in enumerate(coefficients):
        if p > 0:
            power = phi if p == 1 else power * phi
        if coef == 0:
            moments.append(None)
            continue
        weighted = g if p == 0 else power * g
        moments.append(weighted.sum(-1, keepdim=True) * coef)
    # Horner's scheme: y = ((m_P t + m_{P-1}) t + ...) t + m_0, one fused pass a step.
    out = moments[-1]
    for p in range(len(moments) - 2, -1, -1):
        out = out * theta if moments[p] is None else torch.addcmul(moments[p], out, theta)
    return out.expand_as(theta)


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
        b, _, t, h, w = x.shape
        theta, phi, g = self.theta(x), self.phi(x), self.g(x)
        inner = theta.shape[1]
        shape = (b, self.groups, -1)
        coefficients = self.coefficients
        if self.use_scale:
            scale = ((inner // self.groups) * t * h * w) ** -0.5
            coefficients = [c * scale for c in coefficients]
        y = compact_generalized_nonlocal(
            theta.reshape(shape), phi.reshape(shape), g.reshape(shape), coefficients
        )
        y = y.reshape(b, inner, t, h, w)
        return self.gn(self.z(y)) + x
