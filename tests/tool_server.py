"""A fork server for the tests' tool runs (``conftest.run_tool``).

Every tool process starts by importing torch, torchvision (through pytorchvideo's heads) and
pytorchvideo: about 8 s on the 2-core machines, most of a failing tool's run. This server
imports them once, then runs each requested ``tools/*.py`` in a forked child: a process of its
own (own pid, exit status, stdin / stdout / stderr, working folder and environment, atexit
handlers run at its end, signals delivered to it alone) that only skips those imports. What
the imports read from the environment at load time (thread counts, devices) is the server's:
``run_tool`` sends runs that change such variables, and runs of ``python -X``, to a fresh
interpreter instead.

Protocol, one JSON line each way per run: the request ``{"tool", "args", "cwd", "env",
"stdout", "stderr"}`` (the two paths receive the child's output), then the answers
``{"pid": ...}`` when the child starts and ``{"returncode": ...}`` when it ends (negative: the
signal that ended it, as ``subprocess`` reports). The server ends at the end of its stdin.
"""

import atexit
import json
import os
import runpy
import signal
import sys
import threading
import traceback

import cgnl_video.engine.test  # noqa: F401  (the heavy imports, done once)
import cgnl_video.engine.train  # noqa: F401
import cgnl_video.inference.export  # noqa: F401
import cgnl_video.inference.recognizer  # noqa: F401


def _exit_code(code) -> int:
    """The exit status the interpreter gives ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _run(request: dict) -> None:
    """In the child: runs the tool as ``python TOOL ARGS`` would, then ends the process."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT)):
        os.dup2(os.open(path, flags), fd)
    tool = os.path.abspath(request["tool"])
    sys.argv = [tool, *request["args"]]
    sys.path[0] = os.path.dirname(tool)
    interrupted, code = False, 0
    try:
        runpy.run_path(tool, run_name="__main__")
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        interrupted = True
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()  # joins non-daemon threads, as the interpreter's exit does
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    if interrupted:  # the interpreter ends an uncaught Ctrl-C by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


def _answer(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                _run(request)
            finally:
                os._exit(70)  # only if _run itself failed
        _answer({"pid": pid})
        _, status = os.waitpid(pid, 0)
        _answer({"returncode": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    main()
