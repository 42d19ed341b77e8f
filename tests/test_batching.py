"""Batch samplers: one global order shared by every process / accumulation layout; no padding."""

import pytest

from cgnl_video.datasets.batching import GlobalBatchSampler, ShardBatchSampler, item_seed


def global_batches(num_items, batch, world_size, accumulation, seed=0, epoch=0):
    """Per optimiser step, the items of all processes' micro-batches, micro-batch m = a * W + r."""
    samplers = [GlobalBatchSampler(num_items, batch, world_size, rank, accumulation, seed)
                for rank in range(world_size)]
    per_rank = []
    for sampler in samplers:
        sampler.set_epoch(epoch)
        per_rank.append(list(sampler))
    assert all(len(batches) == len(samplers[0]) == samplers[0].steps_per_epoch * accumulation for batches in per_rank)
    steps = []
    for step in range(samplers[0].steps_per_epoch):
        micro = [per_rank[rank][step * accumulation + a] for a in range(accumulation) for rank in range(world_size)]
        steps.append([key for part in micro for key in part])
    return steps


@pytest.mark.parametrize("world_size, accumulation", [(2, 1), (1, 2), (2, 2), (4, 1)])
def test_every_layout_steps_on_the_same_global_batches(world_size, accumulation):
    reference = global_batches(23, 8, 1, 1, seed=5, epoch=3)
    assert len(reference) == 2  # 23 // 8, the last partial batch dropped
    assert global_batches(23, 8, world_size, accumulation, seed=5, epoch=3) == reference


def test_the_order_is_a_function_of_seed_and_epoch():
    first = global_batches(40, 4, 1, 1, seed=1, epoch=0)
    assert global_batches(40, 4, 1, 1, seed=1, epoch=0) == first
    assert global_batches(40, 4, 1, 1, seed=1, epoch=1) != first
    assert global_batches(40, 4, 1, 1, seed=2, epoch=0) != first
    keys = [key for batch in first for key in batch]
    assert sorted(index for index, _ in keys) == list(range(40)) and {e for _, e in keys} == {0}


def test_batch_sizes_that_do_not_divide_are_refused():
    with pytest.raises(ValueError, match=r"TRAIN.BATCH_SIZE=6 .* world size 4 x TRAIN.ACCUMULATION_STEPS 1"):
        GlobalBatchSampler(100, 6, world_size=4)
    with pytest.raises(ValueError, match="exceeds the 5 training videos"):
        GlobalBatchSampler(5, 8)


def test_shards_cover_every_item_exactly_once_without_padding():
    shards = [list(ShardBatchSampler(7, 2, world_size=3, rank=r)) for r in range(3)]
    seen = [index for shard in shards for batch in shard for index, _ in batch]
    assert sorted(seen) == list(range(7))
    assert [len(ShardBatchSampler(7, 2, 3, r)) for r in range(3)] == [2, 1, 1]


def test_item_seeds_differ_by_seed_epoch_and_index():
    seeds = {item_seed(s, e, i) for s in range(3) for e in range(3) for i in range(50)}
    assert len(seeds) == 450 and all(0 <= s < 2**63 for s in seeds)
