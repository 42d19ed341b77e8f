"""NonLocalBlock against the explicit N x N' non-local formula."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cgnl_video.models import NonLocalBlock


def explicit_nonlocal(block, x, kernel, pool_size):
    """y_i = sum_j f(theta_i, phi_j) g_j / C(x) with the full pairwise matrix.

    With ``pool_size``, phi and g are computed from the max-pooled input (PySlowFast).
    """
    b, _, t, h, w = x.shape
    pooled = F.max_pool3d(x, pool_size, pool_size) if pool_size else x
    theta, phi, g = block.theta(x), block.phi(pooled), block.g(pooled)
    inner = theta.shape[1]
    theta, phi, g = (v.reshape(b, inner, -1) for v in (theta, phi, g))
    pairwise = torch.einsum("bci,bcj->bij", theta, phi)
    if kernel == "embedded_gaussian":
        weights = torch.softmax(pairwise / inner**0.5, dim=-1)
    else:
        weights = pairwise / phi.shape[-1]
    y = torch.einsum("bij,bcj->bci", weights, g).reshape(b, inner, t, h, w)
    return block.bn(block.z(y)) + x


@pytest.mark.parametrize("pool_size", [None, (1, 2, 2)])
@pytest.mark.parametrize("kernel", ["embedded_gaussian", "dot"])
def test_matches_explicit_formula_forward_and_backward(kernel, pool_size):
    torch.manual_seed(0)
    block = NonLocalBlock(8, 4, kernel=kernel, pool_size=pool_size).double()
    for p in block.parameters():
        nn.init.normal_(p, std=0.5)
    block.eval()  # BatchNorm with its running statistics, as in the explicit version
    x = torch.randn(2, 8, 2, 4, 4, dtype=torch.float64)
    x_fast, x_slow = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    fast = block(x_fast)
    slow = explicit_nonlocal(block, x_slow, kernel, pool_size)
    torch.testing.assert_close(fast, slow)
    grad_out = torch.randn_like(fast)
    grads_fast = torch.autograd.grad(fast, [x_fast, *block.parameters()], grad_out)
    grads_slow = torch.autograd.grad(slow, [x_slow, *block.parameters()], grad_out)
    for gf, gs in zip(grads_fast, grads_slow):
        torch.testing.assert_close(gf, gs)


def test_new_block_is_identity_with_zero_gamma_batchnorm():
    block = NonLocalBlock(16, 8)
    x = torch.randn(2, 16, 2, 3, 3)
    torch.testing.assert_close(block(x), x)
    assert torch.all(block.bn.weight == 0)


def test_pooling_subsamples_phi_and_g_only():
    block = NonLocalBlock(16, 8, pool_size=(1, 2, 2))
    assert block.pool.kernel_size == (1, 2, 2) and block.pool.stride == (1, 2, 2)
    assert NonLocalBlock(16, 8).pool is None
    assert block(torch.randn(1, 16, 2, 4, 6)).shape == (1, 16, 2, 4, 6)


def test_phi_and_g_convolve_the_pooled_input():
    """The pool comes before the phi / g convolutions: they see 4x fewer positions."""
    block = NonLocalBlock(16, 8, pool_size=(1, 2, 2))
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = tuple(inputs[0].shape)
        return hook

    for name in ("theta", "phi", "g"):
        getattr(block, name).register_forward_hook(record(name))
    block(torch.randn(1, 16, 2, 4, 6))
    assert seen == {"theta": (1, 16, 2, 4, 6), "phi": (1, 16, 2, 2, 3), "g": (1, 16, 2, 2, 3)}


def test_unknown_kernel_is_named():
    with pytest.raises(ValueError, match="gaussian_rbf"):
        NonLocalBlock(16, 8, kernel="gaussian_rbf")
