"""The CGNL block on the CPU as one autograd function, at little more than its convolutions' cost.

Beyond its four 1x1x1 convolutions the block only moves memory, and on the CPU a fresh
tensor of tens of MB costs more than several passes over it: glibc maps every allocation
above 32 MB anew and the kernel faults its pages in one by one (docs/PERFORMANCE.md, blocks).
So this path, which computes exactly what the composed one in ``cgnl.py`` does:

- works between the convolutions on rows, one per (sample, group) of ``C_g x T x H x W``
  values, a block of about ``BLOCK_VALUES`` values at a time (one row where rows are long),
  in scratch buffers: no full-size temporaries, and each block still in cache for the next
  operation on it;
- never forms y for the dot kernel: there y = s * theta with one s per (sample, group),
  ``z`` is grouped like the GroupNorm, so z(y) = s * u with u = z(theta), and GroupNorm of
  ``s * u`` is GroupNorm of ``u`` with ``a = s / sqrt(s^2 var(u) + eps)`` in place of
  ``1 / sqrt(var(u) + eps)`` (docs/CGNL.md);
- keeps only theta, phi, g and u for the backward, which recomputes y for the Taylor
  kernels, and takes the two whole tensors its convolutions' backward reads (the gradient
  at z's output; y) and the blocks' scratch from one workspace per thread, kept for the
  thread's life (for the largest block trained on the thread: a block output, an inner-width
  tensor and two blocks of rows);
- writes the output of an inference call over u.

It runs where :func:`fusable` says (CPU, float32 / float64, contiguous, no tracing, no
autocast, Taylor order >= 1, a block output of at least ``MIN_BYTES``); anything else takes
the composed path. Below ``MIN_BYTES`` glibc recycles freed tensors from its heap, so the page
faults this path avoids do not happen, and the composed path's native GroupNorm and whole-tensor
operations were as fast or faster (docs/PERFORMANCE.md, the fused CPU path).
"""

import math
import threading
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from cgnl_video.models.taylor import (
    Moments,
    derivative,
    needs_gradient,
    taylor_moments,
    taylor_polynomial,
    times_polynomial,
)


class BlockWeights(NamedTuple):
    """The block's parameters: convolution weights, GroupNorm affine."""

    theta: torch.Tensor
    phi: torch.Tensor
    g: torch.Tensor
    z: torch.Tensor
    gamma: torch.Tensor
    beta: torch.Tensor


class Layout(NamedTuple):
    """What the computation needs besides the tensors."""

    groups: int
    coefficients: List[float]
    eps: float
    dot: bool  # the dot kernel: y = s * theta (see the module docstring)


# glibc's largest adaptive mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): every
# allocation at least this large is mapped afresh and page-faulted in.
MIN_BYTES = 32 * 2**20


def fusable(x: torch.Tensor, coefficients: Sequence[float]) -> bool:
    """Whether this path computes the block on ``x``."""
    return (
        x.device.type == "cpu"
        and x.numel() * x.element_size() >= MIN_BYTES
        and x.dtype in (torch.float32, torch.float64)
        and x.is_contiguous()
        and len(coefficients) > 1
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and not torch.is_autocast_enabled("cpu")
    )


class _Workspace(threading.local):
    def __init__(self):
        self.buffers: Dict[Tuple[torch.device, torch.dtype], torch.Tensor] = {}


_WORKSPACE = _Workspace()


def workspace(like: torch.Tensor, *shapes: Sequence[int]) -> List[torch.Tensor]:
    """Disjoint views of ``shapes`` on this thread's buffer for ``like``'s device and dtype
    (any values), grown when too small: its pages stay mapped from one call to the next."""
    sizes = [math.prod(shape) for shape in shapes]
    key = (like.device, like.dtype)
    buffer = _WORKSPACE.buffers.get(key)
    if buffer is None or buffer.numel() < sum(sizes):
        _WORKSPACE.buffers.pop(key, None)  # the old one goes before the new one comes
        buffer = _WORKSPACE.buffers[key] = torch.empty(sum(sizes), dtype=like.dtype, device=like.device)
    views, start = [], 0
    for shape, size in zip(shapes, sizes):
        views.append(buffer[start:start + size].view(shape))
        start += size
    return views


