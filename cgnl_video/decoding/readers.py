"""Frames of a video file by index, from decord or PyAV behind one interface (NumPy, no torch):
both readers are :class:`~cgnl_video.decoding.video.OpenVideo`.

    with open_reader(path, backend="decord", short_side=320) as reader:
        frames = reader.get(indices)   # uint8, len(indices) x H x W x 3 (RGB)

Frame ``i`` is the ``i``-th displayed frame, for both backends: packets hidden by an edit
list are not frames, variable frame rates and lying AVI headers do not shift the indices,
rotated videos come back in their displayed orientation and size, the real track is read
beside a cover picture, and a resolution change mid-stream is scaled to the first size.
decord is used only where the :mod:`~cgnl_video.decoding.probe` finds nothing it mishandles
(MPEG-TS, AV1, GIF, tiny frames, timestamps out of order, edit lists, lying headers,
rotation); otherwise, or where decord fails to open or decode a file, the "decord" backend
decodes with PyAV. Frames of absurd sizes (over 2^26 pixels, aspect ratio over 100) are
refused at open.

Only the requested frames are decoded: decord's ``get_batch`` on the sorted unique
indices; PyAV seeks to the keyframe before the first one and decodes forward, stopping
after the last one (a read starting just after the previous one continues decoding from
there, so a video read in consecutive chunks is decoded once). Indices may be unsorted
and repeated; frames come back in their order.
Both backends return the same pixels (both convert with FFmpeg's swscale, bilinear).

Frames of videos whose short side exceeds ``short_side`` are scaled by the decoder to that
short side, aspect ratio kept, so full-resolution frames are never copied out.

Every failure to open or decode a file raises :class:`DecodeError` with the path and the reason.
"""

import abc
import bisect
import contextlib
import itertools
import os
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import av
import decord
import numpy as np

from cgnl_video.choices import DECODING_BACKENDS
from cgnl_video.decoding.errors import DecodeError, decode_errors
from cgnl_video.decoding.probe import Probe, display_ordered, probe, video_stream
from cgnl_video.decoding.probe_cache import ProbeCache, file_key
from cgnl_video.decoding.video import OpenVideo, Region, crop_region

BACKENDS = DECODING_BACKENDS


def scaled_size(width: int, height: int, short_side: Optional[int]) -> Tuple[int, int]:
    """``(width, height)`` with the short side reduced to ``short_side`` if it is larger."""
    short = min(width, height)
    if short_side is None or short <= short_side:
        return width, height
    return round(width * short_side / short), round(height * short_side / short)


