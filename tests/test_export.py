"""``cgnl_video.inference.export`` and ``tools/export.py``: ONNX / TorchScript files that match eager PyTorch.

Parity runs on real decoded clips (the tiny synthetic dataset's val items, normalised by
``InputNormalizer``) at batch 1, 2 and 3: the batch dimension of the files is dynamic.
"""

from pathlib import Path

import onnx
import pytest
import torch
import torch.nn as nn
from conftest import run_tool, tiny_opts

from cgnl_video.config import get_cfg
from cgnl_video.config.loading import merge_overrides
from cgnl_video.datasets import build_dataset
from cgnl_video.engine.checkpoint import load_for_test, load_test_checkpoint
from cgnl_video.engine.normalize import build_normalizer
from cgnl_video.inference import export
from cgnl_video.models import CGNLBlock, NonLocalBlock, build_model

TOLERANCE = 1e-4
MODELS = {
    "cgnl-dot": ["NONLOCAL.TYPE", "cgnl", "CGNL.KERNEL", "dot"],
    "cgnl-gaussian": ["NONLOCAL.TYPE", "cgnl", "CGNL.KERNEL", "gaussian"],
    "cgnl-embedded_gaussian": ["NONLOCAL.TYPE", "cgnl", "CGNL.KERNEL", "embedded_gaussian"],
    "nl": ["NONLOCAL.TYPE", "nl"],
    "nl-pool": ["NONLOCAL.TYPE", "nl", "NONLOCAL.POOL", "[1,2,2]"],
    "plain": ["NONLOCAL.LOCATION", "[[],[],[],[]]"],
}


def tiny_cfg(data_dir, output_dir, extra=()):
    cfg = get_cfg()
    merge_overrides(cfg, tiny_opts(data_dir, str(output_dir)) + list(extra))
    return cfg


@pytest.fixture(scope="module")
def clips(data_dir):
    """The 3 first val videos' centre clips, normalised: float32 ``3 x 3 x 4 x 32 x 32``."""
    cfg = tiny_cfg(data_dir, "unused")
    dataset = build_dataset(cfg, "val")
    videos = torch.stack([dataset[(index, 0)]["video"] for index in range(3)])
    return build_normalizer(cfg, torch.device("cpu"))(videos)


def randomise_weights(model: nn.Module) -> None:
    """Random affine and running statistics in every norm layer, so that the blocks
    (identities when new, with their zero-initialised final norms) change their input,
    and a classifier of std 1 rather than 0.01, so that the logits are not near 0."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
            if isinstance(module, (nn.BatchNorm3d, nn.GroupNorm)):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
            if isinstance(module, nn.BatchNorm3d):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)


def residual_changes(model: nn.Module, video: torch.Tensor) -> list:
    """Max ``|block(x) - x|`` of every non-local block of ``model`` on ``video``."""
    changes = []
    hooks = [
        module.register_forward_hook(lambda _, args, out: changes.append(float((out - args[0]).abs().max())))
        for module in model.modules() if isinstance(module, (CGNLBlock, NonLocalBlock))
    ]
    with torch.no_grad():
        model(video)
    for hook in hooks:
        hook.remove()
    return changes


def max_diffs(run, model: nn.Module, clips: torch.Tensor) -> list:
    """Max abs difference of the logits of ``run`` and of ``model`` at batch 1, 2 and 3."""
    diffs = []
    for batch in (1, 2, 3):
        with torch.no_grad():
            expected = model(clips[:batch])
        got = run(clips[:batch])
        assert got.shape == expected.shape == (batch, 2)
        diffs.append(float((got - expected).abs().max()))
    return diffs


@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("name", list(MODELS))
def test_exported_model_matches_eager_on_real_clips(name, fmt, data_dir, clips, tmp_path):
    cfg = tiny_cfg(data_dir, tmp_path, MODELS[name])
    model = build_model(cfg).eval()
    randomise_weights(model)
    changes = residual_changes(model, clips[:1])
    assert len(changes) == (0 if name == "plain" else 2)
    assert all(change > 1e-2 for change in changes)  # the blocks take part in the logits
    with torch.no_grad():
        assert model(clips).abs().max() > 1.0  # the tolerance is small next to the logits
    out = tmp_path / f"model.{fmt}"
    export.export_model(model, cfg, fmt, str(out))
    diffs = max_diffs(export.load_exported(str(out), fmt), model, clips)
    assert max(diffs) <= TOLERANCE, f"{name} {fmt}: max abs diff per batch 1/2/3: {diffs}"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left behind


def test_onnx_input_is_the_normalised_clip_with_a_dynamic_batch(data_dir, tmp_path):
    cfg = tiny_cfg(data_dir, tmp_path)
    out = tmp_path / "model.onnx"
    export.export_model(build_model(cfg), cfg, "onnx", str(out))
    graph = onnx.load(str(out)).graph
    (video,), (logits,) = graph.input, graph.output
    dims = [d.dim_param or d.dim_value for d in video.type.tensor_type.shape.dim]
    assert (video.name, dims) == ("video", ["batch", 3, 4, 32, 32])
    assert video.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert logits.name == "logits"
    assert [d.dim_param or d.dim_value for d in logits.type.tensor_type.shape.dim] == ["batch", 2]


def test_failed_export_leaves_no_file_and_keeps_the_old_one(data_dir, tmp_path, monkeypatch):
    cfg = tiny_cfg(data_dir, tmp_path / "run")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous export")

    def half_written(model, example, path):
        Path(path).write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    monkeypatch.setitem(export.EXPORTERS, "onnx", half_written)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export.export_model(build_model(cfg), cfg, "onnx", str(out))
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_tool_exports_the_newest_checkpoint_of_a_trained_run(trained_run, data_dir, clips, tmp_path):
    opts = trained_run.opts
    cfg = tiny_cfg(data_dir, trained_run.out)
    model = build_model(cfg).eval()
    load_for_test(model, *load_test_checkpoint(cfg))
    for fmt in export.FORMATS:
        out = tmp_path / f"model.{fmt}"
        result = run_tool("export.py", ["--format", fmt, "--out", str(out), *opts])
        assert f"from {load_test_checkpoint(cfg)[0]}" in result.stdout
        diffs = max_diffs(export.load_exported(str(out), fmt), model, clips)
        assert max(diffs) <= TOLERANCE, f"{fmt}: {diffs}"


@pytest.mark.parametrize("args, out, message", [
    (["--format", "tflite"], "model.onnx", "error: unknown --format 'tflite': expected one of onnx, torchscript"),
    (["--format", "onnx"], "model.onnx", "error: no checkpoint in "),
    (["--format", "onnx", "--checkpoint", "{tmp}/missing.pyth"], "model.onnx", "missing.pyth: checkpoint not found"),
    (["--format", "onnx"], "a_file/model.onnx", "a_file/model.onnx: cannot create folder"),
], ids=["unknown format", "no checkpoint in OUTPUT_DIR", "missing --checkpoint", "unwritable --out folder"])
def test_tool_bad_input_is_one_line_and_writes_nothing(args, out, message, data_dir, tmp_path):
    (tmp_path / "a_file").write_text("a file, not a folder")
    args = [arg.format(tmp=tmp_path) for arg in args] + ["--out", str(tmp_path / out)]
    result = run_tool("export.py", [*args, *tiny_opts(data_dir, str(tmp_path / "run"))], check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]
