"""Each input read once per process: classes.txt, each list file, each checkpoint (loaded and
hashed once), for a fresh, a resumed and a fine-tuning training run and a test run.

The reads are counted by wrapping the functions that open them (the lists' text reader,
``torch.load``, the checkpoint hash) around real in-process runs; nothing is mocked.
"""

import os
from collections import Counter

import pytest
import torch
from conftest import tiny_opts

from cgnl_video.config import load_config
from cgnl_video.datasets import lists
from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.engine.test import run_test
from cgnl_video.engine.train import train

ONE_EPOCH = {"SOLVER.MAX_EPOCH": 1, "TRAIN.EVAL_PERIOD": 1}


class Reads:
    """Counts, by file name, the list / classes files read, the files ``torch.load`` opened,
    and the checkpoints hashed to check them (``load_file``) or to write them."""

    def __init__(self, monkeypatch):
        self.files, self.hashes = Counter(), 0
        read_text_lines, torch_load, checksum = lists.read_text_lines, torch.load, ckpt.state_checksum

        def counting_read(path):
            self.files[os.path.basename(path)] += 1
            return read_text_lines(path)

        def counting_load(source, *args, **kwargs):
            if isinstance(source, (str, os.PathLike)):
                self.files[os.path.basename(source)] += 1
            return torch_load(source, *args, **kwargs)

        def counting_checksum(state):
            self.hashes += 1
            return checksum(state)

        monkeypatch.setattr(lists, "read_text_lines", counting_read)
        monkeypatch.setattr(torch, "load", counting_load)
        monkeypatch.setattr(ckpt, "state_checksum", counting_checksum)


@pytest.fixture
def reads(monkeypatch):
    return Reads(monkeypatch)


@pytest.fixture(scope="module")
def first_run(data_dir, tmp_path_factory):
    """A 1-epoch run (its checkpoint ``checkpoint_epoch_00001.pyth``)."""
    out = str(tmp_path_factory.mktemp("first"))
    train(load_config(None, tiny_opts(data_dir, out, **ONE_EPOCH)))
    return out


CHECKPOINT_1 = os.path.basename(ckpt.checkpoint_path("", 1))
CHECKPOINT_2 = os.path.basename(ckpt.checkpoint_path("", 2))


def test_a_fresh_run_reads_each_list_once(data_dir, tmp_path, reads):
    train(load_config(None, tiny_opts(data_dir, str(tmp_path / "run"), **ONE_EPOCH)))
    assert reads.files == {"classes.txt": 1, "train.csv": 1, "val.csv": 1}
    assert reads.hashes == 1  # the checkpoint written


def test_a_resumed_run_loads_its_checkpoint_once(first_run, data_dir, reads):
    train(load_config(None, tiny_opts(data_dir, first_run, **{**ONE_EPOCH, "SOLVER.MAX_EPOCH": 2})))
    assert reads.files == {"classes.txt": 1, "train.csv": 1, "val.csv": 1, CHECKPOINT_1: 1}
    assert reads.hashes == 2  # the checkpoint loaded, the one written


def test_a_fine_tuning_run_loads_its_checkpoint_file_once(first_run, data_dir, tmp_path, reads):
    source = ckpt.checkpoint_path(first_run, 1)
    opts = {**ONE_EPOCH, "TRAIN.CHECKPOINT_FILE_PATH": source, "TRAIN.CHECKPOINT_EPOCH_RESET": True}
    train(load_config(None, tiny_opts(data_dir, str(tmp_path / "tuned"), **opts)))
    assert reads.files == {"classes.txt": 1, "train.csv": 1, "val.csv": 1, CHECKPOINT_1: 1}
    assert reads.hashes == 2


def test_a_test_run_reads_its_list_and_checkpoint_once(first_run, data_dir, tmp_path, reads):
    opts = {"TEST.CHECKPOINT_FILE_PATH": ckpt.checkpoint_path(first_run, 1)}
    run_test(load_config(None, tiny_opts(data_dir, str(tmp_path / "test"), **opts)))
    assert reads.files == {"classes.txt": 1, "test.csv": 1, CHECKPOINT_1: 1}
    assert reads.hashes == 1
