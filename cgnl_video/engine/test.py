"""Multi-view testing: K clips x S crops per video, softmax scores aggregated per video.

A test item holds all V = K x S views of one video (``V x C x T x H x W``); they go
through the model in chunks of at most ``TEST.MAX_VIEWS_PER_BATCH``; the views'
softmax scores are combined with ``TEST.ENSEMBLE_METHOD`` (sum or max). Videos that
could not be decoded are reported in ``failed`` with their reason, never dropped
silently. Under torchrun each process tests a share of the videos and rank 0 gathers
the results. Outputs in ``OUTPUT_DIR``: ``test_results.json``, ``predictions.csv``
(path, label, top-5 classes and scores), ``confusion_matrix.png``.
"""

import csv
import io
import json
import logging
import os
from typing import Dict, List

from fvcore.common.config import CfgNode
from tqdm import tqdm

from cgnl_video.datasets import build_loader
from cgnl_video.engine import checkpoint as ckpt
from cgnl_video.engine import distributed as du
from cgnl_video.engine.meters import ClassificationMeter
from cgnl_video.engine.normalize import build_normalizer
from cgnl_video.engine.preflight import validate_inputs
from cgnl_video.engine.reporting import plot_confusion_matrix
from cgnl_video.engine.run_setup import setup_run
from cgnl_video.engine.scoring import video_scores
from cgnl_video.models import build_model
from cgnl_video.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

READ_ONLY_HINT = ("; the test writes its results into OUTPUT_DIR: to test a run in a read-only folder, set "
                  "OUTPUT_DIR to a writable folder and TEST.CHECKPOINT_FILE_PATH to the run's checkpoint")


def predictions_csv(rows: List[Dict], class_names: List[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["path", "label", "top5_classes", "top5_scores"])
    for row in rows:
        writer.writerow([
            row["path"], class_names[row["label"]],
            ";".join(class_names[i] for i in row["top5"]),
            ";".join(f"{s:.4f}" for s in row["scores"]),
        ])
    return out.getvalue()


def run_test(cfg: CfgNode) -> Dict:
    """Tests the checkpoint of ``cfg`` on the test list; returns (and writes) the results."""
    inputs = validate_inputs(cfg, "test")  # the list, class names and checkpoint, read once
    class_names, path = inputs.class_names, inputs.start.source
    ckpt.check_test_compatible(cfg, inputs.start.loaded, path)
    device, _ = setup_run(cfg, "test_config.yaml", hint=READ_ONLY_HINT)
    model = build_model(cfg)
    ckpt.load_for_test(model, path, inputs.start.loaded)
    model.to(device).eval()
    normalize = build_normalizer(cfg, device)
    loader = build_loader(cfg, "test", inputs.records["test"])
    del inputs  # the checkpoint is not kept for the test's length
    records = {record.index: record for record in loader.dataset.records}
    meter = ClassificationMeter(cfg.MODEL.NUM_CLASSES)
    failed, rows = [], []
    for batch in tqdm(loader, desc="test", dynamic_ncols=True, disable=not du.is_main_process()):
        for views, label, index, is_failed, reason in zip(
            batch["video"], batch["label"], batch["index"], batch["failed"], batch["reason"]
        ):
            record = records[int(index)]
            if is_failed:
                failed.append({"path": record.path, "reason": reason})
                continue
            scores = video_scores(model, views, cfg, normalize)
            meter.update(scores[None], label[None])
            top = scores.topk(min(5, len(scores)))
            rows.append({"path": record.path, "label": int(label),
                         "top5": top.indices.tolist(), "scores": top.values.tolist()})
    meter.reduce(du.all_reduce_sum)
    rows, failed = du.gather_lists(rows), du.gather_lists(failed)
    results = {
        **meter.summary(),
        "num_videos": len(loader.dataset),
        "num_tested": meter.count,
        "num_failed": len(failed),
        "failed": failed,
        "num_ensemble_views": cfg.TEST.NUM_ENSEMBLE_VIEWS,
        "num_spatial_crops": 1 if cfg.TEST.FULLY_CONVOLUTIONAL else cfg.TEST.NUM_SPATIAL_CROPS,
        "ensemble_method": cfg.TEST.ENSEMBLE_METHOD,
        "checkpoint": path,
    }
    if du.is_main_process():
        write_outputs(cfg, results, rows, meter, class_names)
    return results


def write_outputs(cfg, results, rows, meter, class_names) -> None:
    out = cfg.OUTPUT_DIR
    atomic_write_text(os.path.join(out, "test_results.json"), json.dumps(results, indent=2))
    atomic_write_text(os.path.join(out, "predictions.csv"), predictions_csv(rows, class_names))
    plot_confusion_matrix(meter.confusion, class_names, os.path.join(out, "confusion_matrix.png"))
