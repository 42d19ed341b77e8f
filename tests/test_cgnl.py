"""CGNLBlock: the compact path against the explicit generalized non-local formula."""

import math
import threading

import pytest
import torch
import torch.nn as nn

from cgnl_video.models import CGNLBlock, cgnl_fused
from cgnl_video.models.cgnl_fused import BlockWeights, FusedCGNL, Layout, fused_cgnl, workspace
from cgnl_video.models.taylor import GAUSSIAN_GAMMA, compact_generalized_nonlocal, taylor_coefficients


def explicit_kernel_matrix(kernel, order, a, b):
    """The full M x M Taylor-approximated pairwise kernel f(a_i, b_j), built directly."""
    outer = a[:, None] * b[None, :]
    if kernel == "dot":
        return outer
    if kernel == "gaussian":
        beta = math.exp(-2 * GAUSSIAN_GAMMA)
        return sum(beta * (2 * GAUSSIAN_GAMMA * outer) ** p / math.factorial(p) for p in range(order + 1))
    return sum(outer**p / math.factorial(p) for p in range(order + 1))


def explicit_cgnl(block, x):
    """Eq. 8 applied literally: y = K g per (sample, group), then z, gn and the residual."""
    b, _, t, h, w = x.shape
    theta, phi, g = block.theta(x), block.phi(x), block.g(x)
    inner = theta.shape[1]
    groups = block.groups
    tg, pg, gg = (v.reshape(b, groups, -1) for v in (theta, phi, g))
    rows = []
    for i in range(b):
        outs = []
        for k in range(groups):
            kernel = explicit_kernel_matrix(block.kernel, block.order, tg[i, k], pg[i, k])
            if block.use_scale:
                kernel = kernel / math.sqrt(tg.shape[-1])
            outs.append(kernel @ gg[i, k])
        rows.append(torch.stack(outs))
    y = torch.stack(rows).reshape(b, inner, t, h, w)
    return block.gn(block.z(y)) + x


def randomised_block(kernel, order, groups, use_scale, channels=8, inner=8):
    torch.manual_seed(0)
    block = CGNLBlock(channels, inner, groups=groups, kernel=kernel, order=order, use_scale=use_scale)
    for p in block.parameters():  # the identity init would hide everything
        nn.init.normal_(p, std=0.5)
    return block.double()


@pytest.fixture(autouse=True)
def fused_at_any_size(monkeypatch):
    """The fused path takes block inputs of 4 MiB and more (MIN_BYTES); these tests' inputs are tiny."""
    monkeypatch.setattr(cgnl_fused, "MIN_BYTES", 0)


def run_path(block, x, path):
    """The block's output through one of its two paths: ``fused`` (what CPU inputs take) or ``composed``."""
    if path == "composed":
        return block.composed_forward(x)
    out = block(x)
    assert block.order == 0 or out.grad_fn is None or isinstance(out.grad_fn, FusedCGNL._backward_cls)
    return out


@pytest.mark.parametrize("path", ["fused", "composed"])
@pytest.mark.parametrize("use_scale", [False, True])
@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("kernel", ["dot", "gaussian", "embedded_gaussian"])
def test_compact_matches_explicit_forward_and_backward(kernel, order, groups, use_scale, path):
    block = randomised_block(kernel, order, groups, use_scale)
    x = torch.randn(2, 8, 2, 3, 3, dtype=torch.float64)
    x_fast = x.clone().requires_grad_(True)
    x_slow = x.clone().requires_grad_(True)
    fast = run_path(block, x_fast, path)
    slow = explicit_cgnl(block, x_slow)
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9)
    grad_out = torch.randn_like(fast)
    grads_fast = gradients(fast, x_fast, block, grad_out)
    grads_slow = gradients(slow, x_slow, block, grad_out)
    for gf, gs in zip(grads_fast, grads_slow):
        torch.testing.assert_close(gf, gs, rtol=1e-8, atol=1e-9)
    assert grads_fast[0].abs().sum() > 0


def gradients(out, x, block, grad_out):
    """Gradients w.r.t. x and every parameter (zeros where unused, e.g. theta at order 0)."""
    inputs = [x, *block.parameters()]
    grads = torch.autograd.grad(out, inputs, grad_out, allow_unused=True)
    return [torch.zeros_like(i) if g is None else g for i, g in zip(inputs, grads)]


@pytest.mark.parametrize("kernel, exact", [
    ("embedded_gaussian", lambda o: torch.exp(o)),
    ("gaussian", lambda o: math.exp(-2 * GAUSSIAN_GAMMA) * torch.exp(2 * GAUSSIAN_GAMMA * o)),
])
def test_taylor_kernel_converges_to_the_exact_kernel(kernel, exact):
    outer = torch.linspace(-2, 2, 41, dtype=torch.float64)
    coefs = taylor_coefficients(kernel, 20)
    approx = sum(c * outer**p for p, c in enumerate(coefs))
    torch.testing.assert_close(approx, exact(outer), rtol=1e-7, atol=1e-9)


