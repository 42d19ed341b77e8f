"""``Recognizer``: a trained model ready to recognise videos, as mmaction2's inference API.

    from cgnl_video import Recognizer

    recognizer = Recognizer.from_run("output/demo/run")          # its config.yaml, newest checkpoint
    recognizer = Recognizer("configs/demo/synthetic_cgnl.yaml", "ckpt.pyth", ["TEST.NUM_SPATIAL_CROPS", "1"])
    recognizer.predict("video.mp4")           # [(class, score), ...] top-k, multi-view (the test views)
    recognizer.predict_clip(frames)           # the same for decoded uint8 frames N x H x W x 3
    recognizer.features("video.mp4")          # pooled backbone features (D,), averaged over the views
    Recognizer.from_run("output/demo/run", runtime="onnxruntime")  # scores by onnxruntime, on the CPU

Views are the test config's K clips x S crops (``TEST.*``, :mod:`cgnl_video.datasets.views`).
Every file (predict, features, timeline, stream, fps) is decoded as in training, with
``DATA.DECODING_BACKEND`` under the watchdog of ``DATA.DECODE_TIMEOUT``: a file that hangs or
crashes the decoder raises ``DecodeError`` and the next file gets a new decoding process.
Scores are the views' softmax scores combined by ``TEST.ENSEMBLE_METHOD`` (``sum``: their
mean, so they read as probabilities). ``runtime`` says what computes the views' logits: eager
PyTorch (``torch``) or onnxruntime (``onnxruntime``, of ``onnx_file`` or of the model exported on
the fly; :mod:`cgnl_video.inference.runtime`); ``features`` and the attention maps stay eager.
"""

import logging
import os
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from fvcore.common.config import CfgNode

from cgnl_video.config.loading import load_config, load_run_config
from cgnl_video.datasets.decoders import build_decoder
from cgnl_video.datasets.lists import CLASSES_FILE, read_classes
from cgnl_video.datasets.views import build_views
from cgnl_video.decoding.frames import FramesVideo
from cgnl_video.decoding.video import iter_frames
from cgnl_video.engine.normalize import build_normalizer
from cgnl_video.engine.scoring import video_scores
from cgnl_video.errors import ConfigError
from cgnl_video.inference.arguments import ArgumentError, check_topk
from cgnl_video.inference.prediction import Prediction, top_classes
from cgnl_video.inference.runtime import build_runner, check_runtime
from cgnl_video.inference.timeline import FrameCallback, Window, timeline
from cgnl_video.inference.trained import load_trained
from cgnl_video.models.resnet3d import classifier

logger = logging.getLogger(__name__)


def _class_names(cfg: CfgNode, checkpoint: dict) -> List[str]:
    """Names saved in the checkpoint, else ``classes.txt`` of the config's data, else numbers."""
    names = checkpoint.get("classes")
    path = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, CLASSES_FILE)
    if not names and os.path.isfile(path):
        names = read_classes(path)
    if not names:
        logger.warning("no class names in the checkpoint nor %s: using numbers", path)
        names = [str(i) for i in range(cfg.MODEL.NUM_CLASSES)]
    if len(names) != cfg.MODEL.NUM_CLASSES:
        raise ConfigError(f"MODEL.NUM_CLASSES={cfg.MODEL.NUM_CLASSES} but the model's classes are {len(names)}")
    return list(names)


