"""torchrun support: process-group set-up, rank-0 helpers, all-reduce of metrics.

``torchrun --nproc_per_node N tools/train_net.py ...`` (single or multi node) sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them everything runs in one
process. gloo on CPU, NCCL on GPU.
"""

import os

import torch
import torch.distributed as dist


def init_distributed() -> torch.device:
    """Joins the torchrun process group when there is one; returns this process's device."""
    use_cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
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
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def gather_lists(items: list) -> list:
    """The concatenation of every process's ``items`` (picklable), in rank order."""
    if not is_distributed():
        return items
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