def test_time_and_height_are_one_flattened_spatial_axis():
    """Same semantics as the authors' 2D SpatialCGNL with T x H flattened into one axis."""
    block = randomised_block("gaussian", 3, 2, True)
    x = torch.randn(2, 8, 3, 4, 5, dtype=torch.float64)
    as_2d = block(x.reshape(2, 8, 1, 12, 5)).reshape(x.shape)
    torch.testing.assert_close(block(x), as_2d)


def test_new_block_is_identity_with_the_authors_init():
    torch.manual_seed(0)
    block = CGNLBlock(64, 32)
    x = torch.randn(2, 64, 2, 5, 5)
    torch.testing.assert_close(block(x), x)
    assert torch.all(block.gn.weight == 0) and torch.all(block.gn.bias == 0)
    for conv in (block.theta, block.phi, block.g):
        assert conv.bias is None and conv.kernel_size == (1, 1, 1)
        assert 0.008 < conv.weight.std().item() < 0.012
    assert block.z.groups == 8 and block.gn.num_groups == 8


def test_defaults_follow_the_authors():
    block = CGNLBlock(1024, 512)
    assert (block.groups, block.kernel, block.order, block.use_scale) == (8, "dot", 3, False)
    assert [n for n, _ in block.named_children()] == ["theta", "phi", "g", "z", "gn"]


def test_channels_last_input_gives_the_same_output():
    block = randomised_block("dot", 1, 2, False).float()
    x = torch.randn(2, 8, 2, 3, 3)
    expected = block(x)
    torch.testing.assert_close(block(x.to(memory_format=torch.channels_last_3d)), expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_channels=12, inner_channels=8, groups=8), "groups=8"),
    (dict(in_channels=16, inner_channels=8, groups=8, order=-1), "order"),
    (dict(in_channels=16, inner_channels=8, groups=8, kernel="cosine"), "cosine"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CGNLBlock(**kwargs)


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("kernel", ["dot", "gaussian", "embedded_gaussian"])
def test_compact_kernel_backward_passes_gradcheck(kernel, order, groups):
    """The hand-written backward of CompactKernel against finite differences, float64."""
    torch.manual_seed(0)
    theta, phi, g = (torch.randn(2, groups, 6, dtype=torch.float64, requires_grad=True) for _ in range(3))
    coefficients = taylor_coefficients(kernel, order)
    fn = lambda t, p, v: compact_generalized_nonlocal(t, p, v, coefficients)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (theta, phi, g))


@pytest.mark.parametrize("path", ["fused", "composed"])
@pytest.mark.parametrize("kernel", ["dot", "gaussian", "embedded_gaussian"])
def test_block_passes_gradcheck_on_a_small_input(kernel, path):
    block = randomised_block(kernel, 3, 2, True)
    x = torch.randn(1, 8, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: run_path(block, v, path), (x,))


