"""Run set-up shared by training and testing: process group, logging, seeds, output folder
(checked, locked, cleaned, the config saved).

``OUTPUT_DIR`` must be a folder this process can write (not a file, not on a read-only file
system): else one line naming it, before anything is written. Only writers (training, testing)
lock it: the tools that read a finished run (``predict.py``, ``visualize.py --out-dir DIR``)
work from a read-only folder.
"""

import logging
import os
import random
import sys
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from fvcore.common.config import CfgNode

from cgnl_video.config.validation import key_error
from cgnl_video.decoding import memory
from cgnl_video.engine import distributed as du
from cgnl_video.engine.checkpoint import checkpoint_dir
from cgnl_video.engine.run_lock import acquire_run_lock
from cgnl_video.utils.io import atomic_write_text, ensure_real_folder, remove_orphan_temp_files


def setup_logging() -> None:
    """INFO logs to stderr on rank 0; warnings and errors only elsewhere."""
    level = logging.INFO if du.is_main_process() else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr, force=True,
                        format=f"[%(asctime)s rank{du.rank()}] %(levelname)s %(name)s: %(message)s")


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch for this process."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lock_output_dir(cfg: CfgNode, hint: str = "") -> None:
    """Creates and locks ``OUTPUT_DIR``; ConfigError naming it (and the config file that set it)
    when it is a file or cannot be written there, ending with ``hint`` (what to do instead)."""
    out = cfg.OUTPUT_DIR
    if os.path.exists(out) and not os.path.isdir(out):
        raise key_error(cfg, "OUTPUT_DIR", f"OUTPUT_DIR={out!r}: is a file, not a folder{hint}")
    try:
        os.makedirs(out, exist_ok=True)
        acquire_run_lock(out)
    except OSError as err:
        raise key_error(cfg, "OUTPUT_DIR", f"OUTPUT_DIR={out!r}: cannot write there ({err.strerror}){hint}") from None


def setup_run(cfg: CfgNode, config_name: str, before_write: Optional[Callable[[CfgNode], Any]] = None,
              folders: Sequence[str] = (), hint: str = "") -> Tuple[torch.device, Any]:
    """Joins torchrun, sets up logging and seeds, keeps freed memory in the process
    (:func:`~cgnl_video.decoding.memory.keep_freed_memory`: a training step or a test batch
    reuses the last one's buffers instead of faulting fresh pages in); on rank 0, locks ``OUTPUT_DIR`` for the run
    (:func:`lock_output_dir`, with ``hint``), creates its subfolders ``folders`` (refusing
    symbolic links there), removes temp files a killed run left there, runs ``before_write(cfg)``
    (what the run reads under the lock, a check that may stop it), then saves ``cfg`` to
    ``OUTPUT_DIR/config_name``; the other processes run ``before_write`` right away. Returns the
    device and what ``before_write`` returned (None without one)."""
    device = du.init_distributed()
    memory.keep_freed_memory()
    setup_logging()
    seed_everything(cfg.RNG_SEED + du.rank())
    if not du.is_main_process():
        return device, before_write(cfg) if before_write else None
    lock_output_dir(cfg, hint)
    for folder in folders:
        ensure_real_folder(folder)
    for folder in (cfg.OUTPUT_DIR, checkpoint_dir(cfg.OUTPUT_DIR)):
        remove_orphan_temp_files(folder)
    before = before_write(cfg) if before_write else None
    atomic_write_text(os.path.join(cfg.OUTPUT_DIR, config_name), cfg.dump())
    return device, before
