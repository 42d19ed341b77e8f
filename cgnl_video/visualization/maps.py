"""Attention and response maps of every non-local block of a model on one clip.

``block_maps(model, clip, num_queries)`` runs the model once with forward hooks that keep
each CGNL / NL block's input, then computes (``visualization/attention.py``) the block's
response and its attention for the ``num_queries`` positions of strongest response.
"""

from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
import torch.nn as nn

from cgnl_video.models import CGNLBlock, NonLocalBlock
from cgnl_video.visualization.attention import attention, response, strongest_positions


@dataclass
class BlockMaps:
    """One block's maps on one clip (batch element 0).

    ``response``: ``T' x H' x W'`` (the block's input grid); ``queries``: Q positions
    ``(t, h, w)`` in that grid; ``attention``: ``Q x T'' x H'' x W''`` (its key grid).
    """

    kind: str
    response: torch.Tensor
    queries: List[Tuple[int, int, int]]
    attention: torch.Tensor


def nonlocal_blocks(model: nn.Module) -> Dict[str, nn.Module]:
    """The model's CGNL and NL blocks by module name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (CGNLBlock, NonLocalBlock))}


@torch.no_grad()
def block_inputs(model: nn.Module, clip: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Each non-local block's input for ``clip`` (float ``1 x 3 x T x H x W``, normalised, on the
    model's device)."""
    inputs, handles = {}, []
    for name, block in nonlocal_blocks(model).items():
        handles.append(block.register_forward_hook(
            lambda module, args, output, name=name: inputs.__setitem__(name, args[0])))
    try:
        model.eval()(clip)
    finally:
        for handle in handles:
            handle.remove()
    return inputs


def block_maps(model: nn.Module, clip: torch.Tensor, num_queries: int) -> Dict[str, BlockMaps]:
    """:class:`BlockMaps` of every non-local block of ``model`` on ``clip``."""
    blocks, result = nonlocal_blocks(model), {}
    for name, x in block_inputs(model, clip).items():
        resp = response(blocks[name], x)[0].float().cpu()
        flat = strongest_positions(resp, num_queries)
        queries = [tuple(int(v) for v in torch.unravel_index(i, resp.shape)) for i in flat]
        kind = "CGNL" if isinstance(blocks[name], CGNLBlock) else "NL"
        result[name] = BlockMaps(kind, resp, queries, attention(blocks[name], x, flat.to(x.device))[0].float().cpu())
    return result
