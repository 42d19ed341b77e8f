"""Run set-up shared by training and testing: process group, logging, seeds, output folder."""

import logging
import os
import random
import sys

import numpy as np
import torch
from fvcore.common.config import CfgNode

from cgnl_video.config.loading import ConfigError
from cgnl_video.datasets.lists import CLASSES_FILE, read_classes
from cgnl_video.engine import distributed as du
from cgnl_video.utils.io import atomic_write_text


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


def setup_run(cfg: CfgNode, config_name: str) -> torch.device:
    """Joins torchrun, sets up logging and seeds, saves ``cfg`` to ``OUTPUT_DIR/config_name``."""
    device = du.init_distributed()
    setup_logging()
    seed_everything(cfg.RNG_SEED + du.rank())
    if du.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        atomic_write_text(os.path.join(cfg.OUTPUT_DIR, config_name), cfg.dump())
    return device


def check_num_classes(cfg: CfgNode) -> list:
    """Returns the class names; ConfigError when ``MODEL.NUM_CLASSES`` disagrees with classes.txt."""
    path = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, CLASSES_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"DATA.PATH_TO_DATA_DIR={cfg.DATA.PATH_TO_DATA_DIR!r}: no {CLASSES_FILE} in it")
    names = read_classes(path)
    if len(names) != cfg.MODEL.NUM_CLASSES:
        raise ConfigError(
            f"MODEL.NUM_CLASSES={cfg.MODEL.NUM_CLASSES} but {path} names {len(names)} classes"
        )
    return names
