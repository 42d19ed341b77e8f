"""Mixed precision from ``TRAIN.MIXED_PRECISION``: ``none``, ``bf16`` or ``fp16``.

On GPU: autocast to bf16 or fp16 (fp16 with a GradScaler). On CPU: ``bf16`` autocasts
to bf16; ``fp16`` is not supported by CPU autocast and runs in fp32 (logged once).
"""

import contextlib
import logging

import torch
from fvcore.common.config import CfgNode

logger = logging.getLogger(__name__)

DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # TRAIN.MIXED_PRECISION


def autocast_dtype(cfg: CfgNode, device: torch.device):
    """The autocast dtype for ``device``, or None for full precision (``TRAIN.MIXED_PRECISION``
    was checked once, when the config was loaded)."""
    dtype = DTYPES[cfg.TRAIN.MIXED_PRECISION]
    if dtype is torch.float16 and device.type == "cpu":
        return None
    return dtype


def autocast_context(cfg: CfgNode, device: torch.device):
    """``torch.autocast`` for the configured precision, or a no-op context."""
    dtype = autocast_dtype(cfg, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def build_grad_scaler(cfg: CfgNode, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 on GPU (a pass-through otherwise)."""
    dtype = autocast_dtype(cfg, device)
    if cfg.TRAIN.MIXED_PRECISION == "fp16" and dtype is None:
        logger.warning("TRAIN.MIXED_PRECISION=fp16 has no CPU autocast; training in fp32")
    return torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
