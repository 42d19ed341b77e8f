"""Run under torchrun by test_distributed.py: checks data sharding, trains, reports weights.

Usage: torchrun --nproc_per_node 2 tests/ddp_worker.py REPORT.json KEY VALUE ...
"""

import json
import sys

import torch.distributed as dist

from cgnl_video.config import load_config
from cgnl_video.datasets import build_loader, set_loader_epoch
from cgnl_video.engine import distributed as du
from cgnl_video.engine.train import train


def main(report_path, opts):
    cfg = load_config(None, opts)
    du.init_distributed()
    loader = build_loader(cfg, "train")
    set_loader_epoch(loader, 0)
    seen = [int(i) for batch in loader for i in batch["index"]]
    model = train(cfg).model
    checksum = [float(p.double().sum()) for p in model.parameters()]
    gathered = [None] * du.world_size()
    dist.all_gather_object(gathered, {"seen": seen, "checksum": checksum})
    if du.is_main_process():
        with open(report_path, "w") as handle:
            json.dump({"world_size": du.world_size(), "ranks": gathered}, handle)
    du.cleanup()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
