"""2D -> 3D inflation: a torchvision ResNet state dict into the I3D ResNet.

Each 3D kernel is the 2D kernel repeated over time and divided by its temporal
size, so that on a static clip (one frame repeated) each inflated convolution
gives the 2D convolution's output wherever its temporal window holds no padding.
BatchNorm parameters and statistics are copied. The torchvision head (``fc``) is
copied only when its shape matches; non-local blocks keep their own
initialisation.
"""

from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from pytorchvideo.models.resnet import ResBlock

from cgnl_video.models.pretrained import PretrainedError, load_2d_state_dict
from cgnl_video.models.resnet3d import STAGE_INDICES

# torchvision block child -> I3D block child, for bottleneck and basic blocks.
_BLOCK_MAP = {
    "conv1": "branch2.conv_a", "bn1": "branch2.norm_a",
    "conv2": "branch2.conv_b", "bn2": "branch2.norm_b",
    "conv3": "branch2.conv_c", "bn3": "branch2.norm_c",
    "downsample.0": "branch1_conv", "downsample.1": "branch1_norm",
}


def _module_pairs(model: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    """Yields (torchvision prefix, 3D module) for the stem, every residual block and the head."""
    yield "conv1", model.blocks[0].conv
    yield "bn1", model.blocks[0].norm
    for layer, stage_index in enumerate(STAGE_INDICES, start=1):
        res_blocks = [b for b in model.blocks[stage_index].res_blocks if isinstance(b, ResBlock)]
        for index, block in enumerate(res_blocks):
            modules = dict(block.named_modules())
            for name_2d, name_3d in _BLOCK_MAP.items():
                if name_3d in modules:
                    yield f"layer{layer}.{index}.{name_2d}", modules[name_3d]
    yield "fc", model.blocks[-1].proj


def _inflate_tensor(name: str, value_2d: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if value_2d.dim() == 4 and target.dim() == 5:
        kt = target.shape[2]
        value_2d = value_2d.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt
    if value_2d.shape != target.shape:
        raise ValueError(
            f"{name}: 2D weight of shape {tuple(value_2d.shape)} does not fit the 3D "
            f"model's {tuple(target.shape)}"
        )
    return value_2d


def inflate_from_2d(model: nn.Module, state_dict_2d: Dict[str, torch.Tensor]) -> List[str]:
    """Copies a torchvision ResNet state dict into ``model``, inflating convolutions.

    Args:
        model: an I3D ResNet from :func:`cgnl_video.models.build_model` of the same depth.
        state_dict_2d: torchvision ``resnet{18,34,50,101}`` state dict.
    Returns:
        the 2D keys that were not used (the head when its shape differs).
    Raises:
        ValueError naming the key when a needed key is missing or a shape differs.
    """
    used = set()
    with torch.no_grad():
        for prefix, module in _module_pairs(model):
            for tensor_name, target in list(module.named_parameters()) + list(module.named_buffers()):
                key = f"{prefix}.{tensor_name}"
                if key not in state_dict_2d:
                    raise ValueError(f"{key}: missing from the 2D state dict")
                value = state_dict_2d[key]
                if prefix == "fc" and value.shape != target.shape:
                    continue
                target.copy_(_inflate_tensor(key, value, target))
                used.add(key)
    return sorted(set(state_dict_2d) - used)


def load_inflated_weights(model: nn.Module, source: str, state: Optional[Dict[str, torch.Tensor]] = None
                          ) -> List[str]:
    """Loads the torchvision ResNet weights of ``source`` into ``model`` (inflated).

    ``source``: ``torchvision:resnet{18,34,50,101}`` (ImageNet weights, see
    :mod:`cgnl_video.models.pretrained`) or a file holding a state dict (plain, or under
    ``state_dict`` / ``model``); ``state``: its state dict when already read
    (:func:`~cgnl_video.models.pretrained.load_2d_state_dict`). Returns the unused 2D keys;
    raises PretrainedError naming the source on any mismatch.
    """
    state = load_2d_state_dict(source) if state is None else state
    try:
        return inflate_from_2d(model, state)
    except ValueError as err:
        raise PretrainedError(f"{source}: {err}") from err
