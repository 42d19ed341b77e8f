"""What runs a Recognizer's model on normalised clips: eager PyTorch or onnxruntime.

- ``torch`` (the default): the trained model itself, on its device; on the CPU prepared by
  :func:`cpu_inference_model` (BatchNorms folded, every Conv3d through oneDNN, weights
  channels_last_3d): 0.59x the plain eager time of one 8x256x256 view of ``I3D_8x8_R50_CGNL1``
  at one thread, 0.97x onnxruntime's (``docs/PERFORMANCE.md``, export section).
- ``onnxruntime``: an onnxruntime CPU session (as many intra-op threads as torch uses) of an
  ONNX file written by ``tools/export.py`` (``onnx_file``), or else of the trained model
  exported on the fly (:func:`~cgnl_video.inference.export.export_model`) into a cache file
  in the temp folder, named by a hash of the config, the checkpoint (path, size, mtime) and
  the torch version, so that the next Recognizer of the same model reuses it.

The file must be of the config's model: its input ``video`` ``batch x 3 x T x H x W`` with the
config's T = ``DATA.NUM_FRAMES`` and H = W = ``DATA.TEST_CROP_SIZE``, its output ``logits``
``batch x MODEL.NUM_CLASSES``; any other file is refused in one line. Both runtimes map the same
normalised clips to logits, so the views, their softmax and ensemble
(:func:`~cgnl_video.engine.scoring.video_scores`) are the same.
"""

import hashlib
import os
import tempfile
from typing import Iterator, Optional, Tuple

import torch
import torch.fx
import torch.nn as nn
from fvcore.common.config import CfgNode
from torch.nn.utils.fusion import fuse_conv_bn_weights

from cgnl_video.errors import UserError
from cgnl_video.inference.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    Runner,
    export_model,
    input_shape,
    onnx_session,
    session_runner,
)
from cgnl_video.inference.trained import Trained
from cgnl_video.models.cgnl import CGNLBlock

RUNTIMES = ("torch", "onnxruntime")
CACHE_FOLDER = "cgnl_video-onnx"  # under tempfile.gettempdir()


class RuntimeSetupError(UserError):
    """A runtime that cannot run (unknown name, wrong device, bad ONNX file): one line."""


def check_runtime(runtime: str, onnx_file: Optional[str], device: torch.device) -> None:
    """Refuses an unknown ``runtime``, an ``onnx_file`` without onnxruntime, onnxruntime off the CPU."""
    if runtime not in RUNTIMES:
        raise RuntimeSetupError(f"unknown runtime '{runtime}': expected one of {', '.join(RUNTIMES)}")
    if onnx_file is not None and runtime != "onnxruntime":
        raise RuntimeSetupError(f"an ONNX file ({onnx_file}) runs with runtime onnxruntime, not {runtime}")
    if runtime == "onnxruntime" and device.type != "cpu":
        raise RuntimeSetupError(f"runtime onnxruntime runs on the CPU, not on {device}")


class OneDNNConv3d(nn.Conv3d):
    """A Conv3d that runs oneDNN's kernel (``torch.mkldnn_convolution``) on float32 CPU inputs
    without autograd, whatever the shapes. PyTorch's own choice (``ConvParams::use_mkldnn`` in
    ``aten/src/ATen/native/Convolution.cpp``) sends kernels that are 1 x 1 in space (the I3D
    bottlenecks' 1x1x1 and 3x1x1) at one thread, and small inputs at batch 1, to its native
    ``slow_conv3d`` (im2col + GEMM): 47 of the R50's 57 convolutions, half its eager time.
    Anything else (training, other devices and types) takes the usual path."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]):
        usual = torch.is_grad_enabled() or input.device.type != "cpu" or input.dtype != torch.float32 \
            or self.padding_mode != "zeros" or isinstance(self.padding, str)
        if usual:
            return super()._conv_forward(input, weight, bias)
        return torch.mkldnn_convolution(input, weight, bias, self.padding, self.stride, self.dilation, self.groups)


class _BlockTracer(torch.fx.Tracer):
    """Traces a model with each CGNL block as one call: its forward branches on whether a gradient
    is needed, which symbolic tracing cannot follow, and it holds no BatchNorm to fold."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, CGNLBlock) or super().is_leaf_module(module, qualified_name)


