"""The CGNL block on the CPU as one autograd function, at about its convolutions' cost.

Beyond its 1x1x1 convolutions the block only moves memory, and on the CPU each pass over a
tensor of tens of MB costs milliseconds, and each fresh tensor as much again for the page
faults (docs/PERFORMANCE.md, blocks). So this path, which computes exactly what the composed
one in ``cgnl.py`` does:

- computes theta, phi and g as one convolution with their weights stacked (as timm's qkv):
  x is read once instead of three times, and in the backward one convolution gives x's
  gradient from all three (one product with 3 x inner terms) instead of three tensors and two
  additions;
- works between the convolutions on rows, one per (sample, group) of ``C_g x T x H x W``
  values, a block of about ``BLOCK_VALUES`` values at a time (one row where rows are long),
  in scratch buffers: no full-size temporaries, and each block still in cache for the next
  operation on it;
- never forms y for the dot kernel: there y = s * theta with one s per (sample, group),
  ``z`` is grouped like the GroupNorm, so z(y) = s * u with u = z(theta), and GroupNorm of
  ``s * u`` is GroupNorm of ``u`` with ``a = s / sqrt(s^2 var(u) + eps)`` in place of
  ``1 / sqrt(var(u) + eps)`` (docs/CGNL.md);
- computes z as one matrix product per sample and group, which reads theta in place (a
  convolution would copy a channel slice first) and writes its backward into the workspace;
- keeps only x, the projections and u for the backward, which recomputes y for the Taylor
  kernels, and takes its whole-size buffers (the gradients at u and at y, y, the
  projections' gradients) and the blocks' scratch from one workspace per thread, kept for the
  thread's life;
- writes the output of an inference call over u.

It runs where :func:`fusable` says (CPU, float32 / float64, contiguous, no tracing, no
autocast, Taylor order >= 1, a block input of at least ``MIN_BYTES``); anything else takes
the composed path. Below ``MIN_BYTES`` its loops over rows cost more than they save.
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


# The smallest block input this path takes: from about 3 MiB on it was as fast as the composed
# one or faster, forward and backward, at 1 and 2 threads; below, its forward was up to 2x
# slower (docs/PERFORMANCE.md, the fused CPU path).
MIN_BYTES = 4 * 2**20


def fusable(x: torch.Tensor, coefficients: Sequence[float]) -> bool:
    """Whether this path computes the block on ``x``."""
    return (
        not torch.jit.is_tracing()  # first: a tracer records the size test below as a constant, with a warning
        and not torch.compiler.is_compiling()
        and x.device.type == "cpu"
        and x.numel() * x.element_size() >= MIN_BYTES
        and x.dtype in (torch.float32, torch.float64)
        and x.is_contiguous()
        and len(coefficients) > 1
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
# where rows are long, all of a sample's rows at once where they are short (fewer, larger operations).
BLOCK_VALUES = 2**20


def rows(t: torch.Tensor, groups: int) -> torch.Tensor:
    """``B x C x T x H x W`` -> ``B x groups x (C / groups * T * H * W)``: one row per (sample, group).
    A view, also of a channel slice of a larger tensor (such as theta in the projections)."""
    return t.view(t.shape[0], groups, -1)


class RowBlock(NamedTuple):
    """Consecutive rows of one sample: ``groups`` of ``sample``, numbered ``flat`` over all samples
    (``sample * G + group``, the index of their per-row scalars, ``R x 1``)."""

    sample: int
    groups: slice
    flat: slice


def row_blocks(t: torch.Tensor) -> List[RowBlock]:
    """The blocks of a ``B x G x M`` tensor's rows: each ``BLOCK_VALUES`` values or one row."""
    samples, groups, length = t.shape
    step = max(1, BLOCK_VALUES // length)
    return [RowBlock(b, slice(start, min(start + step, groups)),
                     slice(b * groups + start, b * groups + min(start + step, groups)))
            for b in range(samples) for start in range(0, groups, step)]


def take(t: torch.Tensor, block: RowBlock) -> torch.Tensor:
    """``block``'s rows of a ``B x G x M`` tensor: ``rows x M``."""
    return t[block.sample, block.groups]


def scratch_size(x: torch.Tensor, theta: torch.Tensor, groups: int) -> int:
    """Values of a scratch buffer that holds one block of rows of x (and u) or of theta."""
    return max(max(x.numel(), theta.numel()) // (x.shape[0] * groups), BLOCK_VALUES)


def block_of(scratch: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The start of ``scratch`` in the shape of ``t`` (a block of rows)."""
    return scratch[: t.numel()].view_as(t)


def _cat(parts: List[Moments]) -> Moments:
    return [None if m is None else torch.cat([part[p] for part in parts]) for p, m in enumerate(parts[0])]


def _block(moments: Moments, block: RowBlock) -> Moments:
    return [None if m is None else m[block.flat] for m in moments]


def row_moments(phi: torch.Tensor, g: torch.Tensor, coefficients: List[float], scratch: torch.Tensor) -> Moments:
    """:func:`taylor_moments` of each row of ``B x G x M`` tensors, a block of rows at a time in
    ``scratch``: ``R x 1`` each (``R = B * G``; None where c_p = 0)."""
    return _cat([taylor_moments(take(phi, b), take(g, b), coefficients, block_of(scratch, take(phi, b)))[0]
                 for b in row_blocks(phi)])


def row_polynomial(t: torch.Tensor, moments: Moments, out: torch.Tensor,
                   factor: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``[factor *] sum_p moments[p] * t^p`` (``B x G x M``, ``R x 1`` moments) into ``out``, a block of rows at a time."""
    for b in row_blocks(t):
        target = take(out, b)
        if factor is None:
            result = taylor_polynomial(take(t, b), _block(moments, b), target)
        else:
            result = times_polynomial(take(factor, b), take(t, b), _block(moments, b), target)
        if result is not target:  # a constant polynomial
            target.copy_(result)
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
    s = torch.ones(samples * groups, 1, dtype=u.dtype) if s is None else s
    means, inverse_stds = [], []
    for b in row_blocks(u_rows):
        u_block, r = take(u_rows, b), b.flat
        mean = u_block.mean(-1, keepdim=True)
        centred = torch.sub(u_block, mean, out=block_of(scratch, u_block))
        variance = torch.linalg.vector_norm(centred, dim=-1, keepdim=True).square_() / centred.shape[-1]
        inverse_stds.append(torch.rsqrt(s[r] * s[r] * variance + layout.eps))
        scale = (s[r] * inverse_stds[-1]).unsqueeze(-1)
        by_channel = (centred.shape[0], gamma.shape[1], -1)
        out_block = take(out_rows, b)
        torch.addcmul(beta[r], centred.view(by_channel), gamma[r] * scale, out=out_block.view(by_channel))
        out_block.add_(take(x_rows, b))
        means.append(mean)
    inverse_std = torch.cat(inverse_stds)
    return torch.cat(means), s * inverse_std, inverse_std


def _conv_backward(grad: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor,
                   needs_input: bool, needs_weight: bool) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The gradients of ``conv3d(inputs, weight)`` (1x1x1, no bias) at ``grad``."""
    if not (needs_input or needs_weight):
        return None, None
    grad_input, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad, inputs, weight, None, [1, 1, 1], [0, 0, 0], [1, 1, 1], False, [0, 0, 0], 1,
        [needs_input, needs_weight, False],
    )
    return grad_input, grad_weight


def projection_weight(weights: BlockWeights) -> torch.Tensor:
    """theta's, phi's and g's weights as one (``3 inner x C x 1 x 1 x 1``): the three projections
    are one convolution, whose output holds theta, phi and g as channel slices (as timm's qkv)."""
    return torch.cat((weights.theta, weights.phi, weights.g))


def _by_group(t: torch.Tensor, groups: int) -> torch.Tensor:
    """``B x C x T x H x W`` (any sample stride) -> ``B x groups x C / groups x T * H * W``, a view."""
    return t.view(t.shape[0], groups, t.shape[1] // groups, -1)


def _z_matrices(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """z's grouped weight ``C x inner / G x 1 x 1 x 1`` as ``G x C / G x inner / G``."""
    return weight.view(groups, weight.shape[0] // groups, weight.shape[1])


def grouped_projection(weight: torch.Tensor, t: torch.Tensor, groups: int) -> torch.Tensor:
    """``conv3d(t, weight, groups=groups)`` (1x1x1) by one matrix product per sample, so that ``t``
    may be a channel slice (theta): a convolution would copy it first."""
    out = t.new_empty(t.shape[0], weight.shape[0], *t.shape[2:])
    matrices, t_groups, out_groups = _z_matrices(weight, groups), _by_group(t, groups), _by_group(out, groups)
    for sample in range(t.shape[0]):
        torch.matmul(matrices, t_groups[sample], out=out_groups[sample])
    return out


def grouped_projection_backward(weight: torch.Tensor, t: torch.Tensor, grad: torch.Tensor, groups: int,
                                grad_t: torch.Tensor, needs_weight: bool) -> Optional[torch.Tensor]:
    """The gradients of :func:`grouped_projection` at ``grad``: t's into ``grad_t``, the weight's returned."""
    matrices, t_groups, grad_groups = _z_matrices(weight, groups), _by_group(t, groups), _by_group(grad, groups)
    grad_t_groups = _by_group(grad_t, groups)
    grad_weight = torch.zeros_like(matrices) if needs_weight else None
    for sample in range(t.shape[0]):
        torch.matmul(matrices.transpose(1, 2), grad_groups[sample], out=grad_t_groups[sample])
        if needs_weight:
            grad_weight.baddbmm_(grad_groups[sample], t_groups[sample].transpose(1, 2))
    return None if grad_weight is None else grad_weight.view_as(weight)


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
    projections = F.conv3d(x, projection_weight(weights))
    theta, phi, g = projections.split(weights.theta.shape[0], 1)
    size = scratch_size(x, theta, groups)
    y_buffer, scratch = workspace(x, theta.shape, (size,)) if training else (g, workspace(x, (size,))[0])
    moments = row_moments(rows(phi, groups), rows(g, groups), layout.coefficients, scratch)
    if layout.dot:
        y, s = theta, moments[1]
    else:  # inference: y is written over g, no longer needed
        y, s = y_buffer, None
        row_polynomial(rows(theta, groups), moments, rows(y, groups))
    u = grouped_projection(weights.z, y, groups)
    saved_tensors = (x, projections) if training else ()
    projections = theta = phi = g = y = y_buffer = None
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
        u_block, r = take(u_rows, b), b.flat
        by_channel = (u_block.shape[0], gamma.shape[1], -1)
        scale, count = saved.scale[r].unsqueeze(-1), u_block.shape[1]
        centred = torch.sub(u_block, saved.mean[r], out=block_of(scratch[0], u_block)).view(by_channel)
        grad_block = take(grad_rows, b).view(by_channel)
        grad_centred = torch.mul(grad_block, centred, out=block_of(scratch[1], centred)).sum(-1, keepdim=True)
        grad_sum = grad_block.sum(-1, keepdim=True)
        grad_gamma.append(scale * grad_centred)
        grad_beta.append(grad_sum)
        weighted_centred = (gamma[r] * grad_centred).sum(1, keepdim=True)
        weighted_sum = (gamma[r] * grad_sum).sum(1, keepdim=True)
        out = take(out_rows, b).view(by_channel)
        torch.mul(centred, -weighted_centred * scale**3 / count, out=out)
        out.sub_(weighted_sum * scale / count)
        out.addcmul_(grad_block, gamma[r] * scale)
        # d a / d s = eps / (s^2 var + eps)^(3/2)
        grad_s.append(layout.eps * saved.inverse_std[r] ** 3 * weighted_centred.view(-1, 1))
    per_channel = (samples, -1)
    return (torch.cat(grad_gamma).view(per_channel).sum(0), torch.cat(grad_beta).view(per_channel).sum(0),
            torch.cat(grad_s))


def kernel_backward(grad_y: torch.Tensor, theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor,
                    layout: Layout, saved: Saved, grad_s: torch.Tensor, out: Sequence[torch.Tensor],
                    scratch: torch.Tensor) -> None:
    """Writes the gradients at theta, phi and g into ``out``, given the one at y (``grad_y``) and,
    for the dot kernel (where y is theta), at s."""
    groups, coefficients = layout.groups, layout.coefficients
    theta_r, phi_r, g_r, grad_y_r = (rows(t, groups) for t in (theta, phi, g, grad_y))
    grad_theta, grad_phi, grad_g = (rows(t, groups) for t in out)
    if layout.dot:  # s = c_1 sum(phi * g)
        grad_s = (grad_s * coefficients[1]).view(*theta_r.shape[:2], 1)
        grad_theta.copy_(grad_y_r)
        torch.mul(g_r, grad_s, out=grad_phi)
        torch.mul(phi_r, grad_s, out=grad_g)
        return
    weights = row_moments(theta_r, grad_y_r, coefficients, scratch)  # a_p = c_p sum(theta^p grad_y)
    row_polynomial(theta_r, derivative(saved.moments), grad_theta, factor=grad_y_r)
    row_polynomial(phi_r, derivative(weights), grad_phi, factor=g_r)
    row_polynomial(phi_r, weights, grad_g)


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
        x, projections, u, *parameters = ctx.saved_tensors
        weights, layout, saved = BlockWeights(*parameters), ctx.layout, ctx.saved
        needs, inner = ctx.needs_input_grad, weights.theta.shape[0]
        theta, phi, g = projections.split(inner, 1)
        grad = grad.contiguous()
        size = scratch_size(x, theta, layout.groups)
        region, grad_y, *scratch = workspace(
            x, (max(u.numel() + theta.numel(), projections.numel()),), theta.shape, (size,), (size,))
        grad_u = region[: u.numel()].view_as(u)
        grad_gamma, grad_beta, grad_s = normalise_rows_backward(grad, u, weights, layout, saved, grad_u, tuple(scratch))
        if layout.dot:
            y = theta
        else:
            y = region[u.numel(): u.numel() + theta.numel()].view_as(theta)
            row_polynomial(rows(theta, layout.groups), saved.moments, rows(y, layout.groups))
        grad_z = grouped_projection_backward(weights.z, y, grad_u, layout.groups, grad_y, needs[4])
        # grad_u and y are not needed from here on: their region holds the projections' gradients
        grad_projections = region[: projections.numel()].view_as(projections)
        kernel_backward(grad_y, theta, phi, g, layout, saved, grad_s, grad_projections.split(inner, 1), scratch[0])
        grad_x, grad_weight = _conv_backward(grad_projections, x, projection_weight(weights), needs[0], any(needs[1:4]))
        grad_weights = [None] * 3 if grad_weight is None else grad_weight.split(inner)
        return (grad_x.add_(grad) if needs[0] else None,
                *(w if n else None for w, n in zip(grad_weights, needs[1:4])), grad_z,
                grad_gamma if needs[5] else None, grad_beta if needs[6] else None, None)


def fused_cgnl(x: torch.Tensor, weights: BlockWeights, layout: Layout) -> torch.Tensor:
    """The block on ``x`` (``B x C x T x H x W``), through :class:`FusedCGNL` where a gradient is needed."""
    if needs_gradient(x, *weights):
        return FusedCGNL.apply(x, *weights, layout)
    return block_forward(x, weights, layout, training=False)[0]
