"""The Dataset and its loader: uint8 items per split, one-pass multi-view decoding, bad videos and
quarantine, item-owned randomness."""

import logging

import numpy as np
import pytest
import torch

from cgnl_video.config import get_cfg
from cgnl_video.datasets import build_dataset, build_loader, set_loader_epoch
from cgnl_video.datasets.lists import ListFormatError, write_classes, write_video_list
from cgnl_video.datasets.video_dataset import VideoLoadError, collate
from cgnl_video.datasets.video_io import write_video

NUM_FRAMES = 32  # of every make_video video here


def levels(video: torch.Tensor, dims) -> torch.Tensor:
    """Mean grey level of uint8 views over ``dims``."""
    return video.float().mean(dim=dims)


@pytest.fixture
def make_data(tmp_path, make_video):
    """Writes ``{split}.csv`` lists (with classes.txt) of given paths; returns a small config."""

    def make(splits, num_classes=2):
        for split, entries in splits.items():
            write_video_list(str(tmp_path / f"{split}.csv"), entries)
        write_classes(str(tmp_path / "classes.txt"), [f"class{i}" for i in range(num_classes)])
        cfg = get_cfg()
        cfg.DATA.PATH_TO_DATA_DIR = str(tmp_path)
        cfg.DATA.PATH_PREFIX = str(tmp_path)
        cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 4, 2
        cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [36, 44], 32, 40
        cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 2, 3
        cfg.TRAIN.BATCH_SIZE, cfg.TEST.BATCH_SIZE = 2, 2
        cfg.DATA_LOADER.NUM_WORKERS = 0
        cfg.DATA.MAX_DECODE_RETRIES = 3
        return cfg

    return make


@pytest.fixture
def videos(make_video):
    """Relative paths of 4 good videos (32 frames, 64x48)."""
    for i in range(4):
        make_video(f"videos/v{i}.mp4", num_frames=NUM_FRAMES)
    return [f"videos/v{i}.mp4" for i in range(4)]


def test_train_and_val_items(make_data, videos, frame_level):
    cfg = make_data({"train": [(videos[0], 1)], "val": [(videos[0], 1)]})
    train = build_dataset(cfg, "train")[(0, 0)]
    assert train["video"].shape == (3, 4, 32, 32) and train["video"].dtype == torch.uint8
    assert (train["label"], train["index"], train["failures"]) == (1, 0, [])
    val = build_dataset(cfg, "val")
    item = val[0]
    assert item["video"].shape == (3, 4, 40, 40) and item["video"].dtype == torch.uint8
    assert (item["failed"], item["reason"]) == (False, "")
    # centre clip: delta = 32 - 7 = 25, start 12 -> frames 12, 14, 16, 18
    expected = torch.tensor([float(frame_level(i)) for i in (12, 14, 16, 18)])
    assert torch.allclose(levels(item["video"], (0, 2, 3)), expected, atol=3)
    assert torch.equal(val[0]["video"], item["video"])


def test_test_items_hold_all_views_clip_major(make_data, videos, frame_level):
    cfg = make_data({"test": [(videos[0], 0), (videos[1], 1)]})
    item = build_dataset(cfg, "test")[1]
    assert item["video"].shape == (6, 3, 4, 40, 40)
    assert (item["label"], item["index"], item["failed"], item["reason"]) == (1, 1, False, "")
    # K = 2 clips: starts 0 and 25; views 0-2 show clip 0, views 3-5 clip 1
    per_view = levels(item["video"], (1, 3, 4))
    for view in range(6):
        start = 0 if view < 3 else 25
        expected = torch.tensor([float(frame_level(start + 2 * j)) for j in range(4)])
        assert torch.allclose(per_view[view], expected, atol=3)


