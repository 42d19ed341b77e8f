"""The non-local reference's and PySlowFast's Caffe2 weights pickles, read safely and mapped
onto our I3D (``TRAIN.CHECKPOINT_FILE_PATH`` / ``TEST.CHECKPOINT_FILE_PATH``).

Format (facebookresearch/video-nonlocal-net ``lib/utils/checkpoints.py``,
``save_model_params``): a pickle (Python 2, protocol 2) of ``{"blobs": {name: ndarray}}``,
with the training state (``*_momentum``, ``lr``, ``model_iter``) beside the weights. It is
read by :class:`RestrictedUnpickler`, which builds NumPy arrays and plain containers and
refuses every other global, so that reading a file never runs its code.

Blob names, from the reference's model code (``lib/models/resnet_video.py`` /
``resnet_video_org.py``, ``resnet_helper.py``, ``nonlocal_helper.py``,
``model_builder_video.py``; PySlowFast converts the same names in
``slowfast/utils/c2_model_loading.py``):

- stem: ``conv1_w``, BN ``res_conv1_bn_{s,b,rm,riv}``;
- residual block ``i`` of stage ``res{2..5}``: ``res{s}_{i}_branch2{a,b,c}_w`` with BN
  ``res{s}_{i}_branch2{a,b,c}_bn_{s,b,rm,riv}``; the projection shortcut
  ``res{s}_{i}_branch1_w`` / ``res{s}_{i}_branch1_bn_*``;
- the non-local block after residual block ``i`` (``res_stage_nonlocal``):
  ``nonlocal_conv{s}_{i}_{theta,phi,g,out}_{w,b}`` and BN ``nonlocal_conv{s}_{i}_bn_*``
  (max-pool subsampling has no weights);
- classifier ``pred_w`` (``C x D``; ``C x D x 1 x 1 x 1`` when saved from the test net),
  ``pred_b``.

Spatial BN blobs: ``_s`` scale, ``_b`` bias, ``_rm`` running mean and ``_riv`` the running
*variance* despite its name (``lib/utils/bn_helper.py``: "riv is actually running var";
PySlowFast maps it to ``running_var``).
"""

import logging
import os
import pickle
import zipfile
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from pytorchvideo.models.resnet import ResBlock

from cgnl_video.errors import UserError
from cgnl_video.models.nonlocal_block import NonLocalBlock
from cgnl_video.models.resnet3d import HEAD_PREFIX, STAGE_INDICES

logger = logging.getLogger(__name__)

# Caffe2 spatial BN blob suffix -> BatchNorm3d entry.
BN_ENTRIES = (("s", "weight"), ("b", "bias"), ("rm", "running_mean"), ("riv", "running_var"))
# Non-local block convolution blob names -> NonLocalBlock attributes.
NL_CONVS = (("theta", "theta"), ("phi", "phi"), ("g", "g"), ("out", "z"))
# Training state saved beside the weights, not weights: ignored (counted).
TRAINING_STATE = ("lr", "model_iter")
MOMENTUM_SUFFIX = "_momentum"

StateDict = Dict[str, torch.Tensor]


class Caffe2Error(UserError, ValueError):
    """A Caffe2 pickle that cannot be read or does not fit the model; names the file and blob."""


