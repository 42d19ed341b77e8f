"""``Recognizer(..., runtime="onnxruntime")`` and ``tools/predict.py --runtime onnxruntime``: the
scores of onnxruntime equal eager PyTorch's on the real decoded test videos of a tiny trained
run, from an exported file or exported on the fly (cached); bad files and a missing onnxruntime
are refused in one line. The torch runtime's CPU model (oneDNN convolutions, channels_last_3d)
(BatchNorms folded, oneDNN convolutions, channels_last_3d) gives eager PyTorch's logits."""

import copy
import json
import os
import sys
import tempfile

import pytest
import torch
import torch.nn as nn
from conftest import tiny_opts, try_tool
from test_export import MODELS, randomise_weights, tiny_cfg

from cgnl_video import Recognizer
from cgnl_video.config import get_cfg
from cgnl_video.config.loading import merge_overrides
from cgnl_video.errors import UserError
from cgnl_video.inference.export import export_model
from cgnl_video.inference.runtime import cache_path, cpu_inference_model
from cgnl_video.models import build_model

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported_run(trained_run, tmp_path_factory):
    """The session's tiny trained run and its ONNX file from tools/export.py: (OUTPUT_DIR, options, file)."""
    onnx_file = str(tmp_path_factory.mktemp("runtime") / "model.onnx")
    result = try_tool("export.py", ["--format", "onnx", "--out", onnx_file, *trained_run.opts])
    assert result.returncode == 0, result.stderr[-3000:]
    return trained_run.out, trained_run.opts, onnx_file