@pytest.mark.parametrize("block_values", [1, 150])
@pytest.mark.parametrize("kernel", ["dot", "embedded_gaussian"])
def test_the_fused_path_gives_the_same_a_row_or_a_few_rows_at_a_time(kernel, block_values, monkeypatch):
    """Long rows go one at a time, short ones together (``BLOCK_VALUES``): here 4 rows of 72 values
    in blocks of 1, or of 2 rows (never across samples), against the explicit formula, forward and backward."""
    monkeypatch.setattr(cgnl_fused, "BLOCK_VALUES", block_values)
    block = randomised_block(kernel, 3, 2, False)
    x = torch.randn(2, 8, 2, 3, 3, dtype=torch.float64)
    blocks = cgnl_fused.row_blocks(torch.empty(2, 2, 72))  # B x G x M
    assert [len(range(4)[b.flat]) for b in blocks] == ([1] * 4 if block_values == 1 else [2, 2])
    x_fast, x_slow = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    fast, slow = run_path(block, x_fast, "fused"), explicit_cgnl(block, x_slow)
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9)
    grad_out = torch.randn_like(fast)
    for gf, gs in zip(gradients(fast, x_fast, block, grad_out), gradients(slow, x_slow, block, grad_out)):
        torch.testing.assert_close(gf, gs, rtol=1e-8, atol=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(block(x), slow, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kernel, order", [("dot", 1), ("gaussian", 1), ("embedded_gaussian", 3)])
def test_fused_backward_passes_gradcheck_for_every_parameter(kernel, order):
    """FusedCGNL's hand-written gradients of input, the four convolution weights and GroupNorm's
    affine against finite differences (float64; the inner width differs from C, inner < C / 2)."""
    block = randomised_block(kernel, order, 2, False, channels=8, inner=2)
    layout = Layout(block.groups, block.coefficients, block.gn.eps, kernel == "dot")
    x = torch.randn(2, 8, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    parameters = [p.detach().clone().requires_grad_(True) for p in
                  (block.theta.weight, block.phi.weight, block.g.weight, block.z.weight, block.gn.weight, block.gn.bias)]
    assert torch.autograd.gradcheck(lambda v, *ps: fused_cgnl(v, BlockWeights(*ps), layout), (x, *parameters))


def test_only_large_contiguous_float_cpu_inputs_take_the_fused_path(monkeypatch):
    block = randomised_block("dot", 1, 2, False)
    x = torch.randn(2, 8, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert isinstance(block(x).grad_fn, FusedCGNL._backward_cls)
    monkeypatch.setattr(cgnl_fused, "MIN_BYTES", x.numel() * 8 + 1)
    assert not isinstance(block(x).grad_fn, FusedCGNL._backward_cls)
    monkeypatch.setattr(cgnl_fused, "MIN_BYTES", x.numel() * 8)
    assert isinstance(block(x).grad_fn, FusedCGNL._backward_cls)
    channels_last = x.detach().to(memory_format=torch.channels_last_3d).requires_grad_(True)
    assert not isinstance(block(channels_last).grad_fn, FusedCGNL._backward_cls)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not isinstance(block.float()(x.detach().float().requires_grad_(True)).grad_fn, FusedCGNL._backward_cls)


@pytest.mark.parametrize("kernel", ["dot", "gaussian"])
def test_fused_backward_twice_and_a_block_used_twice_give_the_composed_gradients(kernel):
    """The workspace is shared by every call on a thread: a retained graph run backward again, and
    two uses of one block in one graph, must not see each other's scratch values."""
    block = randomised_block(kernel, 2, 2, False)
    x = torch.randn(2, 8, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    other = torch.randn(2, 8, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn_like(x)
    inputs = [x, other, *block.parameters()]

    def grads(path):
        out = run_path(block, x, path) * run_path(block, other, path).sin()
        first = torch.autograd.grad(out, inputs, grad_out, retain_graph=True)
        return first, torch.autograd.grad(out, inputs, grad_out)

    (fused_first, fused_second), (composed, _) = grads("fused"), grads("composed")
    for a, b, c in zip(fused_first, fused_second, composed):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(b, c, rtol=1e-10, atol=1e-10)


def test_the_workspace_is_kept_between_calls_and_is_one_per_thread():
    like = torch.empty(0)
    first, second = workspace(like, (3, 4), (5,))
    assert first.shape == (3, 4) and second.shape == (5,)
    assert second.data_ptr() == first.data_ptr() + 12 * like.element_size()  # disjoint, one buffer
    assert workspace(like, (2,))[0].data_ptr() == first.data_ptr()  # smaller: the same pages again
    grown = workspace(like, (100,))[0]
    assert workspace(like, (7,))[0].data_ptr() == grown.data_ptr()  # grown once, then kept
    pointers = []
    thread = threading.Thread(target=lambda: pointers.append(workspace(like, (7,))[0].data_ptr()))
    thread.start()
    thread.join()
    assert pointers[0] != grown.data_ptr()


@pytest.mark.parametrize("kernel", ["dot", "gaussian", "embedded_gaussian"])
def test_inference_path_gives_the_training_path_output(kernel):
    block = randomised_block(kernel, 3, 2, False)
    x = torch.randn(2, 8, 2, 3, 3, dtype=torch.float64)
    with torch.no_grad():
        inferred = block(x)
    torch.testing.assert_close(inferred, block(x.requires_grad_(True)), rtol=1e-12, atol=1e-12)


def test_the_dot_kernel_reaches_the_output_as_a_sign_per_group_softened_by_groupnorm_eps():
    """With the dot kernel, y = theta * s per group (s = sum of phi * g over the group) and z and
    GroupNorm share the groups, so the block is x + GN'(sign(s) * z(theta)), GN' with eps / s^2:
    the non-local term carries one sign per group, and its size only against eps (docs/DESIGN.md)."""
    torch.manual_seed(0)
    block = CGNLBlock(64, 32, groups=4, kernel="dot").double()
    nn.init.normal_(block.gn.weight)
    nn.init.normal_(block.gn.bias)
    x = torch.randn(2, 64, 4, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        s = (block.phi(x).reshape(2, 4, -1) * block.g(x).reshape(2, 4, -1)).sum(-1, keepdim=True)
        u = block.z(block.theta(x)).reshape(2, 4, -1)
        mean, var = u.mean(-1, keepdim=True), u.var(-1, unbiased=False, keepdim=True)
        weight, bias = block.gn.weight.view(1, -1, 1, 1, 1), block.gn.bias.view(1, -1, 1, 1, 1)

        def rebuilt(eps):
            return (s.sign() * (u - mean) / torch.sqrt(var + eps)).reshape_as(x) * weight + bias + x

        assert torch.allclose(block(x), rebuilt(block.gn.eps / s**2), atol=1e-10)
        assert not torch.allclose(block(x), rebuilt(block.gn.eps), atol=1e-3)  # s's size does count via eps