def test_test_items_decode_the_union_of_their_clips_once(make_data, videos):
    cfg = make_data({"test": [(videos[0], 0)]})
    cfg.TEST.NUM_ENSEMBLE_VIEWS = 3  # starts 0, 12, 25: clips overlap
    dataset = build_dataset(cfg, "test")
    calls, original_open = [], dataset.opener

    def spying_open(*args, **kwargs):
        video = original_open(*args, **kwargs)
        get = video.get
        video.get = lambda indices: calls.append(list(indices)) or get(indices)
        return video

    dataset.opener = spying_open
    dataset[0]
    assert calls == [[0, 2, 4, 6, 12, 14, 16, 18, 25, 27, 29, 31]]


def test_the_decoding_backends_give_the_same_items(make_data, videos):
    cfg = make_data({"val": [(videos[2], 0)]})
    decord_item = build_dataset(cfg, "val")[0]
    cfg.DATA.DECODING_BACKEND = "pyav"
    pyav_item = build_dataset(cfg, "val")[0]
    assert (decord_item["video"].float() - pyav_item["video"].float()).abs().mean() < 0.02 * 255 * 0.225


def serve_all(dataset, epoch=0):
    return [dataset[(i, epoch)] for i in range(len(dataset))]


def test_bad_training_videos_are_logged_and_replaced(make_data, videos, bad_videos, caplog):
    bad = list(bad_videos.values())
    cfg = make_data({"train": [(path, 0) for path in bad] + [(videos[3], 1)]})
    cfg.DATA.MAX_DECODE_RETRIES = len(bad)
    dataset = build_dataset(cfg, "train")
    with caplog.at_level(logging.WARNING):
        items = serve_all(dataset)
    assert all(item["label"] == 1 and item["index"] == len(bad) for item in items)
    failed = {path for item in items for path, _ in item["failures"]}
    assert failed == set(bad)
    assert any(reason == "file not found" for item in items for _, reason in item["failures"])
    for path in bad:
        assert path in caplog.text
    # A replacement is a function of (seed, epoch, index): the same item is served again.
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(items, serve_all(dataset)))


def test_quarantined_videos_are_replaced_without_being_decoded(make_data, videos):
    cfg = make_data({"train": [(path, i % 2) for i, path in enumerate(videos)]})
    dataset = build_dataset(cfg, "train")
    opened, original_open = [], dataset.opener
    dataset.opener = lambda path, **kw: opened.append(path) or original_open(path, **kw)
    dataset.quarantined = frozenset({0, 2})
    items = serve_all(dataset)
    assert {item["index"] for item in items} <= {1, 3}
    assert not any(p.endswith(("v0.mp4", "v2.mp4")) for p in opened) and len(opened) == 4
    assert all(item["failures"] == [] for item in items)


def test_failed_validation_videos_are_reported_not_replaced(make_data, videos, bad_videos):
    cfg = make_data({"val": [(bad_videos["truncated"], 0), (videos[3], 1)]})
    items = serve_all(build_dataset(cfg, "val"))
    assert [item["failed"] for item in items] == [True, False]
    assert items[0]["reason"].startswith(bad_videos["truncated"] + ": ") and items[0]["index"] == 0
    assert items[0]["video"].shape == items[1]["video"].shape and not items[0]["video"].any()


def test_a_video_failing_part_way_is_replaced(make_data, videos, shared_video, caplog):
    corrupted = shared_video("corrupted.mp4")
    cfg = make_data({"train": [(corrupted, 0), (videos[0], 1)]})
    cfg.DATA.SAMPLING_RATE = 16  # 49-frame clips: every clip of its 50 frames reaches frame 40
    with caplog.at_level(logging.WARNING):
        items = serve_all(build_dataset(cfg, "train"))
    assert [item["index"] for item in items] == [1, 1]
    assert [path for path, _ in items[0]["failures"]] == [corrupted]
    # decord fails at frame 40, then PyAV (the fallback) fails there too: its error is the reason
    assert f"{corrupted}: InvalidDataError" in caplog.text


