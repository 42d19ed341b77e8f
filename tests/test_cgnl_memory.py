"""Training memory of the CGNL kernels: the activations autograd saves, counted exactly."""

import pytest
import torch
import torch.nn as nn

from cgnl_video.benchmarks.blocks import saved_tensor_bytes
from cgnl_video.models import CGNLBlock

TAYLOR_OVER_DOT_MAX = 1.10


def saved_bytes(kernel: str, order: int, channels: int = 64, shape=(4, 7, 7)) -> int:
    torch.manual_seed(0)
    block = CGNLBlock(channels, channels // 2, groups=8, kernel=kernel, order=order)
    return saved_tensor_bytes(block, torch.randn(2, channels, *shape))


@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("kernel", ["gaussian", "embedded_gaussian"])
def test_taylor_kernels_save_at_most_ten_percent_more_than_dot(kernel, order):
    assert saved_bytes(kernel, order) <= TAYLOR_OVER_DOT_MAX * saved_bytes("dot", 1)


def test_saved_bytes_count_each_saved_activation_once():
    """A conv and a ReLU on its output: the conv output (saved by ReLU) counts, x does not."""
    module = nn.Sequential(nn.Conv3d(4, 6, 1), nn.ReLU())
    x = torch.randn(2, 4, 3, 5, 5)
    assert saved_tensor_bytes(module, x) == 2 * 6 * 3 * 5 * 5 * 4