# Rows are taken a block at a time, about this many values (4 MB in float32): blocks of one row
# where rows are long, all rows at once where they are short (fewer, larger operations).
BLOCK_VALUES = 2**20


def row_blocks(t: torch.Tensor) -> List[slice]:
    """Consecutive row ranges of an ``R x M`` tensor, each ``BLOCK_VALUES`` values or one row."""
    count, length = t.shape
    step = max(1, BLOCK_VALUES // length)
    return [slice(start, min(start + step, count)) for start in range(0, count, step)]


def scratch_size(x: torch.Tensor, theta: torch.Tensor, groups: int) -> int:
    """Values of a scratch buffer that holds one block of rows of x (and u) or of theta."""
    return max(max(x.numel(), theta.numel()) // (x.shape[0] * groups), BLOCK_VALUES)


def block_of(scratch: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The start of ``scratch`` in the shape of ``t`` (a block of rows)."""
    return scratch[: t.numel()].view_as(t)


def rows(t: torch.Tensor, groups: int) -> torch.Tensor:
    """``B x C x T x H x W`` -> ``(B * groups) x (C / groups * T * H * W)``: one row per (sample, group)."""
    return t.view(t.shape[0] * groups, -1)


def _cat(parts: List[Moments]) -> Moments:
    return [None if m is None else torch.cat([part[p] for part in parts]) for p, m in enumerate(parts[0])]


def _block(moments: Moments, block: slice) -> Moments:
    return [None if m is None else m[block] for m in moments]


def row_moments(phi: torch.Tensor, g: torch.Tensor, coefficients: List[float], scratch: torch.Tensor) -> Moments:
    """:func:`taylor_moments` of each row of ``R x M`` tensors, a block of rows at a time in
    ``scratch``: ``R x 1`` each (None where c_p = 0)."""
    return _cat([taylor_moments(phi[b], g[b], coefficients, block_of(scratch, phi[b]))[0] for b in row_blocks(phi)])


def row_polynomial(t: torch.Tensor, moments: Moments, out: torch.Tensor,
                   factor: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``[factor *] sum_p moments[p] * t^p`` (``R x M``, ``R x 1`` moments) into ``out``, a block of rows at a time."""
    for b in row_blocks(t):
        if factor is None:
            result = taylor_polynomial(t[b], _block(moments, b), out[b])
        else:
            result = times_polynomial(factor[b], t[b], _block(moments, b), out[b])
        if result is not out[b]:  # a constant polynomial
            out[b].copy_(result)
    return out


def _per_row(parameter: torch.Tensor, samples: int, groups: int) -> torch.Tensor:
    """A GroupNorm parameter (C) as ``R x C_g x 1``: the channels of each row's group."""
    return parameter.view(1, groups, -1, 1).expand(samples, -1, -1, -1).reshape(samples * groups, -1, 1)


def normalise_rows(u: torch.Tensor, x: torch.Tensor, out: torch.Tensor, weights: BlockWeights,
                   s: Optional[torch.Tensor], layout: Layout, scratch: torch.Tensor
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``out = x + GroupNorm(s * u)`` a block of rows at a time (``out`` may be ``u``); per row
    (``R x 1``): mean of u, the scale ``a`` of ``u - mean`` and ``1 / sqrt(s^2 var(u) + eps)``."""
    groups, samples = layout.groups, u.shape[0]
    gamma, beta = (_per_row(p, samples, groups) for p in (weights.gamma, weights.beta))
    u_rows, x_rows, out_rows = (rows(t, groups) for t in (u, x, out))
    s = torch.ones(u_rows.shape[0], 1, dtype=u.dtype) if s is None else s
    means, inverse_stds = [], []
    for b in row_blocks(u_rows):
        mean = u_rows[b].mean(-1, keepdim=True)
        centred = torch.sub(u_rows[b], mean, out=block_of(scratch, u_rows[b]))
        variance = torch.linalg.vector_norm(centred, dim=-1, keepdim=True).square_() / centred.shape[-1]
        inverse_stds.append(torch.rsqrt(s[b] * s[b] * variance + layout.eps))
        scale = (s[b] * inverse_stds[-1]).unsqueeze(-1)
        by_channel = (centred.shape[0], gamma.shape[1], -1)
        torch.addcmul(beta[b], centred.view(by_channel), gamma[b] * scale, out=out_rows[b].view(by_channel))
        out_rows[b].add_(x_rows[b])
        means.append(mean)
    inverse_std = torch.cat(inverse_stds)
    return torch.cat(means), s * inverse_std, inverse_std


def _conv_backward(grad: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor, groups: int,
                   needs_input: bool, needs_weight: bool) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The gradients of ``conv3d(inputs, weight, groups=groups)`` (1x1x1, no bias) at ``grad``."""
    if not (needs_input or needs_weight):
        return None, None
    grad_input, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad, inputs, weight, None, [1, 1, 1], [0, 0, 0], [1, 1, 1], False, [0, 0, 0], groups,
        [needs_input, needs_weight, False],
    )
    return grad_input, grad_weight


class Saved(NamedTuple):
    """Per-row scalars the backward needs besides the saved tensors."""

    moments: Moments
    mean: torch.Tensor
    scale: torch.Tensor
    inverse_std: torch.Tensor


def block_forward(x: torch.Tensor, weights: BlockWeights, layout: Layout, training: bool
                  ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...], Saved]:
    """``x + gn(z(y))``; for training, also the tensors and scalars the backward needs."""
    groups = layout.groups
    theta, phi, g = (F.conv3d(x, w) for w in (weights.theta, weights.phi, weights.g))
    size = scratch_size(x, theta, groups)
    y_buffer, scratch = workspace(x, theta.shape, (size,)) if training else (g, workspace(x, (size,))[0])
    moments = row_moments(rows(phi, groups), rows(g, groups), layout.coefficients, scratch)
    saved_tensors = (x, theta, phi, g) if training else ()
    phi = g = None  # inference: freed before u comes (y, if any, is written over g)
    if layout.dot:
        y, s = theta, moments[1]
    else:
        y, s = row_polynomial(rows(theta, groups), moments, rows(y_buffer, groups)).view_as(theta), None
    u = F.conv3d(y, weights.z, groups=groups)
    y = y_buffer = theta = None
    out = torch.empty_like(x) if training else u
    mean, scale, inverse_std = normalise_rows(u, x, out, weights, s, layout, scratch)
    return out, (*saved_tensors, u), Saved(moments, mean, scale, inverse_std)


def normalise_rows_backward(grad: torch.Tensor, u: torch.Tensor, weights: BlockWeights, layout: Layout,
                            saved: Saved, grad_u: torch.Tensor, scratch: Tuple[torch.Tensor, torch.Tensor]
                            ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Writes the gradient at u into ``grad_u`` (``scratch``: two blocks of rows); returns those of
    gamma and beta, and of s (``R x 1``; unused unless dot), from GroupNorm's backward with ``a``
    as its inverse std (exact: ``a`` depends on u as an inverse std does, see the module docstring)."""
    groups, samples = layout.groups, u.shape[0]
    gamma = _per_row(weights.gamma, samples, groups)
    grad_rows, u_rows, out_rows = (rows(t, groups) for t in (grad, u, grad_u))
    grad_gamma, grad_beta, grad_s = [], [], []
    for b in row_blocks(u_rows):
        by_channel = (u_rows[b].shape[0], gamma.shape[1], -1)
        scale, count = saved.scale[b].unsqueeze(-1), u_rows.shape[1]
        centred = torch.sub(u_rows[b], saved.mean[b], out=block_of(scratch[0], u_rows[b])).view(by_channel)
        grad_block = grad_rows[b].view(by_channel)
        grad_centred = torch.mul(grad_block, centred, out=block_of(scratch[1], centred)).sum(-1, keepdim=True)
        grad_sum = grad_block.sum(-1, keepdim=True)
        grad_gamma.append(scale * grad_centred)
        grad_beta.append(grad_sum)
        weighted_centred = (gamma[b] * grad_centred).sum(1, keepdim=True)
        weighted_sum = (gamma[b] * grad_sum).sum(1, keepdim=True)
        out = out_rows[b].view(by_channel)
        torch.mul(centred, -weighted_centred * scale**3 / count, out=out)
        out.sub_(weighted_sum * scale / count)
        out.addcmul_(grad_block, gamma[b] * scale)
        # d a / d s = eps / (s^2 var + eps)^(3/2)
        grad_s.append(layout.eps * saved.inverse_std[b] ** 3 * weighted_centred.view(-1, 1))
    per_channel = (samples, -1)
    return (torch.cat(grad_gamma).view(per_channel).sum(0), torch.cat(grad_beta).view(per_channel).sum(0),
            torch.cat(grad_s))


def kernel_backward(grad_y: torch.Tensor, theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor,
                    layout: Layout, saved: Saved, grad_s: torch.Tensor, buffers: Tuple[torch.Tensor, torch.Tensor],
                    scratch: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients at theta, phi and g, given the one at y (``grad_y``, overwritten) and, for the
    dot kernel (where y is theta), at s; ``buffers`` hold the ones at phi and g (Taylor: at theta and phi)."""
    groups, coefficients = layout.groups, layout.coefficients
    theta_r, phi_r, g_r, grad_y_r = (rows(t, groups) for t in (theta, phi, g, grad_y))
    first, second = (rows(b, groups) for b in buffers)
    if layout.dot:  # s = c_1 sum(phi * g)
        grad_s = grad_s * coefficients[1]
        torch.mul(g_r, grad_s, out=first)
        torch.mul(phi_r, grad_s, out=second)
        return grad_y, buffers[0], buffers[1]
    weights = row_moments(theta_r, grad_y_r, coefficients, scratch)  # a_p = c_p sum(theta^p grad_y)
    row_polynomial(theta_r, derivative(saved.moments), first, factor=grad_y_r)
    row_polynomial(phi_r, derivative(weights), second, factor=g_r)
    row_polynomial(phi_r, weights, grad_y_r)
    return buffers[0], buffers[1], grad_y


class FusedCGNL(torch.autograd.Function):
    """:func:`block_forward` with its hand-written backward (the module docstring)."""

    @staticmethod
    def forward(ctx, x, theta_w, phi_w, g_w, z_w, gamma, beta, layout):
        weights = BlockWeights(theta_w, phi_w, g_w, z_w, gamma, beta)
        out, tensors, saved = block_forward(x, weights, layout, training=True)
        ctx.save_for_backward(*tensors, *weights)
        ctx.layout, ctx.saved = layout, saved
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, theta, phi, g, u, *parameters = ctx.saved_tensors
        weights, layout, saved = BlockWeights(*parameters), ctx.layout, ctx.saved
        needs = ctx.needs_input_grad
        grad = grad.contiguous()
        size = scratch_size(x, theta, layout.groups)
        first, y_buffer, *scratch = workspace(x, (max(u.numel(), theta.numel()),), theta.shape, (size,), (size,))
        grad_u = first[: u.numel()].view_as(u)
        grad_gamma, grad_beta, grad_s = normalise_rows_backward(grad, u, weights, layout, saved, grad_u, tuple(scratch))
        if layout.dot:
            y = theta
        else:
            y = row_polynomial(rows(theta, layout.groups), saved.moments, rows(y_buffer, layout.groups)).view_as(theta)
        grad_y, grad_z = _conv_backward(grad_u, y, weights.z, layout.groups, True, needs[4])
        # grad_u and y are not needed from here on: their buffers hold two of the three gradients below
        buffers = (first[: theta.numel()].view_as(theta), y_buffer)
        projections = kernel_backward(grad_y, theta, phi, g, layout, saved, grad_s, buffers, scratch[0])
        grad_x, grad_weights = grad if needs[0] else None, []
        for grad_projection, weight, needs_weight in zip(projections, weights[:3], needs[1:4]):
            grad_input, grad_weight = _conv_backward(grad_projection, x, weight, 1, needs[0], needs_weight)
            if grad_input is not None:
                grad_x = grad_input.add_(grad_x)
            grad_weights.append(grad_weight)
        return (grad_x, *grad_weights, grad_z, grad_gamma if needs[5] else None,
                grad_beta if needs[6] else None, None)


def fused_cgnl(x: torch.Tensor, weights: BlockWeights, layout: Layout) -> torch.Tensor:
    """The block on ``x`` (``B x C x T x H x W``), through :class:`FusedCGNL` where a gradient is needed."""
    if needs_gradient(x, *weights):
        return FusedCGNL.apply(x, *weights, layout)
    return block_forward(x, weights, layout, training=False)[0]
