"""CGNL / NL attention maps: the compact computation against the explicit kernel matrix, and
against the block's own output."""

import pytest
import torch
import torch.nn as nn
from conftest import run_tool
from test_cgnl import explicit_kernel_matrix, randomised_block

from cgnl_video.models import NonLocalBlock
from cgnl_video.visualization.attention import attention, display, response, strongest_positions


def explicit_cgnl_attention(block, x, queries):
    """A(q, j) from the (C_g N) x (C_g N) kernel matrix of each group, summed over the channels
    of q (rows) and of j (columns) and over the groups."""
    theta, phi, g = block.theta(x), block.phi(x), block.g(x)
    b, inner = theta.shape[:2]
    n, cg = theta[0, 0].numel(), inner // block.groups
    scale = (cg * n) ** -0.5 if block.use_scale else 1.0
    maps = torch.zeros(b, len(queries), n, dtype=x.dtype)
    for i in range(b):
        for k in range(block.groups):
            rows = slice(k * cg, (k + 1) * cg)
            flat = [v[i, rows].reshape(-1) for v in (theta, phi, g)]  # channel-major: index c * n + pos
            weighted = scale * explicit_kernel_matrix(block.kernel, block.order, flat[0], flat[1]) * flat[2][None, :]
            per_position = weighted.reshape(cg, n, cg, n).sum(dim=(0, 2))  # query pos x key pos
            maps[i] += per_position[queries]
    return maps.reshape(b, len(queries), *x.shape[2:])


def inner_output(block, x):
    """The block's y (input of its output convolution z), captured with a hook."""
    captured = {}

    def keep(module, inputs, output):
        captured["y"] = inputs[0]

    handle = block.z.register_forward_hook(keep)
    block(x)
    handle.remove()
    return captured["y"]


@pytest.mark.parametrize("use_scale", [False, True])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("kernel, order", [("dot", 1), ("gaussian", 2), ("embedded_gaussian", 3)])
def test_cgnl_maps_match_the_explicit_kernel_matrix(kernel, order, groups, use_scale):
    block = randomised_block(kernel, order, groups, use_scale)
    x = torch.randn(2, 8, 2, 3, 3, dtype=torch.float64)
    queries = torch.tensor([0, 7, 17])
    maps = attention(block, x, queries)
    assert maps.shape == (2, 3, 2, 3, 3)
    torch.testing.assert_close(maps, explicit_cgnl_attention(block, x, queries), rtol=1e-9, atol=1e-9)
    # summed over key positions, the map gives the block's output at the query, summed over channels
    y = inner_output(block, x).flatten(2)[..., queries].sum(1)  # B x Q
    torch.testing.assert_close(maps.flatten(2).sum(-1), y, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("pool", [None, (1, 2, 2)])
@pytest.mark.parametrize("kernel", ["embedded_gaussian", "dot"])
def test_nl_maps_are_the_blocks_attention(kernel, pool):
    torch.manual_seed(0)
    block = NonLocalBlock(8, 4, kernel=kernel, pool_size=pool).double()
    for p in block.parameters():
        nn.init.normal_(p, std=0.5)
    x = torch.randn(2, 8, 2, 4, 4, dtype=torch.float64)
    queries = torch.tensor([1, 5, 17])
    maps = attention(block, x, queries)  # B x Q x T' x H' x W' (the key grid)
    assert maps.shape == ((2, 3, 2, 2, 2) if pool else (2, 3, 2, 4, 4))
    if kernel == "embedded_gaussian":
        torch.testing.assert_close(maps.flatten(2).sum(-1), torch.ones(2, 3, dtype=torch.float64))
    values = block.g(block.pool(x) if pool else x).flatten(2)  # B x inner x N'
    y = torch.einsum("bqn,bin->biq", maps.flatten(2), values)
    torch.testing.assert_close(y, inner_output(block, x).flatten(2)[..., queries], rtol=1e-9, atol=1e-9)


def test_response_display_and_strongest_positions():
    block = randomised_block("dot", 1, 2, False)
    x = torch.randn(1, 8, 2, 3, 3, dtype=torch.float64)
    resp = response(block, x)
    assert resp.shape == (1, 2, 3, 3)
    torch.testing.assert_close(resp, (block(x) - x).abs().mean(1))
    top = strongest_positions(resp[0], 2)
    assert resp[0].flatten()[top].tolist() == sorted(resp[0].flatten().tolist(), reverse=True)[:2]
    shown = display(torch.tensor([[[[-4.0, 2.0], [1.0, 0.0]]]]), (2, 4, 4))
    assert shown.shape == (1, 2, 4, 4) and shown.max() <= 1 and shown.min() >= 0
    assert shown[0, 0, 0, 0] == 1.0  # the largest magnitude (-4) maps to 1


def test_visualize_tool_writes_a_grid_and_a_gif_per_block(trained_run, data_dir, tmp_path):
    import os

    from PIL import Image

    opts = trained_run.copy(tmp_path / "run").opts  # visualize writes into OUTPUT_DIR/attention_maps
    video = os.path.join(data_dir, open(os.path.join(data_dir, "test.csv")).readline().split()[0])
    shown = run_tool("visualize.py", [video, "--queries", "2", *opts])
    written = shown.stdout.split()
    names = sorted(os.path.basename(p) for p in written)
    assert names == ["blocks.3.res_blocks.1.gif", "blocks.3.res_blocks.1.png",
                     "blocks.4.res_blocks.1.gif", "blocks.4.res_blocks.1.png"]
    png = Image.open(next(p for p in written if p.endswith(".png")))
    assert png.size == (4 * 32, (2 + 2) * 32)  # T frames wide; clip, response, 2 queries high
    gif = Image.open(next(p for p in written if p.endswith(".gif")))
    assert gif.n_frames == 4 and gif.size == (4 * 32, 32)
    missing = run_tool("visualize.py", [str(tmp_path / "none.mp4"), *opts], check=False)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr and "none.mp4" in missing.stderr
