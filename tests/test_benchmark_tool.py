"""``tools/benchmark.py`` and ``cgnl_video.benchmarks``: timing helper, report section, every subcommand.

No timing assertions: only the structure of what is measured and written.
"""

import importlib.util
import itertools
import math
import stat
import statistics
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_tool

from cgnl_video.benchmarks import blocks, timing, update_section
from cgnl_video.benchmarks.data import textured_video
from cgnl_video.benchmarks.timing import (
    CpuSnapshot,
    Measurement,
    measure,
    others_cpu_share,
    paired_ratio,
    peak_memory_bytes,
    time_interleaved,
)
from cgnl_video.decoding.readers import open_reader

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
CANDIDATES = [
    "CGNL floor", "CGNL floor qkv", "CGNL dot", "CGNL gaussian", "CGNL embedded_gaussian", "NL", "NL pool 1x2x2"
]


def number(cell: str) -> float:
    """A table cell's number (thousands separated: "1,419.6")."""
    return float(cell.replace(",", ""))


@pytest.fixture(scope="module")
def tool():
    """``tools/benchmark.py`` loaded as a module."""
    spec = importlib.util.spec_from_file_location("benchmark_tool", ROOT / "tools" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def counting_candidates(names, calls):
    """Candidates that record their name in ``calls`` when called."""
    return {name: (lambda name=name: calls.append(name)) for name in names}


def test_time_interleaved_rotates_the_order_each_round():
    calls = []
    samples = time_interleaved(counting_candidates("abc", calls), 4, CPU)
    assert "".join(calls) == "abc" + "bca" + "cab" + "abc"
    assert {name: len(times) for name, times in samples.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(time >= 0 for times in samples.values() for time in times)


def test_measure_returns_the_median_of_every_candidate():
    calls = []
    results = measure(counting_candidates(["x", "y"], calls), CPU, max_rounds=5, budget_s=1e9)
    assert list(results) == ["x", "y"]
    for result in results.values():
        assert len(result.samples_s) == 5
        assert result.median_s == statistics.median(result.samples_s)
        assert result.peak_bytes >= 0
    # One memory / warm-up round, then the 5 timed ones.
    assert Counter(calls) == {"x": 6, "y": 6}


def test_measure_budget_cuts_rounds_down_to_the_minimum():
    results = measure(counting_candidates(["x"], []), CPU, max_rounds=50, budget_s=0.0, min_rounds=2)
    assert len(results["x"].samples_s) == 2
    with pytest.raises(ValueError):
        measure(counting_candidates(["x"], []), CPU, max_rounds=1, budget_s=1.0, min_rounds=2)


def test_paired_ratio_is_the_median_of_the_per_round_ratios():
    slow = Measurement(median_s=4.0, samples_s=[2.0, 9.0, 4.0], peak_bytes=0)
    fast = Measurement(median_s=2.0, samples_s=[1.0, 3.0, 2.0], peak_bytes=0)
    assert paired_ratio(slow, fast) == 2.0  # per round: 2, 3, 2
    with pytest.raises(ValueError):
        paired_ratio(slow, Measurement(median_s=1.0, samples_s=[1.0], peak_bytes=0))


def test_others_cpu_share_leaves_out_this_process():
    start, end = CpuSnapshot(10.0, 20.0, 1.0), CpuSnapshot(16.0, 30.0, 3.0)
    assert others_cpu_share(start, end) == pytest.approx(0.4)  # (6 busy - 2 ours) / 10
    assert others_cpu_share(CpuSnapshot(None, None, 1.0), end) is None


def test_cpu_peak_memory_counts_what_the_call_allocates_at_once():
    held = torch.ones(1 << 22)  # allocated before the call: not counted

    def call():
        a = torch.ones(1 << 20)  # 4 MiB
        b = torch.ones(1 << 21)  # 8 MiB, 12 MiB live together
        del a, b
        return torch.ones(1 << 18) + held[: 1 << 18]  # 1 MiB (+ 1 MiB temporary)

    peak = peak_memory_bytes(call, CPU)
    assert 12 * 2**20 <= peak < 13 * 2**20


def test_update_section_rewrites_only_its_own_section(tmp_path):
    path = tmp_path / "PERFORMANCE.md"
    path.write_text("# Performance\n\nHand-written notes.\n")
    update_section(path, "blocks-cpu", "first run")
    update_section(path, "data-cpu", "data run")
    update_section(path, "blocks-cpu", "second run")
    text = path.read_text()
    assert text.startswith("# Performance\n\nHand-written notes.\n")
    assert text.count("<!-- blocks-cpu:begin -->") == 1
    assert "second run" in text and "first run" not in text
    assert text.index("second run") < text.index("data run")
    assert [p.name for p in tmp_path.iterdir()] == ["PERFORMANCE.md"]  # no temporary left behind


def test_blocks_writes_the_tables_and_prints_them(tool, tmp_path, capsys):
    out = tmp_path / "docs" / "PERFORMANCE.md"
    argv = ["blocks", "--shapes", "2x4x4", "1x2x2", "--channels", "32", "--repeats", "2"]
    argv += ["--out", str(out)]
    tool.main(argv)
    text = out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    printed = capsys.readouterr().out
    assert printed.strip() in text
    assert f"`python tools/benchmark.py {' '.join(argv)}`" in text

    rows = [
        line.strip("| ").split(" | ")
        for line in text.splitlines()
        if line.startswith("| 2x4x4 | 32 / 16 |")
    ]
    timing_rows = [row for row in rows if len(row) == 8]
    assert [row[2] for row in timing_rows] == CANDIDATES
    assert all(row[7] == "2 / 2" for row in timing_rows)
    assert all(number(cell) > 0 for row in timing_rows for cell in (row[3], row[5]))
    ratio_rows = [row for row in rows if len(row) == 11]  # / floor, / floor qkv, / NL, / NL pool, per mode
    assert [row[2] for row in ratio_rows] == ["dot", "gaussian", "embedded_gaussian"]
    # The growth check orders the cases by T x H x W.
    assert "- CGNL dot / NL at C=32, fwd, by T x H x W: 1x2x2 " in text


def test_blocks_without_nl_compares_the_cgnl_blocks_with_their_floor_only(tool, capsys):
    tool.main(["blocks", "--shapes", "2x4x4", "--channels", "32", "--repeats", "2", "--no-nl"])
    printed = capsys.readouterr().out
    rows = [line.strip("| ").split(" | ") for line in printed.splitlines() if line.startswith("| 2x4x4 | 32 / 16 |")]
    assert [row[2] for row in rows if len(row) == 8] == [name for name in CANDIDATES if "NL" not in name.split()]
    assert [len(row) for row in rows if row[2] == "dot"] == [7]  # the ratio row: / floor and / floor qkv, per mode
    assert "- CGNL gaussian / floor, " not in printed  # the target case 8x14x14 C1024 is not measured
    assert "/ NL" not in printed


def test_the_qkv_floor_computes_what_the_floor_does_with_the_same_weights():
    candidates = blocks.build_candidates(16, 2, 1, with_nl=False)
    x = torch.randn(2, 16, 2, 3, 3, requires_grad=True)
    plain, stacked = candidates[blocks.FLOOR], candidates[blocks.FLOOR_STACKED]
    assert plain.theta is stacked.theta and plain.z is stacked.z
    for weight in (plain.theta.weight, plain.phi.weight, plain.g.weight):  # the three are not alike
        torch.nn.init.normal_(weight)
    out, out_stacked = plain(x), stacked(x)
    torch.testing.assert_close(out_stacked, out)
    grads = torch.autograd.grad(out.sum(), [x, *plain.parameters()])
    torch.testing.assert_close(torch.autograd.grad(out_stacked.sum(), [x, *plain.parameters()]), grads)


def test_blocks_rejects_a_malformed_shape(tool):
    with pytest.raises(SystemExit):
        tool.main(["blocks", "--shapes", "8x14"])


def test_missing_benchmark_module_is_skipped_but_a_broken_one_fails(tool, monkeypatch):
    assert tool.benchmark_module("blocks") is blocks
    assert tool.benchmark_module("not_written_yet") is None

    def import_needing_a_missing_dependency(name):
        raise ModuleNotFoundError("No module named 'decord'", name="decord")

    monkeypatch.setattr(tool.importlib, "import_module", import_needing_a_missing_dependency)
    with pytest.raises(ModuleNotFoundError):
        tool.benchmark_module("data")


def test_machine_description_names_the_tuning_environment(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert "MALLOC_ARENA_MAX" not in timing.machine_description(CPU)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert "MALLOC_ARENA_MAX=2" in timing.machine_description(CPU)


def test_export_times_eager_onnxruntime_and_torchscript_side_by_side(tool, tmp_path):
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(
        "MODEL: {NUM_CLASSES: 2}\nRESNET: {DEPTH: 18, WIDTH_PER_GROUP: 8}\n"
        "NONLOCAL: {TYPE: cgnl, LOCATION: [[], [0], [0], []]}\nCGNL: {GROUPS: 2}\n"
        "DATA: {NUM_FRAMES: 4, TEST_CROP_SIZE: 32}\n"
    )
    out = tmp_path / "PERFORMANCE.md"
    tool.main(["export", "--configs", str(cfg_file), "--rounds", "2", "--out", str(out)])
    rows = [line.strip("| ").split(" | ") for line in out.read_text().splitlines()
            if line.startswith(f"| `{cfg_file}` |")]
    assert [row[1:3] for row in rows] == [["1 x 3 x 4 x 32 x 32", name]
                                          for name in ("eager", "onnxruntime", "torchscript")]
    # times > 0; ratios to eager >= 0 (two decimals: a busy machine's slow eager round shows 0.00)
    assert all(number(row[3]) > 0 and number(row[4]) >= 0 and row[7] == "2" for row in rows)
    assert rows[0][4] == "1.00"
    assert rows[0][5].startswith("(max abs logit ")
    assert all(number(row[5]) <= 1e-4 and number(row[6]) > 0 for row in rows[1:])
    assert "<!-- export-cpu:begin -->" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PERFORMANCE.md", "tiny.yaml"]


def test_timeline_scores_both_videos_in_fresh_processes_and_reports_the_rss_ratio(tool, tmp_path):
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(
        "MODEL: {NUM_CLASSES: 2}\nRESNET: {DEPTH: 18, WIDTH_PER_GROUP: 8}\n"
        "NONLOCAL: {TYPE: cgnl, LOCATION: [[], [0], [0], []]}\nCGNL: {GROUPS: 2}\n"
        "DATA: {NUM_FRAMES: 4, SAMPLING_RATE: 2, TEST_CROP_SIZE: 32}\n"
        "TEST: {NUM_ENSEMBLE_VIEWS: 1, NUM_SPATIAL_CROPS: 1}\n"
    )
    out = tmp_path / "PERFORMANCE.md"
    tool.main(["timeline", "--cfg", str(cfg_file), "--short", "0.05", "--long", "0.1", "--out", str(out)])
    text = out.read_text()
    rows = [line.strip("| ").split(" | ") for line in text.splitlines() if " min, 568x320, 25 fps |" in line]
    assert [row[0] for row in rows] == ["0.05 min, 568x320, 25 fps", "0.1 min, 568x320, 25 fps"]
    assert [int(row[1]) for row in rows] == [2, 5]  # 3 s and 6 s: 2 s windows every 1 s
    rss = [number(row[5]) for row in rows]
    ratio = float(text.split("Peak RSS long / short = ")[1].split(" ")[0])
    assert ratio == pytest.approx(rss[1] / rss[0], abs=0.01) and all(value > 50 for value in rss)
    assert "<!-- timeline-cpu:begin -->" in text


def run_benchmark(*args):
    """``python tools/benchmark.py ARGS`` in a process of its own (``data`` and ``decoding`` set the
    torch threads to 1, as in a loader worker): its stdout."""
    return run_tool("benchmark.py", args, cwd=ROOT, timeout=300).stdout


def table_rows(text, header):
    """The body rows (lists of cells) of the Markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = itertools.takewhile(lambda line: line.startswith("|"), lines[start + 2:])
    return [row.strip("| ").split(" | ") for row in rows]


def positive(cell):
    value = number(cell)
    return math.isfinite(value) and value > 0


def test_data_compares_the_dataset_with_raw_decord_per_video(make_video, tmp_path):
    videos = [make_video("a.mp4", num_frames=32), make_video("b.mp4", num_frames=24)]
    out = tmp_path / "PERFORMANCE.md"
    printed = run_benchmark("data", "--videos", *videos, "--hd-frames", "4", "--rounds", "3",
                            "--budget", "0", "--out", str(out), "--set", "DATA.NUM_FRAMES", "4",
                            "DATA.SAMPLING_RATE", "2", "DATA.TRAIN_JITTER_SCALES", "[32,40]",
                            "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "TEST.NUM_ENSEMBLE_VIEWS", "2")
    text = out.read_text()
    assert printed.strip() in text and "<!-- data-cpu:begin -->" in text
    assert "T = 4 frames at stride 2" in text and "test K = 2 clips x S = 3 crops of 32" in text
    per_video = {  # header: (ms columns, ratio columns)
        "| video | frames | raw decord get_batch, ms | dataset train item, ms |": (3, 2),
        "| video | frames | raw decord, union of the K clips in one get_batch, ms |": (5, 5),
    }
    for header, (times, ratios) in per_video.items():
        rows = table_rows(text, header)
        assert [row[0] for row in rows] == ["a.mp4", "b.mp4", "kinetics_like_340x256.mp4", "hd_1920x1080.mp4",
                                           "geometric mean"]
        assert rows[0][1] == "64x48, 32 frames at 25 fps, h264" and rows[1][1].startswith("64x48, 24 frames")
        # the videos the benchmark makes: Kinetics-like, 10 s at 30 fps; 1080p
        assert rows[2][1] == "340x256, 300 frames at 30 fps, h264" and rows[3][1] == "1920x1080, 4 frames at 25 fps, h264"
        assert all(len(row) == 2 + times + ratios + 1 for row in rows) and [row[-1] for row in rows] == ["3"] * 4 + ["-"]
        # each video's times, then ratios (the float32 zeros' may round to 0.00); 3 rounds each
        assert all(positive(cell) for row in rows[:4] for cell in row[2:2 + times]), rows
        for column in range(2 + times, 2 + times + ratios):
            values = [number(row[column]) for row in rows]
            assert all(math.isfinite(v) and v >= 0 for v in values), rows
            if min(values[:4]) > 0:  # the last row, the geometric mean, lies between the videos'
                assert min(values[:4]) - 0.01 <= values[4] <= max(values[:4]) + 0.01, rows
    rows = table_rows(text, "|  | ms / clip | clips / s | time / raw decord get_batch, 1920x1080 |")
    assert [row[0] for row in rows] == ["raw decord get_batch, 1920x1080", "raw decord get_batch, decoded to 71x40",
                                       "dataset train item, full-size decode", "dataset train item, decoded to 71x40 (default)"]
    assert rows[0][3] == "1.00" and all(positive(row[2]) for row in rows)
    targets = text.split("geometric means over the videos:\n")[1].splitlines()
    assert [line.split(" = ")[0] for line in targets[:2]] == [
        "- dataset train clips/s / raw decord clips/s", "- test item time / one-pass union decode"]
    assert all(positive(line.split(" = ")[1].split(" ")[0]) for line in targets[:2])
    # uint8 views of 2 clips x 3 crops x 3 x 4 x 32 x 32 against float32
    assert "0.1 MiB of uint8 views, against 0.3 MiB as float32" in targets[2]


def test_the_kinetics_like_clip_pans_its_texture(tmp_path):
    path = str(tmp_path / "clip.mp4")
    textured_video(path, num_frames=6, width=64, height=48, fps=30)
    with open_reader(path) as video:
        assert (video.num_frames, video.size, video.fps) == (6, (64, 48), 30)
        frames = video.get(range(6)).astype(np.float32)
    # frame t + 1 is frame t moved 2 px left and 1 px up (plus noise): closer than unmoved
    moved = np.abs(frames[1:, :-1, :-2] - frames[:-1, 1:, 2:]).mean()
    assert moved < 0.5 * np.abs(frames[1:] - frames[:-1]).mean()


def test_decoding_times_the_guard_and_counts_the_failed_clips(make_video, bad_videos):
    videos = [make_video("a.mp4", num_frames=32), make_video("b.mp4", num_frames=24)]
    printed = run_benchmark("decoding", "--videos", *videos, "--undecodable", bad_videos["text"],
                            "--items", "6", "--rounds", "3", "--budget", "0")
    timed = table_rows(printed, "| train clip | ms / clip | rounds |")
    assert [row[0] for row in timed] == ["in process (DATA.DECODE_TIMEOUT 0)", "guarded (child process, pipe)"]
    assert all(positive(row[1]) and row[2] == "3" for row in timed)
    assert positive(printed.split("guarded / in process: ")[1].split("x")[0])
    memory = table_rows(printed, "| 6 clips, 1 in 3 undecodable |")
    assert [(row[0], row[3]) for row in memory] == [("in process", "2"), ("guarded", "2")]
    assert memory[0][2] == "-"  # no child process without the guard
    for row in memory:
        assert all(positive(mib) for cell in row[1:3] if cell != "-" for mib in cell.split(" -> "))