def test_too_many_bad_videos_raise_an_error_naming_them(make_data, bad_videos):
    paths = list(bad_videos.values())
    cfg = make_data({"train": [(path, 0) for path in paths]})
    cfg.DATA.MAX_DECODE_RETRIES = 2
    with pytest.raises(VideoLoadError, match="after 3 attempts") as info:
        build_dataset(cfg, "train")[(0, 0)]
    assert paths[0] in str(info.value)
    assert sum(path in str(info.value) for path in paths) == 3


def test_failed_test_videos_are_reported_not_dropped(make_data, videos, bad_videos):
    cfg = make_data({"test": [(videos[0], 0), (bad_videos["truncated"], 1)]})
    dataset = build_dataset(cfg, "test")
    bad = dataset[1]
    assert bad["failed"] and bad["reason"].startswith(bad_videos["truncated"] + ": ")
    assert bad["video"].shape == (6, 3, 4, 40, 40) and not bad["video"].any()
    good = dataset[0]
    batch = collate([good, bad])
    assert batch["video"].shape == (2, 6, 3, 4, 40, 40)
    assert batch["failed"].tolist() == [False, True] and batch["index"].tolist() == [0, 1]
    # the views' values, stacked channels-last (a copy of rows of pixels), zeros included
    assert torch.equal(batch["video"], torch.stack([good["video"], bad["video"]]))
    assert batch["video"].movedim(2, -1).is_contiguous()


@pytest.mark.parametrize(
    "line, reason",
    [("videos/v0.mp4", "missing label"), ("videos/v0.mp4 one", "non-integer label"), ("videos/v0.mp4 2", "outside")],
)
def test_malformed_list_lines_fail_at_construction(line, reason, make_data, videos, tmp_path):
    cfg = make_data({"train": [(videos[0], 0)]})
    (tmp_path / "train.csv").write_text(f"{videos[1]} 1\n{line}\n")
    with pytest.raises(ListFormatError, match=rf"train\.csv:2: .*{reason}"):
        build_dataset(cfg, "train")


def test_an_empty_list_is_an_error(make_data, tmp_path):
    cfg = make_data({"train": []})
    with pytest.raises(ValueError, match="no videos"):
        build_dataset(cfg, "train")


def test_loaders_batch_shuffle_and_drop_by_split(make_data, videos):
    entries = [(path, 0) for path in videos] + [(videos[0], 1)]  # 5 videos
    cfg = make_data({"train": entries, "test": entries})
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 1, 1
    train = list(build_loader(cfg, "train"))
    assert [len(b["index"]) for b in train] == [2, 2]  # the fifth video is dropped
    assert train[0]["failures"] == [] and train[0]["video"].dtype == torch.uint8
    test = list(build_loader(cfg, "test"))
    assert torch.cat([b["index"] for b in test]).tolist() == [0, 1, 2, 3, 4]
    assert test[0]["video"].shape == (2, 1, 3, 4, 40, 40)


def test_fully_convolutional_test_batches_hold_one_video_of_its_own_shape(make_data, make_video):
    make_video("videos/wide.mp4", num_frames=NUM_FRAMES, width=96, height=48)
    make_video("videos/tall.mp4", num_frames=NUM_FRAMES, width=48, height=64)
    cfg = make_data({"test": [("videos/wide.mp4", 0), ("videos/tall.mp4", 1)]})
    cfg.TEST.FULLY_CONVOLUTIONAL = True
    shapes = [tuple(b["video"].shape) for b in build_loader(cfg, "test")]
    assert shapes == [(1, 2, 3, 4, 40, 80), (1, 2, 3, 4, 53, 40)]


def _epoch(cfg, epoch=0):
    loader = build_loader(cfg, "train")
    set_loader_epoch(loader, epoch)
    return [(b["index"], b["video"]) for b in loader]


def _same(first, second):
    return all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second))


