"""Parameter and FLOP counts with fvcore (one multiply-add = one flop).

fvcore's tracer does not know ``scaled_dot_product_attention`` (the NL block's
softmax attention); :func:`count_flops` counts it as its two matrix products,
``B x N x N' x inner`` multiply-adds each. Element-wise operations (activations,
the CGNL block's Taylor moments) are not counted, as everywhere in fvcore.
"""

import logging
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis, parameter_count
from fvcore.nn.jit_handles import get_shape


def _sdpa_flop(inputs, outputs) -> int:
    query, key = get_shape(inputs[0]), get_shape(inputs[1])
    *batch, n_query, dim = query
    n_key = key[-2]
    batch_size = 1
    for size in batch:
        batch_size *= size
    return 2 * batch_size * n_query * n_key * dim


def flop_analysis(model: nn.Module, input_shape: Sequence[int]) -> FlopCountAnalysis:
    """fvcore analysis of ``model`` in eval mode on one zero clip of ``input_shape`` (C, T, H, W)."""
    was_training = model.training
    model.eval()
    clip = torch.zeros(1, *input_shape)
    analysis = FlopCountAnalysis(model, clip)
    analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
    analysis.total()  # runs the trace now, while in eval mode
    model.train(was_training)
    return analysis


def count_params(model: nn.Module) -> int:
    """Number of parameters (fvcore ``parameter_count``)."""
    return parameter_count(model)[""]


def count_gflops(model: nn.Module, input_shape: Sequence[int]) -> float:
    """GFLOPs of one clip of ``input_shape`` (C, T, H, W)."""
    return flop_analysis(model, input_shape).total() / 1e9


def block_table(model: nn.Module, input_shape: Sequence[int], names: Sequence[str]) -> List[Dict]:
    """Per top-level block of ``model.blocks``: name, output shape, params (M), GFLOPs.

    Args:
        model: a pytorchvideo ``Net``.
        input_shape: (C, T, H, W) of one clip.
        names: one name per ``model.blocks`` entry.
    """
    shapes = {}
    hooks = [
        block.register_forward_hook(
            lambda _m, _i, out, index=index: shapes.__setitem__(index, tuple(int(s) for s in out.shape[1:]))
        )
        for index, block in enumerate(model.blocks)
    ]
    try:
        flops = flop_analysis(model, input_shape).by_module()
    finally:
        for hook in hooks:
            hook.remove()
    params = parameter_count(model)
    return [
        {
            "name": name,
            "output": shapes[index],
            "params_m": params.get(f"blocks.{index}", 0) / 1e6,
            "gflops": flops.get(f"blocks.{index}", 0) / 1e9,
        }
        for index, name in enumerate(names)
    ]