class Recognizer:
    """A config's model with trained weights and its test views (see the module docstring).

    Args:
        cfg_file: YAML config (None: the defaults); ``overrides``: ``KEY VALUE`` pairs.
        checkpoint: weights to use (default: the newest checkpoint of ``OUTPUT_DIR``).
        device: where the model runs (default: the GPU when there is one; the CPU for onnxruntime).
        runtime: ``torch`` (eager) or ``onnxruntime``; ``onnx_file``: the ONNX file onnxruntime runs
            (``tools/export.py``; default: the model exported on the fly into a cache file).

    Attributes: ``test_views`` (:class:`~cgnl_video.datasets.views.Views` of the test split),
    ``decoder`` (opens files, under the watchdog: :func:`~cgnl_video.datasets.decoders.build_decoder`),
    ``normalize``, ``model`` (eager), ``runner`` (what scores the views: ``model`` or the
    onnxruntime session), ``class_names``, ``cfg``, ``checkpoint``.
    """

    def __init__(self, cfg_file: Optional[str] = None, checkpoint: Optional[str] = None,
                 overrides: Sequence[str] = (), device: Optional[Union[str, torch.device]] = None,
                 runtime: str = "torch", onnx_file: Optional[str] = None):
        self._setup(load_config(cfg_file, overrides), checkpoint, device, runtime, onnx_file)

    @classmethod
    def from_cfg(cls, cfg: CfgNode, checkpoint: Optional[str] = None,
                 device: Optional[Union[str, torch.device]] = None, runtime: str = "torch",
                 onnx_file: Optional[str] = None) -> "Recognizer":
        """The recognizer of a loaded config (see :func:`cgnl_video.config.load_config`)."""
        recognizer = cls.__new__(cls)
        recognizer._setup(cfg, checkpoint, device, runtime, onnx_file)
        return recognizer

    def _setup(self, cfg: CfgNode, checkpoint: Optional[str], device: Optional[Union[str, torch.device]],
               runtime: str, onnx_file: Optional[str]) -> None:
        self.cfg = cfg
        gpu = torch.cuda.is_available() and runtime != "onnxruntime"
        self.device = torch.device(device or ("cuda" if gpu else "cpu"))
        check_runtime(runtime, onnx_file, self.device)
        trained = load_trained(self.cfg, checkpoint, self.device)
        self.model, self.checkpoint = trained.model, trained.checkpoint
        self.class_names = _class_names(self.cfg, trained.saved)
        self.runner = build_runner(runtime, trained, self.cfg, onnx_file)
        self.normalize = build_normalizer(self.cfg, self.device)
        self.test_views = build_views(self.cfg, "test")
        self.decoder = build_decoder(self.cfg)  # under the watchdog of DATA.DECODE_TIMEOUT

    @classmethod
    def from_run(cls, output_dir: str, checkpoint: Optional[str] = None, overrides: Sequence[str] = (),
                 device: Optional[Union[str, torch.device]] = None, runtime: str = "torch",
                 onnx_file: Optional[str] = None) -> "Recognizer":
        """The model of a training run: ``output_dir/config.yaml`` and its newest checkpoint."""
        return cls.from_cfg(load_run_config(output_dir, overrides), checkpoint, device, runtime, onnx_file)

    def scores(self, views: torch.Tensor) -> torch.Tensor:
        """uint8 views ``V x C x T x H x W`` -> ``NUM_CLASSES`` combined scores (mean for ``sum``)."""
        scores = video_scores(self.runner, views, self.cfg, self.normalize)
        return scores / len(views) if self.cfg.TEST.ENSEMBLE_METHOD == "sum" else scores

    def top(self, scores: torch.Tensor, topk: int = 5) -> Prediction:
        """``(class name, score)`` of the ``topk`` largest ``scores``."""
        check_topk(topk)
        return top_classes(scores, self.class_names, topk)

    def views(self, path: str) -> torch.Tensor:
        """The test views of the video at ``path`` (uint8 ``V x C x T x H x W``); DecodeError."""
        return self.test_views.read(self.decoder.open, path)

    def predict(self, path: str, topk: int = 5) -> Prediction:
        """Top-``topk`` ``(class, score)`` of the video at ``path``."""
        check_topk(topk)
        return self.top(self.scores(self.views(path)), topk)

    def predict_clip(self, frames: Union[np.ndarray, torch.Tensor], fps: float = 0.0, topk: int = 5) -> Prediction:
        """Top-``topk`` of decoded frames (uint8 ``N x H x W x 3``, RGB; any strides, e.g. the
        ``frames[..., ::-1]`` of a BGR array), viewed as a video."""
        check_topk(topk)
        try:
            video = FramesVideo(np.ascontiguousarray(frames), fps)
        except ValueError as err:
            raise ArgumentError(f"predict_clip: {err}") from None
        return self.top(self.scores(self.test_views(video)), topk)

    def timeline(self, path: str, window: float = 2.0, stride: float = 1.0, smooth: int = 1, topk: int = 5,
                 on_frame: Optional[FrameCallback] = None) -> List[Window]:
        """Scored sliding windows (seconds) of a long video, decoded once as a stream (see
        :mod:`cgnl_video.inference.timeline`)."""
        return timeline(self, path, window, stride, smooth, topk, on_frame)

    def fps(self, path: str) -> float:
        """Frames per second of the video at ``path`` (of its displayed frames)."""
        with self.decoder.open(path) as video:
            return video.fps

    def stream(self, path: str) -> Iterator[np.ndarray]:
        """The video's frames at its own size, decoded once, in order (uint8 ``H x W x 3``)."""
        with self.decoder.open(path) as video:
            yield from iter_frames(video)

    @torch.no_grad()
    def features(self, path: str) -> torch.Tensor:
        """Pooled backbone features of the video at ``path`` (the classifier's input), averaged
        over the views: ``D`` (2048 for R50)."""
        captured = []
        handle = classifier(self.model).register_forward_hook(lambda module, args, output: captured.append(args[0]))
        try:
            for chunk in self.views(path).split(self.cfg.TEST.MAX_VIEWS_PER_BATCH):
                self.model(self.normalize(chunk))
        finally:
            handle.remove()
        per_view = torch.cat([c.reshape(c.shape[0], -1, c.shape[-1]).mean(1) for c in captured])
        return per_view.float().mean(0).cpu()

