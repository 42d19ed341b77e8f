"""Probe verdicts kept between opens (``DATA.PROBE_CACHE``): a file is probed once, a changed
file again, and a cache that cannot be used changes nothing but speed."""

import os
import pickle
import sqlite3

import numpy as np
import pytest

from cgnl_video.datasets.decoders import VideoDecoder
from cgnl_video.datasets.video_io import write_video
from cgnl_video.decoding import readers
from cgnl_video.decoding.probe_cache import ProbeCache, file_key


@pytest.fixture
def probes(monkeypatch):
    """The paths the probe runs on in this process (the real probe, counted)."""
    seen = []

    def counted(container, path):
        seen.append(path)
        return probe(container, path)

    probe = readers.probe
    monkeypatch.setattr(readers, "probe", counted)
    return seen


def grey_video(path, num_frames, level=80):
    write_video(str(path), np.full((num_frames, 48, 64, 3), level, np.uint8))
    return str(path)


def test_a_file_is_probed_once_and_read_the_same(tmp_path, probes):
    path = grey_video(tmp_path / "a.mp4", 12)
    cache = ProbeCache.at(str(tmp_path / "probes.sqlite3"))
    uncached = readers.open_reader(path)
    first, second = readers.open_reader(path, cache=cache), readers.open_reader(path, cache=cache)
    assert probes == [path, path]  # the uncached open and the first cached one; not the second
    for video in (first, second):
        assert (video.num_frames, video.size, video.fps, video.backend) == \
               (uncached.num_frames, uncached.size, uncached.fps, uncached.backend)
        assert np.array_equal(video.get([0, 11, 5]), uncached.get([0, 11, 5]))


def test_a_rewritten_file_is_probed_again(tmp_path, probes):
    path = grey_video(tmp_path / "a.mp4", 12)
    cache = ProbeCache.at(str(tmp_path / "probes.sqlite3"))
    key = file_key(path)
    assert readers.open_reader(path, cache=cache).num_frames == 12
    grey_video(tmp_path / "b.mp4", 20, level=160)
    os.replace(tmp_path / "b.mp4", path)  # another file at the same path
    assert file_key(path) != key
    with readers.open_reader(path, cache=cache) as video:
        assert video.num_frames == 20 and int(video.get([19]).mean()) in range(150, 171)
    assert probes == [path, path]


def test_the_watchdogs_child_fills_the_same_cache(tmp_path):
    path = grey_video(tmp_path / "a.mp4", 12)
    file = str(tmp_path / "probes.sqlite3")
    with VideoDecoder("decord", timeout=30, probe_cache=file).open(path) as video:
        assert video.num_frames == 12
    with sqlite3.connect(file) as db:
        [(key,)] = db.execute("SELECT key FROM probes").fetchall()
    assert key == file_key(path)


@pytest.mark.parametrize("where", ["damaged file", "folder is a file", "folder cannot be made"])
def test_an_unusable_cache_changes_nothing_but_speed(where, tmp_path, probes):
    path = grey_video(tmp_path / "a.mp4", 12)
    if where == "damaged file":
        file = tmp_path / "probes.sqlite3"
        file.write_bytes(b"not a database " * 100)
    elif where == "folder is a file":
        (tmp_path / "plain").write_text("x")
        file = tmp_path / "plain" / "probes.sqlite3"
    else:  # even root cannot make a folder there
        file = "/proc/self/cgnl_video/probes.sqlite3"
    cache = ProbeCache.at(str(file))
    for _ in range(2):
        with readers.open_reader(path, cache=cache) as video:
            assert video.num_frames == 12 and video.get([3]).shape == (1, 48, 64, 3)
    assert probes == [path, path]  # probed at every open, as without a cache
    if where == "damaged file":
        assert file.read_bytes() == b"not a database " * 100  # left as it was


def test_the_cache_pickles_as_its_path_and_each_fork_has_its_own(tmp_path):
    cache = ProbeCache.at(str(tmp_path / "probes.sqlite3"))
    assert pickle.loads(pickle.dumps(cache)) is cache
    assert ProbeCache.at(str(tmp_path / "." / "probes.sqlite3")) is cache
    pid = os.fork()
    if pid == 0:  # a loader worker: its own object (an SQLite connection must not cross a fork)
        os._exit(0 if ProbeCache.at(cache.path) is not cache else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
