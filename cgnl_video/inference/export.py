"""Exports a config's model to ONNX or TorchScript, the batch dimension dynamic.

The exported model takes what the model takes in PyTorch: the float32, normalised clip
``B x 3 x T x H x W`` (RGB, T = ``DATA.NUM_FRAMES``, H = W = ``DATA.TEST_CROP_SIZE``,
values ``(uint8 / 255 - DATA.MEAN) / DATA.STD`` per channel, as
:class:`cgnl_video.engine.normalize.InputNormalizer` computes them), and returns the
``B x NUM_CLASSES`` logits (no softmax). Only B may change; T, H and W are fixed.

- ``onnx``: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``,
  opset :data:`ONNX_OPSET`) with ``dynamic_axes`` on the batch; input ``video``,
  output ``logits``. The ``dynamo=True`` exporter needs ``onnxscript``, which this
  project does not depend on; the legacy one exports every block here as is.
- ``torchscript``: ``torch.jit.trace`` (``torch.jit.script`` cannot compile
  pytorchvideo's blocks: their convolutions keep NumPy integers as strides). The
  traced graph reads the batch size from the input's shape, so any B runs.

Every file is written through :func:`cgnl_video.utils.io.atomic_output`: a failed
export leaves no file behind and an existing one untouched.
"""

import contextlib
import os
import warnings
from typing import Callable, Iterator, Optional

import torch
import torch.nn as nn
from fvcore.common.config import CfgNode

from cgnl_video.errors import UserError
from cgnl_video.inference.trained import load_trained
from cgnl_video.utils.io import atomic_output

FORMATS = ("onnx", "torchscript")
INPUT_NAME, OUTPUT_NAME = "video", "logits"
ONNX_OPSET = 17
# Batch size of the example input that export traces with: not 1, which tracing may
# treat as a constant.
EXAMPLE_BATCH = 2

Runner = Callable[[torch.Tensor], torch.Tensor]


class ExportError(UserError):
    """Bad export input (format, output path): the message is one line for the user."""


def check_format(fmt: str) -> None:
    """Raises :class:`ExportError` unless ``fmt`` is one of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown --format '{fmt}': expected one of {', '.join(FORMATS)}")


def check_writable(out_path: str) -> None:
    """Creates the folder of ``out_path`` if needed; :class:`ExportError` if it cannot be written."""
    folder = os.path.dirname(os.path.abspath(out_path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ExportError(f"--out {out_path}: cannot create folder {folder} ({err.strerror})") from err
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"--out {out_path}: folder {folder} is not writable")


def input_shape(cfg: CfgNode, batch: int) -> tuple:
    """``(B, 3, T, H, W)``: the model input of ``cfg`` (T = NUM_FRAMES, H = W = TEST_CROP_SIZE)."""
    size = cfg.DATA.TEST_CROP_SIZE
    return (batch, 3, cfg.DATA.NUM_FRAMES, size, size)


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Hides torch's deprecation notices of ``torch.jit`` and the legacy ONNX exporter, and
    the tracer's notice on GroupNorm's batch-size check (a check, not part of the graph)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.functional")
        yield


def _export_onnx(model: nn.Module, example: torch.Tensor, path: str) -> None:
    dynamic = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    torch.onnx.export(
        model, (example,), path, dynamo=False, opset_version=ONNX_OPSET,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic,
    )


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: str) -> None:
    torch.jit.trace(model, example).save(path)


EXPORTERS = {"onnx": _export_onnx, "torchscript": _export_torchscript}


def export_model(model: nn.Module, cfg: CfgNode, fmt: str, out_path: str) -> None:
    """Writes ``model`` (moved to the CPU, eval mode) as ``fmt`` to ``out_path``, atomically.

    Traced with a ``EXAMPLE_BATCH x 3 x T x H x W`` input of ``cfg`` (:func:`input_shape`);
    the file maps ``B x 3 x T x H x W`` float32 clips to ``B x NUM_CLASSES`` logits.
    """
    check_format(fmt)
    model = model.cpu().eval()
    example = torch.randn(input_shape(cfg, EXAMPLE_BATCH), generator=torch.Generator().manual_seed(0))
    with atomic_output(out_path) as tmp, _quiet_exporters(), torch.no_grad():
        EXPORTERS[fmt](model, example, tmp)


def export_from_config(cfg: CfgNode, fmt: str, out_path: str, checkpoint: Optional[str] = None) -> str:
    """Exports the model of ``cfg`` with the weights of ``checkpoint`` (default: the config's test
    checkpoint), loaded as the :class:`~cgnl_video.inference.recognizer.Recognizer` loads them
    (:func:`~cgnl_video.inference.trained.load_trained`, :func:`export_model`); returns the
    checkpoint's path."""
    check_format(fmt)
    check_writable(out_path)
    trained = load_trained(cfg, checkpoint, "cpu")
    export_model(trained.model, cfg, fmt, out_path)
    return trained.checkpoint


def onnx_session(path: str):
    """An onnxruntime CPU session of the ONNX file at ``path``, with as many intra-op threads
    as torch uses; :class:`ExportError` when onnxruntime is not installed."""
    try:
        import onnxruntime  # the "export" extra; only needed to run ONNX files
    except ImportError as err:
        raise ExportError(f"running {path} needs onnxruntime, which is not installed: pip install .[export]") from err
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def session_runner(session) -> Runner:
    """``session`` (of a file :func:`export_model` wrote) as a float32 clips -> logits function."""
    return lambda video: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: video.contiguous().numpy()})[0])


def no_grad_runner(module: Callable[[torch.Tensor], torch.Tensor]) -> Runner:
    """``module`` (eager or TorchScript, in eval mode) called under ``torch.no_grad``."""

    def run(video: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(video)

    return run


def _torchscript_runner(path: str) -> Runner:
    with _quiet_exporters():
        return no_grad_runner(torch.jit.load(path, map_location="cpu"))


def load_exported(path: str, fmt: str) -> Runner:
    """The exported model at ``path`` on the CPU: float32 ``B x 3 x T x H x W`` -> ``B x K`` logits.

    ONNX runs in an onnxruntime session with as many threads as torch uses.
    """
    check_format(fmt)
    return session_runner(onnx_session(path)) if fmt == "onnx" else _torchscript_runner(path)