class Reader(OpenVideo):
    """An open video whose :meth:`get` checks the indices and reads each frame once (``_read``)."""

    def get(self, indices: Sequence[int], region: Optional[Region] = None) -> np.ndarray:
        """Frames at ``indices`` (each in ``[0, num_frames)``): uint8 ``N x H x W x 3`` (their
        ``region`` only: :func:`~cgnl_video.decoding.video.crop_region`)."""
        frames, rows = self.read_rows(indices, region)
        return frames if rows is None else frames[rows]  # one copy: order, repeats, region

    def read_rows(self, indices: Sequence[int], region: Optional[Region] = None
                  ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """What :meth:`get` returns, before its one copy: decoded frames (``region`` cut, as a
        view) and the row of each of ``indices`` in them (None: they are the frames, in order).
        The watchdog's child sends those rows one by one instead of gathering them first."""
        wanted = np.asarray(indices, dtype=np.int64)
        if wanted.size == 0 or wanted.min() < 0 or wanted.max() >= self.num_frames:
            raise IndexError(f"{self.path}: frame indices must lie in [0, {self.num_frames}), got {list(indices)}")
        unique, inverse = np.unique(wanted, return_inverse=True)
        with decode_errors(self.path):
            frames, rows = self._read(unique.tolist())
        frames = crop_region(frames, region)
        if rows is None and np.array_equal(unique, wanted):
            return frames, None
        return frames, (inverse if rows is None else rows[inverse])

    @abc.abstractmethod
    def _read(self, indices: List[int]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The frames at sorted unique ``indices``: uint8 ``M x H x W x 3`` and, where they are
        not exactly those frames in order, the row of each (None: row ``i`` is ``indices[i]``)."""


class DecordReader(Reader):
    """decord's reader; where decord fails to decode (e.g. frames 8, 12, 16, 24, 48 or 72
    pixels wide: ``DECORDError`` "The size must exactly match"), the video is decoded by
    ``fallback()`` (a PyAV reader) from then on; ``fallback=None``: decord's error is raised."""

    backend = "decord"

    def __init__(self, path: str, short_side: Optional[int], threads: int, info: Probe,
                 fallback: Optional[Callable[[], Reader]]):
        self.path, self.fps, self._fallback = path, info.fps, fallback
        self.size = scaled_size(*info.native, short_side)
        width, height = self.size if self.size != info.native else (-1, -1)
        self._reader = decord.VideoReader(path, width=width, height=height, num_threads=threads)
        self.num_frames = len(self._reader)

    def _read(self, indices: List[int]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        if self.backend == "decord":
            try:
                return self._decord_read(indices)
            except decord.DECORDError:
                if self._fallback is None:  # check=False: decord as it is
                    raise
                self.close()
                self._reader, self.backend = self._fallback(), "pyav"
        return self._reader._read(indices)

    def _decord_read(self, indices: List[int]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        # decord 0.6.0 sometimes returns the frame before instead of the last frame when it
        # skips frames to reach it (dmlc/decord#195; about 1 in 4 on test.avi with one
        # thread); it has not once when the frame before is decoded too, so ask for both.
        last = self.num_frames - 1
        extra = indices[-1] == last > 0 and last - 1 not in indices[-2:-1]
        frames = self._reader.get_batch(indices[:-1] + [last - 1, last] if extra else indices).asnumpy()
        return frames, (np.r_[: len(indices) - 1, len(indices)] if extra else None)  # rows without the extra

    def close(self) -> None:
        if isinstance(self._reader, Reader):
            self._reader.close()
        self._reader = None


class PyAVReader(Reader):
    """PyAV reader: frame ``i`` is the ``i``-th frame in display order.

    Opening lists the displayed timestamps (the packets' not hidden by an edit list, sorted).
    Reading seeks to the timestamp of a frame and locates only the keyframe reached by
    the seek in that list; the frames decoded after it are counted (decoders output frames
    in display order and drop hidden ones, while some containers, e.g. AVI with packed
    B-frames, attach reordered timestamps to them). The decoder stays where a read stopped:
    a read that starts at most ``CONTINUE_WITHIN`` frames after it decodes on from there
    instead of seeking back to a keyframe. Where the timestamps do not give the display
    order (equal ones, jumps back: :func:`~cgnl_video.decoding.probe.display_ordered`),
    frames are counted from the start of the file instead.
    """

    # Frames worth decoding forward rather than seeking (a seek re-decodes up to a GOP).
    CONTINUE_WITHIN = 16

    backend = "pyav"

    def __init__(self, path: str, short_side: Optional[int], container, info: Probe):
        self.path, self.fps, self._container = path, info.fps, container
        self._stream = video_stream(container, path)
        self._rotation = info.rotation
        self._decoded_size = scaled_size(*info.native, short_side)
        width, height = self._decoded_size
        self.size = (height, width) if info.rotation % 180 else (width, height)
        container.seek(0, stream=self._stream, backward=True)
        packets = [(p.pts, p.is_keyframe) for p in container.demux(self._stream) if p.pts is not None and not p.is_discard]
        self._timestamps = sorted(pts for pts, _ in packets)
        # Timestamps that do not give the display order: frames are counted from the start.
        self._from_start = not display_ordered(packets)
        self.num_frames = len(self._timestamps)
        self._ahead: Optional[Tuple[int, Iterator[Tuple[int, av.VideoFrame]]]] = None  # (next index, frames)

    def _index(self, pts: int) -> int:
        """Index of the displayed frame nearest to ``pts``."""
        at = bisect.bisect_left(self._timestamps, pts)
        if at == self.num_frames or (at > 0 and pts - self._timestamps[at - 1] < self._timestamps[at] - pts):
            return at - 1
        return at

    def _frames_from(self, first: int) -> Iterator[Tuple[int, av.VideoFrame]]:
        """(index, frame) pairs in display order, from at or before ``first``: where the last
        read stopped if that is at most ``CONTINUE_WITHIN`` frames before, else from a seek."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and 0 <= first - ahead[0] <= self.CONTINUE_WITHIN:
            return ahead[1]
        return self._seek(first)

    def _seek(self, first: int) -> Iterator[Tuple[int, av.VideoFrame]]:
        """(index, frame) pairs in display order, from a keyframe at or before ``first``.

        Containers index keyframes by decode time, so a seek can land on a keyframe shown
        after ``first`` (MPEG-TS: GOPs later, or past the last keyframe); then it seeks again
        further back (doubling the distance), at last to before the start.
        """
        back, rewound = 0, self._from_start
        while True:
            target = max(first - back, 0)
            # MPEG-TS seeks to its first timestamp land GOPs later; seeks before the start rewind.
            position = min(self._timestamps[0], 0) - 1 if rewound else self._timestamps[target]
            self._seek_container(position, rewound)
            frames = self._container.decode(self._stream)
            head = next(frames, None)
            if (head is None or head.pts is None) and rewound:
                raise DecodeError(self.path, f"no timestamped frame decoded from frame {target} on")
            # An MPEG-TS seek near the end can land past the last keyframe: nothing decodes.
            start = self.num_frames if head is None or head.pts is None else self._index(head.pts)
            start = 0 if self._from_start else start
            if start <= first or rewound:
                break
            rewound = target == 0
            back = max(2 * back, 1)
        # Not a generator of this method: that would hold the reader, which holds it (``_ahead``),
        # and leave PyAV's decoder to the garbage collector, maybe in a forked loader worker, where
        # freeing its scaler hangs on the parent's threads.
        return itertools.chain([(start, head)], zip(itertools.count(start + 1), frames))

    def _seek_container(self, position: int, rewinding: bool) -> None:
        """Seeks to the keyframe at or before ``position``. AVI seeks by decode time (its H.264
        packets show one tick later) and refuses one before its start (EPERM): a rewind then
        seeks to time 0, its first frame."""
        try:
            self._container.seek(position, stream=self._stream, backward=True)
        except av.error.PermissionError:
            if not rewinding:
                raise
            self._container.seek(0, stream=self._stream, backward=True)

    def _to_array(self, frame: av.VideoFrame) -> np.ndarray:
        width, height = self._decoded_size
        array = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
        return np.rot90(array, self._rotation // 90) if self._rotation else array

    def _read(self, indices: List[int]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        wanted, found = set(indices), {}
        frames = self._frames_from(indices[0])
        for index, frame in frames:
            if index in wanted:
                found[index] = self._to_array(frame)
            if index >= indices[-1]:
                self._ahead = (index + 1, frames)
                break
        missing = sorted(wanted - found.keys())
        if missing:
            raise DecodeError(self.path, f"frames {missing[:5]}{'...' if len(missing) > 5 else ''} not decoded")
        return np.stack([found[i] for i in indices]), None

    def close(self) -> None:
        self._ahead = None  # the decoder's frames go before their container
        self._container.close()


def _container(path: str, threads: int) -> av.container.InputContainer:
    """``path`` opened by PyAV, its video stream set to decode with ``threads`` threads."""
    container = av.open(path)
    try:
        video_stream(container, path).codec_context.thread_count = threads
    except BaseException:
        container.close()
        raise
    return container


def _decord(path: str, short_side: Optional[int], threads: int, info: Probe) -> Optional[DecordReader]:
    """decord's reader of ``path``, or None where decord cannot open it (e.g. AV1, GIF)."""
    fallback = lambda: PyAVReader(path, short_side, _container(path, threads), info)  # noqa: E731
    try:
        return DecordReader(path, short_side, threads, info, fallback)
    except (decord.DECORDError, RuntimeError):  # RuntimeError: files decord cannot open
        return None


def _probed(path: str, threads: int, cache: Optional[ProbeCache]) -> Tuple[Probe, Optional[av.container.InputContainer]]:
    """``path``'s probe, from ``cache`` where it holds the file as it is now (no container is
    opened then), else probed from a container left open for the caller (and cached)."""
    key = None
    if cache is not None:
        with contextlib.suppress(OSError):  # a file that cannot be stat'ed fails at its open
            key = file_key(path)
        info = cache.get(key) if key is not None else None
        if info is not None:
            return info, None
    container = _container(path, threads)
    try:
        info = probe(container, path)
    except BaseException:
        container.close()
        raise
    if key is not None:
        cache.put(key, info)
    return info, container


def _open(path: str, backend: str, short_side: Optional[int], threads: int, check: bool,
          cache: Optional[ProbeCache]) -> Reader:
    info, container = _probed(path, threads, cache)
    try:
        if backend == "decord" and (not info.distrust or not check):
            if container is not None:
                container.close()
                container = None
            reader = _decord(path, short_side, threads, info) if check else \
                DecordReader(path, short_side, threads, info, None)
            if reader is not None and (reader.num_frames == info.num_frames or not check):
                return reader
            if reader is not None:
                reader.close()
        if container is None:
            container = _container(path, threads)
        return PyAVReader(path, short_side, container, info)
    except BaseException:
        if container is not None:
            container.close()
        raise


def open_reader(path: str, backend: str = "decord", short_side: Optional[int] = None, threads: int = 1,
                check: bool = True, cache: Optional[ProbeCache] = None) -> Reader:
    """Opens ``path`` with ``backend`` ("decord" or "pyav"); use as a context manager.

    ``short_side``: frames of a video whose short side is larger come back scaled to it.
    ``threads``: decoding threads. ``check=False`` hands every file to decord as it is
    (for tests of what the probe protects from). Raises :class:`DecodeError` if the file
    is missing, unreadable or has no frames. ``cache``: probe verdicts kept between opens
    (:mod:`~cgnl_video.decoding.probe_cache`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoding backend {backend!r}; expected one of {BACKENDS}")
    if not os.path.exists(path) or os.path.isdir(path):
        raise DecodeError(path, "file not found")
    with decode_errors(path):
        reader = _open(path, backend, short_side, threads, check, cache)
    if reader.num_frames < 1:
        reader.close()
        raise DecodeError(path, "no frames")
    return reader