def test_batches_depend_on_seed_and_epoch_not_on_workers(make_data, videos):
    cfg = make_data({"train": [(path, i % 2) for i, path in enumerate(videos)]})
    first = _epoch(cfg)
    cfg.DATA_LOADER.NUM_WORKERS = 2
    assert _same(first, _epoch(cfg))  # items own their randomness: workers change nothing
    assert not _same(first, _epoch(cfg, epoch=1))
    cfg.RNG_SEED = 2
    assert not _same(first, _epoch(cfg))


def test_target_fps_samples_the_same_time_span_at_any_frame_rate(make_data, tmp_path, frame_level):
    from cgnl_video.datasets.video_io import write_video

    grey = torch.tensor([frame_level(i) for i in range(48)], dtype=torch.uint8)
    frames = grey.view(-1, 1, 1, 1).expand(-1, 48, 64, 3).contiguous().numpy()
    for fps in (25, 50):
        write_video(str(tmp_path / f"videos/fps{fps}.mp4"), frames, fps=fps)
    cfg = make_data({"val": [("videos/fps25.mp4", 0), ("videos/fps50.mp4", 0)]})
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 4, 2, 25.0
    items = serve_all(build_dataset(cfg, "val"))
    seen = [levels(item["video"], (0, 2, 3)) for item in items]
    # 25 fps: every 2nd frame (span 7, centre start 20); 50 fps: every 4th (span 13, start 17)
    assert torch.allclose(seen[0], torch.tensor([float(frame_level(i)) for i in (20, 22, 24, 26)]), atol=3)
    assert torch.allclose(seen[1], torch.tensor([float(frame_level(i)) for i in (17, 21, 25, 29)]), atol=3)
    cfg.DATA.TARGET_FPS = 0.0  # every SAMPLING_RATE decoded frames, whatever the rate
    same = [levels(item["video"], (0, 2, 3)) for item in serve_all(build_dataset(cfg, "val"))]
    assert torch.allclose(same[0], same[1], atol=3)


def test_the_quarantine_reaches_the_workers_of_the_next_epoch(make_data, videos):
    cfg = make_data({"train": [(path, i % 2) for i, path in enumerate(videos)]})
    cfg.DATA_LOADER.NUM_WORKERS = 2
    loader = build_loader(cfg, "train")
    assert loader.persistent_workers is False, (
        "dataset.quarantined reaches the workers only because they are forked again every epoch "
        "(engine/quarantine.py): send it to persistent workers before enabling them")
    set_loader_epoch(loader, 0)
    assert sorted(i for batch in loader for i in batch["index"].tolist()) == [0, 1, 2, 3]
    loader.dataset.quarantined = frozenset({0, 2})  # as engine/train.py does between epochs
    set_loader_epoch(loader, 1)
    assert {i for batch in loader for i in batch["index"].tolist()} <= {1, 3}


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_items_do_not_depend_on_the_watchdog_or_the_probe_cache(backend, make_data, tmp_path):
    # Textured frames: a crop, flip or view in the wrong place shows.
    frames = np.random.default_rng(0).integers(0, 256, (NUM_FRAMES, 48, 64, 3), dtype=np.uint8)
    write_video(str(tmp_path / "textured.mp4"), frames)
    cfg = make_data({"train": [("textured.mp4", 0)], "test": [("textured.mp4", 0)]})
    cfg.DATA.DECODING_BACKEND = backend
    items = {}
    for timeout, cache in ((0, ""), (30, ""), (30, str(tmp_path / "probes.sqlite3")), (0, str(tmp_path / "probes.sqlite3"))):
        cfg.DATA.DECODE_TIMEOUT, cfg.DATA.PROBE_CACHE = timeout, cache
        train, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
        items[timeout, cache] = [train[(0, epoch)]["video"] for epoch in range(3)] + [test[0]["video"]]
    first, *others = items.values()
    assert len({item.float().sum().item() for item in first[:3]}) == 3  # epochs draw other crops
    for other in others:
        assert all(torch.equal(a, b) for a, b in zip(first, other))
