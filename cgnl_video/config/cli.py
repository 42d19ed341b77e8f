"""The command line shared by every tool: ``--cfg FILE [KEY VALUE ...]`` (PySlowFast style), and
``--cfg FILE | --run OUTPUT_DIR [--checkpoint FILE]`` for the tools that use a trained model."""

import argparse
import sys
from typing import Callable, Sequence

from fvcore.common.config import CfgNode

from cgnl_video.config.loading import load_config, load_run_config
from cgnl_video.errors import ConfigError, UserError


def default_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--cfg`` and trailing ``KEY VALUE`` overrides (``opts``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="YAML config file")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[],
        help="config overrides as KEY VALUE pairs, e.g. MODEL.NUM_CLASSES 101",
    )
    return parser


def config_from_args(args: argparse.Namespace):
    """Loads the config named by ``args`` (``--cfg`` and ``opts``)."""
    return load_config(args.cfg_file, args.opts)


def add_trained_model_args(parser: argparse.ArgumentParser, required: bool) -> None:
    """Adds ``--cfg FILE`` or ``--run OUTPUT_DIR`` (one of them, or none unless ``required``)
    and ``--checkpoint FILE``: the model of a config or of a training run, and its weights."""
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--cfg", dest="cfg_file", default=None, help="YAML config of the trained model")
    source.add_argument("--run", help="a training run's OUTPUT_DIR (its config.yaml and newest checkpoint)")
    parser.add_argument("--checkpoint", help="weights to use (default: the config's test checkpoint)")


def trained_model_config(args: argparse.Namespace, opts: Sequence[str]) -> CfgNode:
    """The config of ``--run`` (its ``config.yaml``) or else of ``--cfg``, with ``opts`` merged."""
    return load_run_config(args.run, opts) if args.run else load_config(args.cfg_file, opts)


INTERRUPTED = ("interrupted (Ctrl-C): every file already written is complete (written atomically); "
               "run the same command again to continue")
OUT_OF_MEMORY = ("out of memory ({}): lower TRAIN.BATCH_SIZE / TEST.BATCH_SIZE, DATA.NUM_FRAMES, "
                 "DATA.TRAIN_CROP_SIZE / DATA.TEST_CROP_SIZE or TEST.MAX_VIEWS_PER_BATCH")


def _out_of_memory(err: BaseException) -> bool:
    """A host ``MemoryError``, torch's ``OutOfMemoryError`` (GPU) or its CPU allocator's failure
    (a RuntimeError ``DefaultCPUAllocator: can't allocate memory``)."""
    torch = sys.modules.get("torch")  # never imported here: a tool without torch has no such error
    return (isinstance(err, MemoryError) or (torch is not None and isinstance(err, torch.OutOfMemoryError))
            or (isinstance(err, RuntimeError) and "can't allocate memory" in str(err)))


def run_tool(main: Callable[[], None]) -> None:
    """Runs a tool's ``main``: a :class:`~cgnl_video.errors.UserError` (bad input, not a bug)
    exits with its message in one line and no traceback; a :class:`ConfigError` says so; so
    do Ctrl-C (exit status 130; a tool raises ``KeyboardInterrupt(how the run continues)``)
    and running out of memory (naming the settings to lower)."""
    try:
        main()
    except ConfigError as err:
        sys.exit(f"config error: {err}")
    except UserError as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt as err:  # the tool may say how the run continues: KeyboardInterrupt(how)
        print(INTERRUPTED + (f" ({err})" if str(err) else ""), file=sys.stderr, flush=True)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - only out-of-memory is turned into one line
        if not _out_of_memory(err):
            raise
        sys.exit("error: " + OUT_OF_MEMORY.format(str(err).splitlines()[0][-100:] if str(err) else type(err).__name__))
