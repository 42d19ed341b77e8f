"""Loader processes keep freed memory: a freed 45 MiB buffer is reused without page faults."""

import subprocess
import sys

import pytest

from cgnl_video.config import get_cfg
from cgnl_video.data_prep.synthetic import generate_dataset
from cgnl_video.datasets import build_loader
from cgnl_video.decoding import memory

# As torch's CPU allocator does (NumPy asks for huge pages, which fault 512 times less).
CODE = """
import ctypes, resource, sys
from cgnl_video.decoding import memory
if sys.argv[1] == "keep":
    memory.keep_freed_memory()
elif sys.argv[1] == "run":  # what train_net and test_net do first
    from cgnl_video.config import get_cfg
    from cgnl_video.engine.run_setup import setup_run
    cfg = get_cfg()
    cfg.OUTPUT_DIR = sys.argv[2]
    setup_run(cfg, "config.yaml")
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
def item():  # a test item's views, written, then freed
    block = libc.malloc(45 << 20)
    ctypes.memset(block, 1, 45 << 20)
    libc.free(ctypes.c_void_p(block))
item()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
item()  # the next item's
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str, *args: str) -> int:
    done = subprocess.run([sys.executable, "-c", CODE, mode, *args], capture_output=True, text=True, timeout=120,
                          check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(memory._libc() is None, reason="not glibc")
def test_freed_memory_is_reused_without_faulting_its_pages_in_again():
    faults_kept, faults_default = page_faults("keep"), page_faults("default")
    assert faults_default > 5000  # 45 MiB of 4 KiB pages mapped afresh (11,520)
    assert faults_kept < faults_default / 10


@pytest.mark.skipif(memory._libc() is None, reason="not glibc")
def test_a_runs_main_process_keeps_freed_memory(tmp_path):
    assert page_faults("run", str(tmp_path / "run")) < page_faults("default") / 10
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_the_loader_workers_keep_freed_memory(tmp_path):
    generate_dataset(str(tmp_path), seed=0, counts={"train": 2, "val": 1, "test": 1}, num_classes=2,
                     num_frames=8, height=32, width=32)
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR = cfg.DATA.PATH_PREFIX = str(tmp_path)
    cfg.MODEL.NUM_CLASSES, cfg.DATA_LOADER.NUM_WORKERS = 2, 1
    assert build_loader(cfg, "test").worker_init_fn is memory.keep_freed_memory
