"""``tools/benchmark.py gpu --device cpu --tiny``: the GPU check runs end to end on the CPU, so it
cannot rot before a GPU runs it; its tables have the rows and columns the GPU run will fill.

Also the pytorchvideo peer of ``tools/benchmark.py data``: its transforms against explicit
formulas (pytorchvideo/transforms/functional.py's), and its clips' shapes on a real video.
"""

import math
import os
import re
from pathlib import Path

import pytest
import torch
from conftest import run_tool

from cgnl_video.benchmarks import pytorchvideo_peer
from cgnl_video.config import get_cfg

ROOT = Path(__file__).resolve().parents[1]


def tables(markdown: str):
    """Every Markdown table after a ``Title:`` line: {title: (headers, rows)}."""
    found, title = {}, None
    lines = markdown.splitlines()
    for index, line in enumerate(lines):
        if line.endswith(":") and not line.startswith("|"):
            title = line[:-1]
        elif line.startswith("| ") and index + 1 < len(lines) and lines[index + 1].startswith("|---"):
            headers = [cell.strip() for cell in line.strip("|").split("|")]
            rows = []
            for row in lines[index + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(headers, (cell.strip() for cell in row.strip("|").split("|")))))
            found.setdefault(title, (headers, rows))
    return found


def _positive(text: str) -> bool:
    value = float(text.replace(",", ""))
    return math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "PERFORMANCE.md"
    out.write_text("# Performance\n\nhand-written text\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = run_tool("benchmark.py", ["gpu", "--device", "cpu", "--tiny", "--out", out], cwd=ROOT, env=env, timeout=240)
    return done.stdout, out.read_text()


def _table(report_text: str, start: str):
    matches = [value for title, value in tables(report_text).items() if title and title.startswith(start)]
    assert matches, f"no table under '{start}...'"
    return matches[0]


def test_section_written_between_markers_and_nothing_failed(report):
    stdout, written = report
    assert written.startswith("# Performance\n\nhand-written text\n")
    assert "<!-- gpu-cpu:begin -->\n### GPU check on CPU (tiny settings)" in written
    assert written.rstrip().endswith("<!-- gpu-cpu:end -->")
    assert "FAILED" not in written and "MISSED" not in written
    assert "### GPU check on CPU" in stdout


def test_every_collective_checked_on_gloo(report):
    headers, rows = _table(report[1], "Process group at world size 1")
    assert headers == ["collective", "backend", "check", "what was checked"]
    names = [row["collective"] for row in rows]
    for name in ("group state", "all_reduce_sum", "gather_lists", "broadcast_buffers", "barrier",
                 "check_collective_device"):
        assert name in names
    assert all(row["check"] == "ok" and row["backend"] == "gloo" for row in rows)


def test_training_rows_cover_precisions_and_formats_with_close_losses(report):
    headers, rows = _table(report[1], "Training steps")
    assert headers[:5] == ["config", "precision", "memory format", "norm", "clips / s"]
    assert "loader workers needed" in headers and "rel. diff to fp32" in headers
    combos = {(row["config"], row["precision"], row["memory format"]) for row in rows}
    assert combos == {(config, precision, layout) for config in ("I3D_8x8_R50_CGNL1", "I3D_8x8_R50_NL1")
                      for precision in ("fp32", "bf16") for layout in ("contiguous", "channels_last_3d")}
    for row in rows:
        assert _positive(row["clips / s"]) and _positive(row["ms / step"]) and _positive(row["step peak MiB"])
        assert _positive(row["first loss"]) and row["loss check"] == "ok"
        assert int(row["loader workers needed"]) >= 1
        if row["rel. diff to fp32"] != "-":
            assert float(row["rel. diff to fp32"]) <= (5e-2 if row["precision"] == "bf16" else 2e-3)
    assert "fp16 rows skipped" in report[1] and "SyncBatchNorm row skipped" in report[1]


def test_testing_rows_give_views_per_second(report):
    headers, rows = _table(report[1], "Multi-view testing")
    assert headers[:5] == ["config", "precision", "memory format", "views / video", "views / s"]
    assert len(rows) == 8
    for row in rows:
        assert row["views / video"] == "6"  # --tiny: 2 clips x 3 crops
        assert _positive(row["views / s"]) and row["scores finite"] == "ok"


def test_blocks_table_and_loader_workers(report):
    headers, rows = _table(report[1], "CGNL / NL blocks")
    assert headers[:3] == ["T x H x W", "C / inner", "block"]
    assert {row["block"] for row in rows} >= {"CGNL floor", "CGNL dot", "NL"}
    assert all(_positive(row["fwd ms"]) and _positive(row["fwd+bwd ms"]) for row in rows)
    rate = re.search(r"One worker .* reads ([\d,.]+) train clips/s", report[1])
    assert rate and _positive(rate.group(1))


def test_peer_transforms_follow_pytorchvideo_formulas():
    video = torch.arange(2 * 5 * 6 * 10, dtype=torch.float32).reshape(2, 5, 6, 10)
    # uniform_temporal_subsample: linspace(0, T - 1, n).long() (nearest when n > T).
    assert pytorchvideo_peer.temporal_subsample(video, 3)[:, :, 0, 0].tolist() == video[:, [0, 2, 4], 0, 0].tolist()
    assert pytorchvideo_peer.temporal_subsample(video, 7).shape[1] == 7
    # short_side_scale: the short side (H = 6) to 12, the long side floor(10 / 6 * 12) = 20.
    assert pytorchvideo_peer.short_side_scale(video, 12).shape == (2, 5, 12, 20)
    # uniform_crop of a wide frame: left / centre (ceil((10 - 6) / 2) = 2) / right.
    for index, left in ((0, 0), (1, 2), (2, 4)):
        assert torch.equal(pytorchvideo_peer.uniform_crop(video, 6, index), video[..., :, left:left + 6])
    tall = video.transpose(-1, -2)
    assert torch.equal(pytorchvideo_peer.uniform_crop(tall, 6, 2), tall[..., 4:10, :])


def test_peer_reads_clips_and_test_items_of_a_video(make_video, frame_level):
    path = make_video(num_frames=40)  # flat grey frames, frame i at frame_level(i)
    cfg = get_cfg()
    cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TEST_CROP_SIZE = 32, [48, 56], 32
    cfg.DATA.SAMPLING_RATE = 4  # 8 x 4 = 32 of the 40 frames
    cfg.TEST.NUM_ENSEMBLE_VIEWS = 2
    (clip,) = pytorchvideo_peer.train_clips([path], cfg)()
    assert clip.shape == (3, cfg.DATA.NUM_FRAMES, 32, 32) and clip.dtype == torch.float32
    levels = clip.mean(dim=(0, 2, 3))  # one grey level per frame, rising with time (codec error aside)
    assert float(levels[0]) >= frame_level(0) - 3 and float(levels[-1]) <= frame_level(39) + 3
    assert all(later > earlier for earlier, later in zip(levels.tolist(), levels[1:].tolist()))
    (item,) = pytorchvideo_peer.test_items([path], cfg)()
    assert item.shape == (2 * cfg.TEST.NUM_SPATIAL_CROPS, 3, cfg.DATA.NUM_FRAMES, 32, 32)
