"""Which items each process loads, and in which batches: one global data order for every layout.

Training (:class:`GlobalBatchSampler`): each epoch has one permutation of the list, a
function of ``(seed, epoch)`` only. It is cut into global batches of ``TRAIN.BATCH_SIZE``
items (the last partial one dropped); each global batch is cut into
``world_size x accumulation_steps`` micro-batches of ``BATCH_SIZE / (world_size x
accumulation_steps)`` items, and process ``rank`` loads micro-batch ``a x world_size + rank``
at accumulation step ``a``. So 1 process, N processes and N processes accumulating all see
the same global batches, and the optimiser steps on the same items.

Validation and testing (:class:`ShardBatchSampler`): process ``rank`` loads items
``rank, rank + world_size, ...`` in list order, every item exactly once over all processes
(no padding: the summed metrics are those of one process).

Both yield lists of dataset keys ``(index, epoch)``; the dataset derives each item's
randomness from ``(seed, epoch, index)`` (:func:`item_seed`), so workers, ranks and
accumulation steps change nothing but speed.
"""

from typing import Iterator, List, Tuple

import numpy as np
import torch
from torch.utils.data import Sampler

from cgnl_video.errors import ConfigError

Key = Tuple[int, int]  # (index in the list, epoch)


def _seed(*words: int) -> int:
    """A 63-bit seed mixed from non-negative integers (NumPy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of item ``index``'s randomness in ``epoch`` of a run seeded with ``seed``."""
    return _seed(seed, epoch, index)


def micro_batch_size(global_batch: int, world_size: int, accumulation_steps: int) -> int:
    """Items one process loads per micro-batch; ConfigError naming ``TRAIN.BATCH_SIZE`` when
    they do not divide."""
    parts = world_size * accumulation_steps
    if global_batch < 1 or global_batch % parts:
        raise ConfigError(
            f"TRAIN.BATCH_SIZE={global_batch} (the global batch) must be a positive multiple of "
            f"world size {world_size} x TRAIN.ACCUMULATION_STEPS {accumulation_steps} = {parts}",
            key="TRAIN.BATCH_SIZE")
    return global_batch // parts


class GlobalBatchSampler(Sampler[List[Key]]):
    """This process's training micro-batches; call :meth:`set_epoch` before each epoch."""

    def __init__(self, num_items: int, global_batch: int, world_size: int = 1, rank: int = 0,
                 accumulation_steps: int = 1, seed: int = 0):
        self.micro = micro_batch_size(global_batch, world_size, accumulation_steps)
        if num_items < global_batch:
            raise ConfigError(f"TRAIN.BATCH_SIZE={global_batch} exceeds the {num_items} training videos",
                              key="TRAIN.BATCH_SIZE")
        self.num_items, self.global_batch = num_items, global_batch
        self.world_size, self.rank, self.accumulation_steps = world_size, rank, accumulation_steps
        self.seed, self.epoch = seed, 0

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch (global batches)."""
        return self.num_items // self.global_batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self) -> List[int]:
        """The epoch's order of the whole list, shared by every process."""
        generator = torch.Generator().manual_seed(_seed(self.seed, self.epoch))
        return torch.randperm(self.num_items, generator=generator).tolist()

    def __iter__(self) -> Iterator[List[Key]]:
        order = self.permutation()
        for step in range(self.steps_per_epoch):
            batch = order[step * self.global_batch:(step + 1) * self.global_batch]
            for accumulation in range(self.accumulation_steps):
                first = (accumulation * self.world_size + self.rank) * self.micro
                yield [(index, self.epoch) for index in batch[first:first + self.micro]]

    def __len__(self) -> int:
        return self.steps_per_epoch * self.accumulation_steps


class ShardBatchSampler(Sampler[List[Key]]):
    """Items ``rank, rank + world_size, ...`` in list order, in batches of ``batch_size``."""

    def __init__(self, num_items: int, batch_size: int, world_size: int = 1, rank: int = 0):
        self.indices = list(range(rank, num_items, world_size))
        self.batch_size = batch_size

    def set_epoch(self, epoch: int) -> None:
        """Evaluation order does not depend on the epoch."""

    def __iter__(self) -> Iterator[List[Key]]:
        for first in range(0, len(self.indices), self.batch_size):
            yield [(index, 0) for index in self.indices[first:first + self.batch_size]]

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)
