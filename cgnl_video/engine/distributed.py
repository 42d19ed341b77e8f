"""torchrun support: process-group set-up, rank-0 helpers, the engine's collectives.

``torchrun --nproc_per_node N tools/train_net.py ...`` (single or multi node) sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them everything runs in one
process. The group has a backend for each device type the engine hands to a collective:
gloo for CPU tensors and Python objects (metrics, counts, file lists and RNG states all live
on the CPU), plus NCCL for CUDA tensors (DDP's gradients) on GPU machines:
``"cpu:gloo,cuda:nccl"``. Every collective of the engine goes through this module, which
checks the tensor's device against the group's backends (:func:`check_collective_device`).
"""

import io
import os
from typing import Dict, List

import torch
import torch.distributed as dist
import torch.nn as nn

# Backend per device type: CPU tensors and objects on gloo, CUDA tensors on NCCL.
BACKENDS: Dict[str, str] = {"cpu": "gloo", "cuda": "nccl"}


def backend_config(use_cuda: bool) -> str:
    """The ``init_process_group`` backend string: ``"cpu:gloo,cuda:nccl"`` on GPU, ``"gloo"`` on CPU."""
    if not use_cuda:
        return BACKENDS["cpu"]
    return ",".join(f"{device}:{backend}" for device, backend in BACKENDS.items())


def devices_served(config: str) -> List[str]:
    """Device types that a backend string (as :func:`backend_config` or ``dist.get_backend_config``
    returns) has a backend for; a bare ``gloo`` serves CPU and CUDA, a bare ``nccl`` only CUDA."""
    if ":" in config:
        return [pair.split(":")[0].strip() for pair in config.split(",")]
    return {"gloo": ["cpu", "cuda"], "nccl": ["cuda"]}.get(config, [])


def check_collective_device(tensor: torch.Tensor, config: str) -> None:
    """RuntimeError when no backend of ``config`` takes tensors on ``tensor``'s device."""
    if tensor.device.type not in devices_served(config):
        raise RuntimeError(
            f"collective on a {tensor.device.type} tensor, but the process group ({config!r}) "
            f"has backends only for {devices_served(config)}"
        )


def init_distributed() -> torch.device:
    """Joins the torchrun process group when there is one; returns this process's device."""
    use_cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend_config(use_cuda))
    return device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """Only rank 0 writes files and logs."""
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over processes (returned; the input is not modified)."""
    if not is_distributed():
        return tensor
    check_collective_device(tensor, dist.get_backend_config())
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def gather_lists(items: list) -> list:
    """The concatenation of every process's ``items``, in rank order.

    Items are plain values and tensors (what ``torch.load(weights_only=True)`` reads); they
    travel as ``torch.save`` bytes (``all_gather_object`` cannot unpickle tensors itself).
    """
    if not is_distributed():
        return items
    buffer = io.BytesIO()
    torch.save(items, buffer)
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, buffer.getvalue())
    return [item for part in gathered for item in torch.load(io.BytesIO(part), weights_only=True)]


def broadcast_buffers(model: nn.Module) -> None:
    """Copies rank 0's buffers (BatchNorm statistics) to every process, so that all evaluate
    the same model (the parameters are already identical under DDP)."""
    if not is_distributed():
        return
    for buffer in model.buffers():
        check_collective_device(buffer, dist.get_backend_config())
        dist.broadcast(buffer, src=0)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
