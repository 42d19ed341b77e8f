"""The engine's process group at world size 1 and every engine collective once, for
``tools/benchmark.py gpu``.

:func:`world_of_one` joins ``engine/distributed.py``'s group (``cpu:gloo,cuda:nccl`` on a GPU,
``gloo`` on the CPU) through torchrun's environment variables; :func:`collective_checks` runs
``all_reduce_sum`` (on a CPU and a device tensor), ``gather_lists``, ``broadcast_buffers``,
``barrier`` and ``check_collective_device`` once each and checks the results (at world size 1 a
sum, a gather and a broadcast return their input). Object collectives and the barrier go through
gloo: torch picks the CPU backend for them when the group has one
(``torch/distributed/distributed_c10d.py``, ``_get_object_coll_device``).
"""

import contextlib
import datetime
import os
import socket
from dataclasses import dataclass
from typing import Callable, Iterator, List, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn

from cgnl_video.benchmarks import markdown_table
from cgnl_video.engine import distributed as du

# A collective that hangs raises after this instead of using up a GPU session.
GROUP_TIMEOUT_S = 60
CPU = torch.device("cpu")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def world_of_one(device: torch.device) -> Iterator[str]:
    """The engine's process group (:func:`~cgnl_video.engine.distributed.backend_config`) at world
    size 1, joined through the torchrun environment variables (restored on exit); yields the
    group's backend string."""
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0", "LOCAL_RANK": "0",
           "WORLD_SIZE": "1"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=du.backend_config(device.type == "cuda"),
                                timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S))
        yield dist.get_backend_config()
    finally:
        du.cleanup()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class Check:
    name: str
    backend: str
    ok: bool
    detail: str


def _backend_of(device_type: str, config: str) -> str:
    if ":" not in config:
        return config
    return dict(pair.split(":") for pair in config.split(","))[device_type]


def _all_reduce(device: torch.device) -> Tuple[bool, str]:
    tensor = torch.arange(6, dtype=torch.float32, device=device)
    total = du.all_reduce_sum(tensor)
    ok = torch.equal(total, torch.arange(6, dtype=torch.float32, device=device)) and total is not tensor
    return ok, f"sum of [0..5] on {device.type} = its input, returned as a new tensor"


def _gather_lists(device: torch.device) -> Tuple[bool, str]:
    items = [3, "a.mp4", {"reason": "x"}, torch.arange(4)]
    gathered = du.gather_lists(items)
    ok = gathered[:3] == items[:3] and torch.equal(gathered[3], items[3]) and len(gathered) == 4
    return ok, "values and a tensor come back in order (torch.save bytes through all_gather_object)"


def _broadcast_buffers(device: torch.device) -> Tuple[bool, str]:
    norm = nn.BatchNorm3d(4).to(device)
    norm.running_mean.uniform_()
    expected = [buffer.clone() for buffer in norm.buffers()]
    du.broadcast_buffers(norm)
    ok = all(torch.equal(a, b) for a, b in zip(norm.buffers(), expected))
    return ok, f"BatchNorm3d's {len(expected)} buffers on {device.type} kept (rank 0's)"


def _barrier(device: torch.device) -> Tuple[bool, str]:
    du.barrier()
    return True, "returned"


def _device_check(device: torch.device) -> Tuple[bool, str]:
    config = dist.get_backend_config()
    du.check_collective_device(torch.zeros(1, device=device), config)
    try:
        du.check_collective_device(torch.zeros(1, device="meta"), config)
    except RuntimeError:
        return True, f"a {device.type} tensor accepted by {config!r}, a meta tensor refused"
    return False, "a meta tensor was not refused"


def _group_state(device: torch.device) -> Tuple[bool, str]:
    state = (du.is_distributed(), du.world_size(), du.rank(), du.is_main_process())
    return state == (True, 1, 0, True), f"is_distributed, world_size, rank, is_main_process = {state}"


def collective_checks(device: torch.device) -> List[Check]:
    """Each engine collective once, on the CPU and on ``device``; a failure is a failed check."""
    config = dist.get_backend_config()
    places = [CPU] if device.type == "cpu" else [CPU, device]
    cases: List[Tuple[str, torch.device, Callable]] = [("group state", CPU, _group_state)]
    cases += [("all_reduce_sum", place, _all_reduce) for place in places]
    cases += [("gather_lists", CPU, _gather_lists), ("broadcast_buffers", device, _broadcast_buffers),
              ("barrier", CPU, _barrier), ("check_collective_device", device, _device_check)]
    checks = []
    for name, place, run in cases:
        try:
            ok, detail = run(place)
        except Exception as error:  # reported, so that one failure does not hide the rest
            ok, detail = False, f"{type(error).__name__}: {error}"
        checks.append(Check(name, _backend_of(place.type, config), ok, detail))
    return checks


def collectives_table(checks: List[Check]) -> str:
    rows = [[check.name, check.backend, "ok" if check.ok else "FAILED", check.detail] for check in checks]
    return markdown_table(["collective", "backend", "check", "what was checked"], rows)