@pytest.fixture
def temp_folder(tmp_path, monkeypatch):
    """``tempfile.gettempdir()`` inside this test's folder: where the on-the-fly export caches."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def decoded_videos(data_dir):
    with open(os.path.join(data_dir, "test.csv")) as handle:
        return [os.path.join(data_dir, line.split()[0]) for line in handle]


def assert_same_scores(eager: Recognizer, other: Recognizer, videos) -> None:
    """Logits of every view and the combined scores of every video agree within TOLERANCE."""
    for path in videos:
        views = eager.views(path)
        with torch.no_grad():
            expected = eager.model(eager.normalize(views))
        assert expected.abs().max() > 10 * TOLERANCE  # the logits are not all ~0
        assert (other.runner(other.normalize(views)) - expected).abs().max() <= TOLERANCE, path
        assert (other.scores(views) - eager.scores(views)).abs().max() <= TOLERANCE, path


def test_onnxruntime_scores_equal_torch_on_decoded_videos(exported_run, data_dir, temp_folder):
    out, _, onnx_file = exported_run
    eager = Recognizer.from_run(out, device="cpu")
    videos = decoded_videos(data_dir)
    assert len(videos) == 4
    assert_same_scores(eager, Recognizer.from_run(out, runtime="onnxruntime", onnx_file=onnx_file), videos)
    on_the_fly = Recognizer.from_run(out, runtime="onnxruntime")
    cached = cache_path(on_the_fly.cfg, on_the_fly.checkpoint)
    assert os.path.dirname(os.path.dirname(cached)) == str(temp_folder) and os.path.isfile(cached)
    assert_same_scores(eager, on_the_fly, videos)
    written = os.stat(cached).st_mtime_ns
    Recognizer.from_run(out, runtime="onnxruntime")
    assert os.stat(cached).st_mtime_ns == written  # the next recognizer reuses the export
    ((name, score),), ((eager_name, eager_score),) = on_the_fly.predict(videos[0], topk=1), eager.predict(videos[0], topk=1)
    assert name == eager_name and score == pytest.approx(eager_score, abs=TOLERANCE)


def predictions(result) -> list:
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_predict_tool_runtime_onnxruntime_prints_the_torch_scores(exported_run, data_dir):
    out, _, onnx_file = exported_run
    videos = decoded_videos(data_dir)
    torch_lines = predictions(try_tool("predict.py", ["--run", out, "--json", "--topk", "2", *videos]))
    onnx_lines = predictions(try_tool("predict.py", ["--run", out, "--json", "--topk", "2", "--runtime",
                                                 "onnxruntime", "--onnx", onnx_file, *videos]))
    assert [line["video"] for line in onnx_lines] == videos
    for ours, theirs in zip(onnx_lines, torch_lines):
        assert [name for name, _ in ours["top"]] == [name for name, _ in theirs["top"]]
        assert [s for _, s in ours["top"]] == pytest.approx([s for _, s in theirs["top"]], abs=TOLERANCE)


def other_model_file(data_dir, folder, key, value) -> str:
    cfg = get_cfg()
    merge_overrides(cfg, tiny_opts(data_dir, str(folder), **{key: value}))
    path = str(folder / f"other_{key}.onnx")
    export_model(build_model(cfg), cfg, "onnx", path)
    return path


@pytest.mark.parametrize("key, value, described", [
    ("DATA.NUM_FRAMES", 8, "video 3 x 8 x 32 x 32, logits 2; this config's model: video 3 x 4 x 32 x 32, logits 2"),
    ("MODEL.NUM_CLASSES", 3, "video 3 x 4 x 32 x 32, logits 3; this config's model: video 3 x 4 x 32 x 32, logits 2"),
], ids=["input shape", "class count"])
def test_onnx_file_of_another_model_is_refused_in_one_line(exported_run, data_dir, tmp_path, key, value, described):
    other = other_model_file(data_dir, tmp_path, key, value)
    result = try_tool("predict.py", ["--run", exported_run[0], "--runtime", "onnxruntime", "--onnx", other,
                                 decoded_videos(data_dir)[0]])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {other}: an ONNX file of another model: {described} "
                                                  "(export it with tools/export.py)"]


@pytest.mark.parametrize("content, message", [
    (None, "ONNX file not found"),
    (b"not a model", "not an ONNX model onnxruntime can load ("),
], ids=["missing", "not onnx"])
def test_bad_onnx_file_is_one_line(exported_run, tmp_path, content, message):
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as caught:
        Recognizer.from_run(exported_run[0], runtime="onnxruntime", onnx_file=str(path))
    assert str(caught.value).startswith(f"{path}: {message}") and "\n" not in str(caught.value)


def test_missing_onnxruntime_says_how_to_install_it(exported_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` meets when absent
    with pytest.raises(UserError, match=r"needs onnxruntime, which is not installed: pip install \.\[export\]$"):
        Recognizer.from_run(exported_run[0], runtime="onnxruntime", onnx_file=exported_run[2])


@pytest.mark.parametrize("kwargs, message", [
    ({"runtime": "tensorrt"}, "unknown runtime 'tensorrt': expected one of torch, onnxruntime"),
    ({"onnx_file": "model.onnx"}, "an ONNX file (model.onnx) runs with runtime onnxruntime, not torch"),
    ({"runtime": "onnxruntime", "device": "meta"}, "runtime onnxruntime runs on the CPU, not on meta"),
], ids=["unknown runtime", "file without onnxruntime", "not the cpu"])
def test_bad_runtime_choice_is_refused_before_loading(exported_run, kwargs, message):
    with pytest.raises(UserError, match=f"^{message.replace('(', '[(]').replace(')', '[)]')}$"):
        Recognizer.from_run(exported_run[0], **kwargs)


def test_predict_tool_onnx_needs_runtime_onnxruntime(exported_run, data_dir):
    result = try_tool("predict.py", ["--run", exported_run[0], "--onnx", exported_run[2], decoded_videos(data_dir)[0]])
    assert result.returncode == 2 and "--onnx needs --runtime onnxruntime" in result.stderr


@pytest.mark.parametrize("name", list(MODELS))
def test_cpu_inference_model_folds_norms_and_gives_eager_logits_through_onednn(name, data_dir, tmp_path):
    cfg = tiny_cfg(data_dir, tmp_path, MODELS[name])
    model = build_model(cfg).eval()
    randomise_weights(model)
    video = torch.randn(3, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    fast = cpu_inference_model(copy.deepcopy(model))
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert len(norms) > 10 and not any(isinstance(m, nn.BatchNorm3d) for m in fast.modules())  # all folded
    with torch.no_grad():
        expected = model(video)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            got = fast(video)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max(), name  # float32 rounding only
    kernels = {event.key for event in profile.key_averages()}
    assert "aten::mkldnn_convolution" in kernels and "aten::slow_conv3d_forward" not in kernels
