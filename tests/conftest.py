"""Shared fixtures: tiny synthetic videos, bad files, real files, the tiny dataset, and one tiny run
per session for the tests that only need a trained model (``trained_run``; resumed for a second
epoch: ``resumed_run``; tested: ``tested_run``), read as they are or copied to be changed."""

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, NamedTuple

import av
import numpy as np
import pytest

from cgnl_video.data_prep.synthetic import generate_dataset
from cgnl_video.datasets.video_io import write_video

# pytest-xdist's workers share the cores: one torch thread each, here and in every process the
# tests start (threads of two workers waiting for each other made runs 2-6x slower, measured).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = ROOT.parent / "shared" / "data" / "videos"
TOOLS = str(ROOT / "tools")


def _level(index: int) -> int:
    return 20 + 5 * index


@pytest.fixture
def frame_level():
    """Grey level of frame ``i`` of a ``make_video`` video (its frames are flat grey)."""
    return _level


@pytest.fixture
def make_video(tmp_path):
    """Writes a flat-grey H.264 mp4 whose frame ``i`` has grey level ``frame_level(i)``; returns its path."""

    def make(name: str = "video.mp4", num_frames: int = 32, width: int = 64, height: int = 48) -> str:
        levels = np.array([_level(i) for i in range(num_frames)], dtype=np.uint8)
        frames = np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3))
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(str(path), np.ascontiguousarray(frames))
        return str(path)

    return make


@pytest.fixture
def bad_videos(tmp_path, make_video):
    """Undecodable files by kind: missing, empty, not a video, truncated, zero frames."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("this is not a video\n" * 50)
    whole = Path(make_video("bad/whole.mp4")).read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    with av.open(str(folder / "zero_frames.mp4"), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    names = ["missing", "empty", "text", "truncated", "zero_frames"]
    return {name: str(folder / f"{name}.mp4") for name in names}


@pytest.fixture
def shared_video():
    """Path of a real video from ``../shared/data/videos`` (see its SOURCES.md), or skip."""

    def get(name: str) -> str:
        path = SHARED_VIDEOS / name
        if not path.is_file():
            pytest.skip(f"{path} absent")
        return str(path)

    return get


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A tiny synthetic dataset (2 classes, 8/4/4 videos of 16 frames, 32x32) for engine runs."""
    out = str(tmp_path_factory.mktemp("synthetic"))
    generate_dataset(out, seed=3, counts={"train": 8, "val": 4, "test": 4}, num_classes=2,
                     num_frames=16, height=32, width=32)
    return out


def tiny_opts(data_dir, output_dir, **extra):
    """``KEY VALUE`` overrides for a tiny, fast run on ``data_dir`` writing to ``output_dir``."""
    opts = {
        "DATA.PATH_TO_DATA_DIR": data_dir, "DATA.PATH_PREFIX": data_dir,
        "MODEL.NUM_CLASSES": 2, "RESNET.DEPTH": 18, "RESNET.WIDTH_PER_GROUP": 8,
        "NONLOCAL.LOCATION": "[[],[0],[0],[]]", "CGNL.GROUPS": 2,
        "DATA.NUM_FRAMES": 4, "DATA.SAMPLING_RATE": 2, "DATA.TRAIN_JITTER_SCALES": "[32,40]",
        "DATA.TRAIN_CROP_SIZE": 32, "DATA.TEST_CROP_SIZE": 32, "DATA_LOADER.NUM_WORKERS": 0,
        "TRAIN.BATCH_SIZE": 2, "TRAIN.LOG_PERIOD": 1, "SOLVER.BASE_LR": 0.05, "SOLVER.MAX_EPOCH": 2,
        "TEST.NUM_ENSEMBLE_VIEWS": 2, "TEST.NUM_SPATIAL_CROPS": 3, "TEST.BATCH_SIZE": 2,
        "TEST.MAX_VIEWS_PER_BATCH": 4, "OUTPUT_DIR": output_dir,
    }
    opts.update(extra)
    return [str(v) for kv in opts.items() for v in kv]


# Variables that the server's imports (OpenMP, MKL, CUDA, the interpreter) read when they load:
# run_tool gives a run that changes one a fresh interpreter.
_LOAD_TIME_ENV = ("OMP_", "GOMP_", "KMP_", "MKL_", "CUDA_", "PYTHON", "LD_")