class Caffe2Blobs(dict):
    """The ``blobs`` of a Caffe2 weights pickle (name -> ndarray or plain value)."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2; only the latin-1 form."""
    if encoding.replace("-", "").lower() != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_globals() -> Dict[Tuple[str, str], object]:
    """The globals a pickled ndarray / NumPy scalar names, by NumPy 1 and NumPy 2 module name."""
    try:
        from numpy._core import multiarray  # NumPy 2
    except ImportError:  # NumPy 1
        from numpy.core import multiarray
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): _latin1_encode}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays, NumPy scalars and plain containers; any other global is refused."""

    def __init__(self, file, path: str):
        super().__init__(file, encoding="latin1")  # Python 2 str -> latin-1 (NumPy's own rule)
        self.path = path
        self.allowed = _numpy_globals()

    def find_class(self, module: str, name: str):
        found = self.allowed.get((module, name))
        if found is None:
            raise Caffe2Error(
                f"{self.path}: refused, the pickle asks for the global {module}.{name} (a Caffe2 "
                f"weights file holds only NumPy arrays and plain containers; other objects could "
                f"run code)"
            )
        return found


def _unpickle(path: str):
    """The first object pickled in ``path``, built by :class:`RestrictedUnpickler`."""
    try:
        with open(path, "rb") as file:
            return RestrictedUnpickler(file, path).load()
    except Caffe2Error:
        raise
    except Exception as err:  # truncated or not a pickle
        raise Caffe2Error(
            f"{path}: unreadable as a Caffe2 pickle ({type(err).__name__}: {err}); the file may be "
            f"truncated: download it again"
        ) from err


def read_caffe2(path: str, required: bool = False) -> Optional[Caffe2Blobs]:
    """The blobs of the Caffe2 pickle ``path``, or None when it is another format.

    Recognised by content: a pickle whose top level is a dict with ``blobs``. With
    ``required`` (``TRAIN.CHECKPOINT_TYPE caffe2``) any other file is an error; otherwise
    read errors are final for a ``.pkl`` only (other names fall back to ``torch.load``).
    """
    if not os.path.isfile(path):
        return None  # torch.load reports the missing file
    if zipfile.is_zipfile(path):  # torch.save's format
        if required:
            raise Caffe2Error(f"{path}: a PyTorch checkpoint, not a Caffe2 pickle "
                              f"(TRAIN.CHECKPOINT_TYPE is caffe2; set it to pytorch)")
        return None
    try:
        state = _unpickle(path)
    except Caffe2Error:
        if required or path.endswith(".pkl"):
            raise
        return None
    if isinstance(state, dict) and isinstance(state.get("blobs"), dict):
        return Caffe2Blobs(state["blobs"])
    if required:
        kind = sorted(map(str, state))[:8] if isinstance(state, dict) else type(state).__name__
        raise Caffe2Error(f"{path}: not a Caffe2 weights pickle (expected a dict with 'blobs'; got {kind})")
    return None


# ---------------------------------------------------------------------------
# The model's tensors and the blob each comes from
# ---------------------------------------------------------------------------


def _conv_bn(conv_blob: str, conv_key: str, bn_blob: str, norm_key: str) -> Dict[str, str]:
    """Our keys -> blob names of a bias-free convolution followed by a spatial BN."""
    names = {f"{conv_key}.weight": f"{conv_blob}_w"}
    names.update({f"{norm_key}.{entry}": f"{bn_blob}_{suffix}" for suffix, entry in BN_ENTRIES})
    return names


def _residual_names(block: ResBlock, key: str, blob: str) -> Dict[str, str]:
    """Our keys -> blob names of one residual block (``blob`` = ``res{s}_{i}``)."""
    names = {}
    if block.branch1_conv is not None:
        names.update(_conv_bn(f"{blob}_branch1", f"{key}.branch1_conv", f"{blob}_branch1_bn", f"{key}.branch1_norm"))
    for part in "abc":
        if hasattr(block.branch2, f"conv_{part}"):
            names.update(_conv_bn(f"{blob}_branch2{part}", f"{key}.branch2.conv_{part}",
                                  f"{blob}_branch2{part}_bn", f"{key}.branch2.norm_{part}"))
    return names


def _nonlocal_names(key: str, blob: str) -> Dict[str, str]:
    """Our keys -> blob names of a :class:`NonLocalBlock` (``blob`` = ``nonlocal_conv{s}_{i}``)."""
    names = {f"{key}.{ours}.{entry}": f"{blob}_{theirs}_{suffix}"
             for theirs, ours in NL_CONVS for entry, suffix in (("weight", "w"), ("bias", "b"))}
    names.update({f"{key}.bn.{entry}": f"{blob}_bn_{suffix}" for suffix, entry in BN_ENTRIES})
    return names


def model_units(model: nn.Module) -> Iterator[Tuple[str, str, Dict[str, str]]]:
    """``(kind, module key, {our key: blob name})`` for every weighted part of ``model``:
    kind ``backbone``, ``nonlocal`` (a non-local block: NL, or CGNL with no blobs) or ``head``."""
    yield "backbone", "blocks.0", _conv_bn("conv1", "blocks.0.conv", "res_conv1_bn", "blocks.0.norm")
    for stage_number, stage_index in enumerate(STAGE_INDICES, start=2):
        residual = -1
        for position, block in enumerate(model.blocks[stage_index].res_blocks):
            key = f"blocks.{stage_index}.res_blocks.{position}"
            if isinstance(block, ResBlock):
                residual += 1
                yield "backbone", key, _residual_names(block, key, f"res{stage_number}_{residual}")
            elif isinstance(block, NonLocalBlock):
                yield "nonlocal", key, _nonlocal_names(key, f"nonlocal_conv{stage_number}_{residual}")
            else:  # a CGNL block: the reference has none
                yield "nonlocal", key, {}
    yield "head", HEAD_PREFIX.rstrip("."), {f"{HEAD_PREFIX}proj.{e}": f"pred_{s}" for e, s in (("weight", "w"), ("bias", "b"))}


# ---------------------------------------------------------------------------
# Blobs -> state dict
# ---------------------------------------------------------------------------


def _as_model_shape(blob: np.ndarray, shape: torch.Size, head: bool) -> Optional[np.ndarray]:
    """``blob`` in the model's ``shape``, or None. The classifier alone may differ in storage:
    the test net saves ``pred_w`` as a 1x1x1 convolution (``C x D x 1 x 1 x 1``)."""
    if tuple(blob.shape) == tuple(shape):
        return blob
    trailing_ones = blob.ndim > len(shape) and all(d == 1 for d in blob.shape[len(shape):])
    if head and trailing_ones and tuple(blob.shape[:len(shape)]) == tuple(shape):
        return blob.reshape(tuple(shape))
    return None


def _blob_tensor(blobs: Caffe2Blobs, name: str, own: torch.Tensor, head: bool, path: str,
                 key: str) -> Optional[torch.Tensor]:
    """Blob ``name`` as a tensor like the model's ``own``; None when it has another shape and
    ``head`` (its classifier: skipped); a shape mismatch elsewhere is an error."""
    blob = blobs[name]
    if not isinstance(blob, np.ndarray):
        raise Caffe2Error(f"{path}: blob {name} is a {type(blob).__name__}, not an array")
    fitted = _as_model_shape(blob, own.shape, head)
    if fitted is None:
        if head:
            return None
        raise Caffe2Error(f"{path}: blob {name} has shape {tuple(blob.shape)} but the model's {key} "
                          f"is {tuple(own.shape)} (another architecture or config)")
    return torch.from_numpy(np.array(fitted, dtype=np.float32)).to(own.dtype)


def _unused_blobs(blobs: Caffe2Blobs, used: set) -> Tuple[List[str], int]:
    """Blobs no model tensor took: (weights, names sorted) and the training-state count."""
    ignored, unused = 0, []
    for name in sorted(set(blobs) - used):
        if name.endswith(MOMENTUM_SUFFIX) or name in TRAINING_STATE or not isinstance(blobs[name], np.ndarray):
            ignored += 1
        else:
            unused.append(name)
    return unused, ignored


def caffe2_state_dict(model: nn.Module, blobs: Caffe2Blobs, path: str, fine_tuning: bool) -> StateDict:
    """The complete state dict of ``model`` from the Caffe2 ``blobs`` of file ``path``.

    Every weight and BN statistic of the model comes from its blob, of identical shape
    (``pred_w`` may be stored as a 1x1x1 convolution). Fine-tuning, the head of another
    class count and non-local blocks the file has no blobs for (CGNL blocks; NL blocks of a
    plain backbone) keep the model's initialisation, logged; testing, they are errors. Blobs
    no tensor takes are an error (another architecture), except the training state
    (``*_momentum``, ``lr``, ``model_iter``), which is ignored and counted.
    """
    own = model.state_dict()
    state: StateDict = {}
    used, kept, skipped_head = set(), [], []
    for kind, module_key, names in model_units(model):
        absent = [name for name in names.values() if name not in blobs]
        if fine_tuning and kind != "backbone" and len(absent) == len(names):
            if kind == "nonlocal":
                kept.append(module_key)
            else:
                skipped_head.append("pred_w, pred_b absent")
            continue
        if absent:
            key = next(k for k, n in names.items() if n == absent[0])
            raise Caffe2Error(f"{path}: no blob {absent[0]} (for the model's {key})")
        for key, name in names.items():
            tensor = _blob_tensor(blobs, name, own[key], kind == "head" and fine_tuning, path, key)
            if tensor is None:
                skipped_head.append(f"{name} {tuple(blobs[name].shape)} vs model {tuple(own[key].shape)}")
            else:
                state[key] = tensor
            used.add(name)
    _check_covered(own, state, kept, path)
    unused, ignored = _unused_blobs(blobs, used)
    if unused:
        raise Caffe2Error(f"{path}: {len(unused)} blobs fit no part of the model (another architecture, "
                          f"or NONLOCAL.LOCATION / TYPE differ): {', '.join(unused[:6])}")
    _log_summary(path, len(state), kept, skipped_head, ignored)
    return {**own, **state}


def _check_covered(own: StateDict, state: StateDict, kept: List[str], path: str) -> None:
    """Every model tensor is a blob's, kept (head, non-local block) or a BN batch counter."""
    open_keys = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
                 and not k.startswith(HEAD_PREFIX) and not any(k.startswith(f"{m}.") for m in kept)]
    if open_keys:
        raise Caffe2Error(f"{path}: the model has weights no Caffe2 blob is named for (CGNL blocks have "
                          f"none in the reference's files): {open_keys[:6]}")


def _log_summary(path: str, loaded: int, kept: List[str], skipped_head: List[str], ignored: int) -> None:
    logger.info("%s: Caffe2 pickle: %d tensors loaded from their blobs; %d training-state blobs "
                "(*_momentum, lr, model_iter) ignored", path, loaded, ignored)
    if skipped_head:
        logger.info("%s: classifier blobs skipped (the head keeps its initialisation): %s",
                    path, "; ".join(skipped_head))
    if kept:
        logger.info("%s: no blobs for these non-local blocks; they keep their initialisation: %s",
                    path, ", ".join(kept))
