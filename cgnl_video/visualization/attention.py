"""Attention maps of CGNL and NL blocks, from the block's input, by the compact form.

CGNL block (Eq. 8 / 12 of the paper): inside channel group ``k`` the output at channel ``a``
of position ``q`` is ``y = s sum_(b, j) f(theta_(a,q), phi_(b,j)) g_(b,j)`` over every channel
``b`` of the group at every position ``j``, with ``f(u, v) = sum_p c_p u^p v^p``. The weight
of position ``j`` for query position ``q`` is the part of the group's outputs at ``q`` that
position ``j`` contributes, summed over the groups:

    A(q, j) = s sum_k sum_p c_p (sum_(a in k) theta_(a,q)^p) (sum_(b in k) phi_(b,j)^p g_(b,j))

(for the dot kernel one term, ``theta_q . 1`` times ``phi_j . g_j``). It costs O(P x C x N) for
all queries at once, never the (C_g N) x (C_g N) kernel matrix (the tests check it against
that matrix). Maps are signed; :func:`display` takes their magnitude.

NL block (Wang et al.): the softmax attention ``softmax_j(theta_q . phi_j / sqrt(inner))`` over
the (pooled) key positions, or ``theta_q . phi_j / N'`` for the dot kernel.

The response of either block is ``|block(x) - x|`` averaged over channels: where it changes
its input. Shapes: block input ``B x C x T x H x W``; maps ``B x Q x T' x H' x W'`` for ``Q``
query positions (``T' x H' x W'`` = the block's key grid: its input's, or the pooled one).
"""

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cgnl_video.models.cgnl import CGNLBlock
from cgnl_video.models.nonlocal_block import NonLocalBlock


def _flat(v: torch.Tensor, groups: int) -> torch.Tensor:
    """``B x C x T x H x W`` -> ``B x G x C_g x N``."""
    b, c = v.shape[:2]
    return v.reshape(b, groups, c // groups, -1)


def _cgnl_scale(block: CGNLBlock, theta: torch.Tensor) -> float:
    if not block.use_scale:
        return 1.0
    return ((theta.shape[1] // block.groups) * theta[0, 0].numel()) ** -0.5


@torch.no_grad()
def cgnl_attention(block: CGNLBlock, x: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Weights ``A(q, j)`` of every position ``j`` for the flat query positions ``queries`` (Q).

    ``x``: the block's input ``B x C x T x H x W``; returns ``B x Q x T x H x W``.
    """
    theta, phi, g = block.theta(x), block.phi(x), block.g(x)
    scale = _cgnl_scale(block, theta)
    theta_q = _flat(theta, block.groups)[..., queries]  # B x G x C_g x Q
    phi_f, g_f = _flat(phi, block.groups), _flat(g, block.groups)  # B x G x C_g x N
    total = 0
    for p, coefficient in enumerate(block.coefficients):
        if coefficient == 0:
            continue
        query_part = (theta_q ** p).sum(2)  # B x G x Q
        key_part = (phi_f ** p * g_f).sum(2)  # B x G x N
        total = total + coefficient * torch.einsum("bgq,bgn->bqn", query_part, key_part)
    return (scale * total).reshape(x.shape[0], len(queries), *x.shape[2:])


@torch.no_grad()
def nl_attention(block: NonLocalBlock, x: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """The NL block's attention of the flat query positions ``queries`` over its key positions.

    ``x``: the block's input ``B x C x T x H x W``; returns ``B x Q x T' x H' x W'`` (the key
    grid: pooled when the block subsamples).
    """
    theta = block.theta(x).flatten(2)[..., queries]  # B x inner x Q
    keys_from = block.pool(x) if block.pool is not None else x  # the block pools before phi / g
    phi = block.phi(keys_from)  # B x inner x T' x H' x W'
    logits = torch.einsum("biq,bin->bqn", theta, phi.flatten(2))
    if block.kernel == "embedded_gaussian":
        weights = (logits / theta.shape[1] ** 0.5).softmax(-1)
    else:
        weights = logits / phi[0, 0].numel()
    return weights.reshape(x.shape[0], len(queries), *phi.shape[2:])


@torch.no_grad()
def response(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``|block(x) - x|`` averaged over channels: ``B x T x H x W``."""
    return (block(x) - x).abs().mean(1)


def attention(block: nn.Module, x: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """:func:`cgnl_attention` or :func:`nl_attention` by the block's type."""
    if isinstance(block, CGNLBlock):
        return cgnl_attention(block, x, queries)
    if isinstance(block, NonLocalBlock):
        return nl_attention(block, x, queries)
    raise TypeError(f"not a non-local block: {type(block).__name__}")


def strongest_positions(response_map: torch.Tensor, count: int) -> torch.Tensor:
    """Flat indices of the ``count`` positions of largest response (``T x H x W`` map)."""
    return response_map.flatten().topk(min(count, response_map.numel())).indices


def display(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Magnitudes of ``... x T' x H' x W'`` maps, scaled to [0, 1] per map and resized
    (trilinear) to ``size`` = (T, H, W): ``... x T x H x W``."""
    lead = maps.shape[:-3]
    flat = maps.abs().reshape(-1, 1, *maps.shape[-3:]).float()
    flat = flat / flat.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1, 1, 1)
    resized = F.interpolate(flat, size=tuple(size), mode="trilinear", align_corners=False)
    return resized.reshape(*lead, *size).clamp(0, 1)