class _ToolServer:
    """The client of ``tests/tool_server.py``: one server per test process, started at its first run."""

    def __init__(self):
        self.process = None

    def start(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            self.env = dict(os.environ)
            self.process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "tool_server.py")], cwd=ROOT,
                                            env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
            atexit.register(self.process.stdin.close)
        return self.process

    def serves(self, env) -> bool:
        """Whether a run in ``env`` may be forked from the server (same load-time variables)."""
        loaded = os.environ if self.process is None else self.env
        names = {name for name in {*env, *loaded} if name.startswith(_LOAD_TIME_ENV)}
        return all(env.get(name) == loaded.get(name) for name in names)

    def answer(self) -> dict:
        """The server's next answer line, read byte by byte (nothing buffered here, so that
        ``select`` on the pipe sees what is still to come)."""
        line = b""
        while not line.endswith(b"\n"):
            byte = self.process.stdout.read(1)
            assert byte, "the tool server ended"
            line += byte
        return json.loads(line)

    def run(self, command, cwd, env, timeout) -> subprocess.CompletedProcess:
        server = self.start()
        with tempfile.TemporaryDirectory() as folder:
            out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
            open(out, "w").close(), open(err, "w").close()
            server.stdin.write(json.dumps({"tool": command[1], "args": command[2:], "cwd": str(cwd), "env": env,
                                           "stdout": out, "stderr": err}).encode() + b"\n")
            pid = self.answer()["pid"]
            ready, _, _ = select.select([server.stdout], [], [], timeout)
            if not ready:
                with contextlib.suppress(ProcessLookupError):  # it may end meanwhile
                    os.kill(pid, signal.SIGKILL)
            returncode = self.answer()["returncode"]
            output = [open(path, encoding="utf-8", errors="replace").read() for path in (out, err)]
        if not ready:
            raise subprocess.TimeoutExpired(command, timeout, *output)
        return subprocess.CompletedProcess(command, returncode, *output)


_SERVER = _ToolServer()


def run_tool(tool: str, args, check: bool = True, cwd=None, env=None, timeout: float = 600,
             fresh: bool = False) -> subprocess.CompletedProcess:
    """``python tools/TOOL ARGS`` (``tool``: a name in ``tools/`` or a path) in a process of its own,
    output captured; ``check``: it must succeed. The process is forked from ``tests/tool_server.py``
    (its imports done) unless ``fresh`` or ``env`` changes what those imports read."""
    command = [sys.executable, os.path.join(TOOLS, tool), *map(str, args)]
    env = dict(os.environ) if env is None else env
    cwd = os.getcwd() if cwd is None else cwd
    if fresh or not _SERVER.serves(env):
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    else:
        result = _SERVER.run(command, cwd, env, timeout)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def try_tool(tool: str, args, **options) -> subprocess.CompletedProcess:
    """:func:`run_tool` of a run that may fail (the test checks how)."""
    return run_tool(tool, args, check=False, **options)


class TinyRun(NamedTuple):
    """A finished tiny run: its ``OUTPUT_DIR``, the ``tiny_opts`` it ran with, train_net's stderr."""

    out: str
    opts: List[str]
    stderr: str

    def copy(self, folder, **extra) -> "TinyRun":
        """The run copied to ``folder`` (to resume or change it), its options writing there, ``extra`` added."""
        shutil.copytree(self.out, folder)
        opts = {**dict(zip(self.opts[::2], self.opts[1::2])), "OUTPUT_DIR": folder, **extra}
        return self._replace(out=str(folder), opts=[str(v) for kv in opts.items() for v in kv])


@pytest.fixture(scope="session")
def trained_run(data_dir, tmp_path_factory) -> TinyRun:
    """One epoch of the tiny model on ``data_dir``, validated after it, trained once per session
    for every test that only needs a trained run: read it; ``copy`` it to resume or change it."""
    out = str(tmp_path_factory.mktemp("trained") / "run")
    opts = tiny_opts(data_dir, out, **{"SOLVER.MAX_EPOCH": 1})
    return TinyRun(out, opts, run_tool("train_net.py", opts).stderr)


@pytest.fixture(scope="session")
def resumed_run(trained_run, tmp_path_factory) -> TinyRun:
    """``trained_run`` copied and resumed for its second epoch, validated too (``stderr``: the resume's)."""
    run = trained_run.copy(tmp_path_factory.mktemp("resumed") / "run", **{"SOLVER.MAX_EPOCH": 2})
    return run._replace(stderr=run_tool("train_net.py", run.opts).stderr)


@pytest.fixture(scope="session")
def tested_run(trained_run, tmp_path_factory) -> TinyRun:
    """``trained_run`` copied and tested by test_net (its predictions.csv and test_results.json)."""
    run = trained_run.copy(tmp_path_factory.mktemp("tested") / "run")
    run_tool("test_net.py", run.opts)
    return run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(nproc: int) -> list:
    """The command prefix of ``torchrun --nproc_per_node nproc`` on a free local port."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