def conv_bn_pairs(model: nn.Module) -> Iterator[Tuple[str, str]]:
    """Qualified names ``(conv, norm)`` of each ``nn.Conv3d`` whose output only feeds a
    ``nn.BatchNorm3d`` with running statistics, read from ``model``'s ``torch.fx`` graph."""
    modules = dict(model.named_modules())
    for node in _BlockTracer().trace(model).nodes:
        source = node.args[0] if node.op == "call_module" and node.args else None
        if isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1 \
                and type(modules[source.target]) is nn.Conv3d and isinstance(modules[node.target], nn.BatchNorm3d) \
                and modules[node.target].running_mean is not None:
            yield source.target, node.target


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """``model`` (eval, in place) with each BatchNorm3d of :func:`conv_bn_pairs` folded into its
    convolution's weight and bias (``torch.nn.utils.fusion.fuse_conv_bn_weights``) and replaced
    by ``nn.Identity``: the same function, one pass over the activations less per pair."""
    for conv_name, norm_name in list(conv_bn_pairs(model)):
        conv, norm = model.get_submodule(conv_name), model.get_submodule(norm_name)
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                                      norm.eps, norm.weight, norm.bias)
        parent, _, child = norm_name.rpartition(".")
        setattr(model.get_submodule(parent), child, nn.Identity())
    return model


def cpu_inference_model(model: nn.Module) -> nn.Module:
    """``model`` (eval, in place) for eager CPU inference: BatchNorms folded into the convolutions
    (:func:`fold_batch_norms`), every ``nn.Conv3d`` an :class:`OneDNNConv3d` (the same
    parameters) and the weights channels_last_3d, so that oneDNN's outputs, and so the max
    pools (10x faster channels-last), stay channels-last."""
    if not torch.backends.mkldnn.is_available():
        return model
    fold_batch_norms(model)
    for module in model.modules():
        if type(module) is nn.Conv3d:
            module.__class__ = OneDNNConv3d
    return model.to(memory_format=torch.channels_last_3d)


def build_runner(runtime: str, trained: Trained, cfg: CfgNode, onnx_file: Optional[str]) -> Runner:
    """Normalised float32 clips ``B x 3 x T x H x W`` -> ``B x NUM_CLASSES`` logits, by ``runtime``."""
    if runtime == "torch":
        on_cpu = next(trained.model.parameters()).device.type == "cpu"
        return cpu_inference_model(trained.model) if on_cpu else trained.model
    return onnx_runner(onnx_file or cached_export(trained, cfg), cfg)


def cache_path(cfg: CfgNode, checkpoint: str) -> str:
    """The on-the-fly export's file for ``cfg`` with the weights of ``checkpoint``."""
    stat = os.stat(checkpoint)
    key = "\n".join([cfg.dump(), os.path.abspath(checkpoint), str(stat.st_size), str(stat.st_mtime_ns),
                     torch.__version__])
    name = hashlib.sha256(key.encode()).hexdigest()[:20] + ".onnx"
    return os.path.join(tempfile.gettempdir(), CACHE_FOLDER, name)


def cached_export(trained: Trained, cfg: CfgNode) -> str:
    """The ONNX file of ``trained`` in the cache, exported (atomically) unless already there."""
    path = cache_path(cfg, trained.checkpoint)
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        export_model(trained.model, cfg, "onnx", path)
    return path


def onnx_runner(path: str, cfg: CfgNode) -> Runner:
    """The session of the ONNX file at ``path``, checked to be of the model of ``cfg``."""
    if not os.path.isfile(path):
        raise RuntimeSetupError(f"{path}: ONNX file not found")
    try:
        session = onnx_session(path)
    except UserError:
        raise
    except Exception as err:  # onnxruntime's own errors (InvalidProtobuf, Fail, ...) share no base class
        raise RuntimeSetupError(f"{path}: not an ONNX model onnxruntime can load ({str(err).splitlines()[0]})") from err
    check_signature(session, path, cfg)
    return session_runner(session)


def _describe(signature) -> str:
    return ", ".join(f"{name} {' x '.join(str(d) for d in dims)}" for name, dims in signature)


def check_signature(session, path: str, cfg: CfgNode) -> None:
    """:class:`RuntimeSetupError` unless the file maps this config's clips to its classes
    (names and per-clip shapes of the input and the output; the batch may be anything)."""
    got = [(node.name, list(node.shape)[1:]) for node in session.get_inputs() + session.get_outputs()]
    expected = [(INPUT_NAME, list(input_shape(cfg, 1))[1:]), (OUTPUT_NAME, [cfg.MODEL.NUM_CLASSES])]
    if got != expected:
        raise RuntimeSetupError(f"{path}: an ONNX file of another model: {_describe(got)}; this config's "
                                f"model: {_describe(expected)} (export it with tools/export.py)")
