"""The compact generalized non-local operation of the CGNL block (Yue et al., NeurIPS 2018).

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
from typing import List, Optional, Tuple

import torch
from torch.autograd.function import once_differentiable

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


# Per (sample, group) scalars ``B x G x 1`` of a polynomial, lowest power first; None = 0.
Moments = List[Optional[torch.Tensor]]


def taylor_moments(phi: torch.Tensor, g: torch.Tensor, coefficients: List[float],
                   out: Optional[torch.Tensor] = None) -> Tuple[Moments, Optional[torch.Tensor]]:
    """``[c_p * sum_j phi_j^p g_j for p = 0..P]`` (None where ``c_p = 0``), ``B x G x 1`` each,
    and the full-size buffer they were summed from (``out`` if given, else a new one; None for
    P = 0), free for the caller's next result (a fresh buffer costs its page faults: see
    docs/PERFORMANCE.md).

    By repeated weighting: one buffer ``g * phi^p``, multiplied by ``phi`` in place
    from one power to the next (P - 1 full-size passes besides the reductions).
    """
    moments: Moments = []
    weighted, buffer = g, None
    for p, coef in enumerate(coefficients):
        if p == 1:
            weighted = buffer = g * phi if out is None else torch.mul(g, phi, out=out)
        elif p > 1:
            weighted.mul_(phi)
        moments.append(None if coef == 0 else weighted.sum(-1, keepdim=True).mul_(coef))
    return moments, buffer


def taylor_polynomial(t: torch.Tensor, moments: Moments, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``sum_p moments[p] * t^p`` by Horner's scheme, in one buffer of ``t``'s shape: ``out``
    (any values, not ``t`` itself) or a new one.

    The highest moment must not be None; order 0 gives the constant, expanded.
    """
    top = len(moments) - 1
    if top == 0:
        return moments[0].expand_as(t)
    below = moments[top - 1]
    if out is None or torch.jit.is_tracing():  # the ONNX exporter has no out= variants
        out = t * moments[top] if below is None else torch.addcmul(below, t, moments[top])
    elif below is None:
        torch.mul(t, moments[top], out=out)
    else:
        torch.addcmul(below, t, moments[top], out=out)
    for p in range(top - 2, -1, -1):
        if moments[p] is None:
            out.mul_(t)
        elif torch.jit.is_tracing():  # the ONNX exporter has no addcmul with out=
            out = torch.addcmul(moments[p], out, t)
        else:
            torch.addcmul(moments[p], out, t, out=out)
    return out


def derivative(moments: Moments) -> Moments:
    """The moments of the derivative: ``[p * moments[p] for p = 1..P]``."""
    return [None if m is None else m * p for p, m in enumerate(moments) if p > 0]


def times_polynomial(factor: torch.Tensor, t: torch.Tensor, moments: Moments,
                     out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``factor * sum_p moments[p] t^p``, the polynomial's buffer (``out`` if given) reused for the product."""
    if len(moments) == 1:
        return factor * moments[0] if out is None else torch.mul(factor, moments[0], out=out)
    return taylor_polynomial(t, moments, out).mul_(factor)


def compact_forward(
    theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor, coefficients: List[float]
) -> Tuple[torch.Tensor, Moments]:
    """Eq. 12: ``y = sum_p theta^p m_p`` with ``m_p = c_p sum_j phi_j^p g_j``; y and the m_p.
    y is written into the moments' buffer."""
    moments, buffer = taylor_moments(phi, g, coefficients)
    return taylor_polynomial(theta, moments, buffer), moments


class CompactKernel(torch.autograd.Function):
    """The compact form with a hand-written backward that saves only theta, phi, g.

    With ``a_p = c_p sum_i grad_i theta_i^p`` (the moments of ``theta`` weighted by the
    output gradient), the gradients are polynomials again:

        d theta_i = grad_i * sum_p p m_p theta_i^(p-1),
        d g_j     = sum_p a_p phi_j^p,
        d phi_j   = g_j * sum_p p a_p phi_j^(p-1),

    so backward recomputes the powers instead of autograd keeping every ``phi^p``,
    ``phi^p g`` and Horner step (see docs/PERFORMANCE.md, blocks section).
    """

    @staticmethod
    def forward(ctx, theta, phi, g, coefficients):
        out, moments = compact_forward(theta, phi, g, coefficients)
        ctx.save_for_backward(theta, phi, g)
        ctx.moments = moments
        ctx.coefficients = coefficients
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        theta, phi, g = ctx.saved_tensors
        needs_theta, needs_phi, needs_g = ctx.needs_input_grad[:3]
        constant = len(ctx.moments) == 1  # order 0: y does not depend on theta and phi
        grad_theta = grad_phi = grad_g = None
        if needs_theta and not constant:
            grad_theta = times_polynomial(grad, theta, derivative(ctx.moments))
        if needs_phi or needs_g:
            weights, buffer = taylor_moments(theta, grad, ctx.coefficients)
            if needs_g:
                grad_g, buffer = taylor_polynomial(phi, weights, buffer), None
            if needs_phi and not constant:
                grad_phi = times_polynomial(g, phi, derivative(weights), buffer)
        return grad_theta, grad_phi, grad_g, None


def needs_gradient(*tensors: torch.Tensor) -> bool:
    """Whether autograd records a function of ``tensors`` now: grad mode on and one of them requiring grad."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def compact_generalized_nonlocal(
    theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor, coefficients: List[float]
) -> torch.Tensor:
    """The compact form (Eq. 12) of ``y_i = sum_j f(theta_i, phi_j) g_j`` per group.

    Args:
        theta, phi, g: ``B x G x M`` (M = channels per group x T x H x W).
        coefficients: ``[c_0, ..., c_P]`` of the Taylor kernel.
    Returns:
        ``B x G x M``. Through :class:`CompactKernel` where a gradient is needed; plain
        tensor ops otherwise (inference, and tracers that cannot record a Python function).
    """
    if needs_gradient(theta, phi, g) and not torch.jit.is_tracing():
        return CompactKernel.apply(theta, phi, g, coefficients)
    return compact_forward(theta, phi, g, coefficients)[0]
