"""Interleaved median timing and peak memory of several callables, side by side.

Timing: every candidate runs once per round, round after round (the order rotates
each round), and each candidate's time is the median of its rounds. On a machine
shared with other work the load drifts; interleaving lets the drift hit every
candidate alike, so the ratios between candidates stay fair.

Peak memory: the peak of the bytes allocated during one call, above what was
allocated when it started (its inputs, weights and anything held before do not
count; everything it allocates and frees before returning does).

- CUDA: ``torch.cuda.max_memory_allocated`` minus ``torch.cuda.memory_allocated``
  before the call.
- CPU: ``torch.profiler`` with ``profile_memory=True`` records every allocation and
  free of PyTorch's CPU allocator in order; the peak is the largest running sum.
  Memory that does not go through that allocator (the Python heap, buffers that a
  library mallocs itself) is not counted.

Ratios between candidates: :func:`paired_ratio` takes the median over rounds of
the per-round ratio, so that load that changes from round to round cancels out.

The memory-measuring round comes first and is also the warm-up; its duration
sizes the number of timed rounds (see :func:`measure`).

Other work on the machine does not only add drift: with several threads per op, a
descheduled thread stalls the others at every parallel region, so a busy machine
penalises candidates with many small ops most. :func:`cpu_snapshot` and
:func:`others_cpu_share` tell how busy the machine was, to report with the numbers.
"""

import contextlib
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional

import torch
from torch.profiler import ProfilerActivity, profile

Candidate = Callable[[], object]


@dataclass(frozen=True)
class Measurement:
    """One candidate's result: the median and all samples (seconds), peak bytes."""

    median_s: float
    samples_s: List[float]
    peak_bytes: int


class CpuSnapshot(NamedTuple):
    """CPU seconds so far: the machine's busy and total (None without /proc/stat), this process's."""

    machine_busy_s: Optional[float]
    machine_total_s: Optional[float]
    process_s: float


def cpu_snapshot() -> CpuSnapshot:
    """The machine's CPU time counters (Linux ``/proc/stat``) and this process's CPU time."""
    process_s = time.process_time()
    try:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:9]]
    except OSError:
        return CpuSnapshot(None, None, process_s)
    # user nice system idle iowait irq softirq steal
    per_second = os.sysconf("SC_CLK_TCK")
    total = sum(ticks) / per_second
    return CpuSnapshot(total - (ticks[3] + ticks[4]) / per_second, total, process_s)


def others_cpu_share(start: CpuSnapshot, end: CpuSnapshot) -> Optional[float]:
    """Fraction of the machine's CPU time between two snapshots used by other processes."""
    if start.machine_total_s is None or end.machine_total_s is None:
        return None
    total = end.machine_total_s - start.machine_total_s
    others = (end.machine_busy_s - start.machine_busy_s) - (end.process_s - start.process_s)
    return min(1.0, max(0.0, others / total)) if total > 0 else None


def load_note(others_share: Optional[float]) -> str:
    """A sentence (with a leading space) saying how busy the machine was; empty if unknown."""
    if others_share is None:
        return ""
    return (
        f" Other processes used {others_share:.0%} of the machine's CPU time meanwhile "
        "(the farther from 0%, the more the times and ratios are off, small ops most)."
    )


def format_ms(seconds: float) -> str:
    """``seconds`` as milliseconds: 2 decimals below 10 ms, 1 above, thousands separated."""
    value = seconds * 1e3
    return f"{value:,.{2 if value < 10 else 1}f}"


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _silenced_stderr() -> Iterator[None]:
    """Sends file descriptor 2 to /dev/null: the profiler's C++ start/stop chatter."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak_bytes(fn: Candidate) -> int:
    """Largest running sum of the CPU allocator's allocations and frees during ``fn()``."""
    profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _silenced_stderr():
        profiler.start()
    try:
        fn()
    finally:
        with _silenced_stderr():
            profiler.stop()
    events = [e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]"]
    current = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def _cuda_peak_bytes(fn: Candidate, device: torch.device) -> int:
    """``max_memory_allocated`` during ``fn()`` above ``memory_allocated`` before it."""
    torch.cuda.synchronize(device)
    start = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - start


def peak_memory_bytes(fn: Candidate, device: torch.device) -> int:
    """Peak bytes allocated on ``device`` during one call of ``fn``, above the start."""
    if device.type == "cuda":
        return _cuda_peak_bytes(fn, device)
    if device.type == "cpu":
        return _cpu_peak_bytes(fn)
    raise ValueError(f"peak memory is measured on cpu or cuda, not {device}")


def time_interleaved(
    candidates: Mapping[str, Candidate], rounds: int, device: torch.device
) -> Dict[str, List[float]]:
    """Seconds of each call, per candidate: ``rounds`` rounds, the order rotating each round."""
    names = list(candidates)
    samples: Dict[str, List[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            candidates[name]()
            synchronize(device)
            samples[name].append(time.perf_counter() - start)
    return samples


def measure(
    candidates: Mapping[str, Candidate],
    device: torch.device,
    max_rounds: int,
    budget_s: float,
    min_rounds: int = 1,
) -> Dict[str, Measurement]:
    """Peak memory (one warm-up round) and interleaved median time of every candidate.

    The warm-up round's duration estimates a round's; the timed rounds are as many
    as fit in ``budget_s`` seconds, clamped to ``[min_rounds, max_rounds]``.
    """
    if not candidates:
        raise ValueError("nothing to measure")
    if not 1 <= min_rounds <= max_rounds:
        raise ValueError(f"need 1 <= min_rounds ({min_rounds}) <= max_rounds ({max_rounds})")
    start = time.perf_counter()
    peaks = {name: peak_memory_bytes(fn, device) for name, fn in candidates.items()}
    round_s = time.perf_counter() - start
    rounds = max(min_rounds, min(max_rounds, int(budget_s / round_s)))
    samples = time_interleaved(candidates, rounds, device)
    return {
        name: Measurement(statistics.median(samples[name]), samples[name], peaks[name])
        for name in candidates
    }


def paired_ratio(numerator: Measurement, denominator: Measurement) -> float:
    """Median over rounds of ``numerator``'s time over ``denominator``'s in the same round."""
    if len(numerator.samples_s) != len(denominator.samples_s):
        raise ValueError("paired ratios need measurements from the same rounds")
    return statistics.median(a / b for a, b in zip(numerator.samples_s, denominator.samples_s))


# Environment variables (name prefixes) that change CPU speed: glibc malloc, preloaded
# allocators, OpenMP / MKL threading.
TUNING_ENV_PREFIXES = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "OMP_", "KMP_", "MKL_")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _tuning_environment() -> str:
    """The set environment variables that change CPU speed (allocator, OpenMP, MKL), if any."""
    names = sorted(name for name in os.environ if name.startswith(TUNING_ENV_PREFIXES))
    return "; " + ", ".join(f"{name}={os.environ[name]}" for name in names) if names else ""


def machine_description(device: torch.device) -> str:
    """The device, software and tuning environment variables the numbers come from."""
    if device.type == "cuda":
        hardware = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        threads = torch.get_num_threads()
        hardware = f"{_cpu_model()}, {os.cpu_count()} logical CPUs, {threads} torch threads"
    return (
        f"{hardware}; torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}{_tuning_environment()}"
    )
