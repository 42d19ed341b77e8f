"""Makers of the faulty-but-real video files users hit (issue 8), for any test to reuse.

Every maker writes a real file with PyAV (plus byte patches of its header) and returns a
:class:`Faulty`: the path and ``expected``, the frames a viewer displays (uint8
``T x H x W x 3``), so that a test can compare any decoder's frame ``i`` with them.

Frames are identifiable: frame ``i`` of a synthetic video is flat grey :func:`level` ``(i)``
with a black band on its left third (so that a rotation shows).
"""

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, List, Optional

import av
import numpy as np

WIDTH, HEIGHT = 64, 48


@dataclass
class Faulty:
    """A faulty file and the frames it displays (uint8 ``T x H x W x 3``)."""

    path: str
    expected: np.ndarray


def level(index: int) -> int:
    """Grey level of synthetic frame ``index`` (distinct for ``index < 56``)."""
    return 16 + 4 * index


def synthetic_frames(count: int) -> np.ndarray:
    """Frames ``0 .. count-1``: uint8 ``count x HEIGHT x WIDTH x 3``."""
    frames = np.empty((count, HEIGHT, WIDTH, 3), np.uint8)
    for i in range(count):
        frames[i] = level(i)
        frames[i, :, : WIDTH // 3] = 0
    return frames


def write_frames(path: str, frames: np.ndarray, pts: Optional[Iterable[int]] = None, fmt: str = "mp4",
                 codec: str = "libx264", gop: int = 10, options: Optional[dict] = None) -> None:
    """Writes ``frames`` at 25 fps (time base 1/25; ``pts`` gives each frame's tick, default ``i``;
    ``options``: more encoder options)."""
    with av.open(path, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25, options={"g": str(gop), "threads": "1", **(options or {})})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        for frame, tick in zip(frames, pts if pts is not None else range(len(frames))):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts, picture.time_base = tick, Fraction(1, 25)
            container.mux(stream.encode(picture))
        container.mux(stream.encode())


def sequential_frames(path: str, stream: int = 0) -> np.ndarray:
    """Every frame of stream ``stream`` (a video stream) of a well-formed ``path``, decoded in
    order by PyAV: uint8 ``T x H x W x 3``."""
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams[stream])])


def stream_copy_cut(src: str, dst: str, start: int) -> None:
    """Cuts ``src`` at displayed frame ``start`` without re-encoding, as ``ffmpeg -ss -c copy`` does.

    The packets from the keyframe before ``start`` on are kept, shifted so that frame
    ``start`` is at time 0; the mp4 muxer hides the earlier ones with an edit list.
    """
    with av.open(src) as source:
        packets = [p for p in source.demux(video=0) if p.size]
        stream = source.streams.video[0]
        display = sorted(p.pts for p in packets)
        cut_pts = display[start]
        keyframe = max(i for i, p in enumerate(packets) if p.is_keyframe and p.pts <= cut_pts)
        with av.open(dst, "w", format="mp4") as out:
            out_stream = out.add_stream_from_template(stream)
            for packet in packets[keyframe:]:
                packet.pts, packet.dts = packet.pts - cut_pts, packet.dts - cut_pts
                packet.stream = out_stream
                out.mux(packet)


def synthetic_cut(folder, count: int = 60, start: int = 34) -> Faulty:
    """A stream-copy cut at frame ``start`` of a ``count``-frame synthetic mp4 (keyframes every 25)."""
    frames = synthetic_frames(count)
    src, dst = f"{folder}/uncut.mp4", f"{folder}/cut.mp4"
    write_frames(src, frames, gop=25)
    stream_copy_cut(src, dst, start)
    return Faulty(dst, sequential_frames(src)[start:])


def real_cut(folder, source: str, start: int = 234) -> Faulty:
    """A stream-copy cut of the real ``source`` (e.g. ``test.mp4`` at frame 234)."""
    dst = f"{folder}/real_cut.mp4"
    stream_copy_cut(source, dst, start)
    return Faulty(dst, sequential_frames(source)[start:])


def vfr(folder) -> Faulty:
    """Two 25 fps runs of 25 frames with a 2 s gap between them (variable frame rate mp4)."""
    frames = synthetic_frames(50)
    path = f"{folder}/vfr.mp4"
    write_frames(path, frames, pts=[i if i < 25 else i + 50 for i in range(50)])
    return Faulty(path, sequential_frames(path))


def _patch_u32(data: bytearray, tag: bytes, offset: int, value: int) -> None:
    """Sets the little-endian uint32 ``offset`` bytes into every ``tag`` chunk's data."""
    at = data.find(tag)
    assert at >= 0, f"no {tag!r} chunk"
    while at >= 0:
        struct.pack_into("<I", data, at + 8 + offset, value)
        at = data.find(tag, at + 1)


def avi(folder, codec: str = "libx264", b_frames: bool = True, count: int = 40) -> Faulty:
    """An AVI as cameras and encoders write it: ``codec`` with or without B-frames. AVI stores
    no presentation times: FFmpeg gives H.264 packets pts = dts + 1 (one frame of delay) and
    seeks by dts. decord 0.6.0 returns other frames on seeks into such files with B-frames."""
    path = f"{folder}/{codec}_{'b' if b_frames else 'no_b'}.avi"
    write_frames(path, synthetic_frames(count), fmt="avi", codec=codec, options={"bf": "3" if b_frames else "0"})
    return Faulty(path, sequential_frames(path))


def avi_with_count(folder, claimed: int, count: int = 50, name: str = "") -> Faulty:
    """An MPEG-4 AVI of ``count`` frames whose headers claim ``claimed`` frames.

    Patches ``avih.dwTotalFrames``, ``strh.dwLength`` and OpenDML ``dmlh.dwTotalFrames``.
    """
    frames = synthetic_frames(count)
    path = f"{folder}/{name or f'claims_{claimed}'}.avi"
    write_frames(path, frames, fmt="avi", codec="mpeg4")
    expected = sequential_frames(path)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    _patch_u32(data, b"avih", 16, claimed)
    _patch_u32(data, b"strh", 32, claimed)
    if data.find(b"dmlh") >= 0:
        _patch_u32(data, b"dmlh", 0, claimed)
    with open(path, "wb") as f:
        f.write(data)
    return Faulty(path, expected)


def rotated(folder) -> Faulty:
    """An mp4 whose display matrix rotates its 64 x 48 frames by 90 degrees clockwise (shown 48 x 64)."""
    frames = synthetic_frames(20)
    path = f"{folder}/rotated.mp4"
    write_frames(path, frames)
    shown = np.rot90(sequential_frames(path), k=-1, axes=(1, 2))
    with open(path, "rb") as f:
        data = bytearray(f.read())
    at = data.find(b"tkhd")
    assert data[at + 4] == 0, "tkhd version 1 not handled"
    # tkhd v0: 4 version/flags, 20 times/ids, 8 reserved, 8 layer..., then the 3x3 matrix.
    matrix = [0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000]
    struct.pack_into(">9i", data, at + 4 + 40, *matrix)
    with open(path, "wb") as f:
        f.write(data)
    return Faulty(path, np.ascontiguousarray(shown))


def sized_frames(count: int, width: int, height: int) -> np.ndarray:
    """:func:`synthetic_frames` of another size (the band at least one pixel wide)."""
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i] = level(i)
        frames[i, :, : max(1, width // 3)] = 0
    return frames


def with_cover(folder, fmt: str = "mp4", ext: str = "mp4", count: int = 40) -> Faulty:
    """A ``count``-frame H.264 track after a 1-frame MJPEG cover picture (``attached_pic``
    stream 0), as downloaded mp4 / mkv files have."""
    path = f"{folder}/cover.{ext}"
    with av.open(path, "w", format=fmt) as container:
        art = container.add_stream("mjpeg", rate=1)
        art.width, art.height, art.pix_fmt = 32, 32, "yuvj420p"
        art.disposition = av.stream.Disposition.attached_pic
        stream = container.add_stream("libx264", rate=25, options={"g": "10", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        picture = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24")
        container.mux(art.encode(picture.reformat(format="yuvj420p")) + art.encode())
        for frame in synthetic_frames(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    with av.open(path) as container:  # the mp4 muxer stores the cover after the track
        track = next(s.index for s in container.streams.video if s.codec_context.name == "h264")
    return Faulty(path, sequential_frames(path, stream=track))


def mpegts(folder, count: int = 60) -> Faulty:
    """H.264 in MPEG-TS, as cameras and recorders write (its first timestamp is not 0)."""
    path = f"{folder}/camera.ts"
    write_frames(path, synthetic_frames(count), fmt="mpegts")
    return Faulty(path, sequential_frames(path))


def av1(folder, count: int = 30) -> Optional[Faulty]:
    """An AV1 mp4 (SVT-AV1 or libaom), or None if this PyAV has no AV1 encoder."""
    codec = next((c for c in ("libsvtav1", "libaom-av1") if c in av.codecs_available), None)
    if codec is None:
        return None
    path = f"{folder}/av1.mp4"
    write_frames(path, synthetic_frames(count), codec=codec)
    return Faulty(path, sequential_frames(path))


def gif(folder, count: int = 20) -> Faulty:
    """An animated GIF at 10 fps."""
    path = f"{folder}/anim.gif"
    with av.open(path, "w", format="gif") as container:
        stream = container.add_stream("gif", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "rgb8"
        for frame in synthetic_frames(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return Faulty(path, sequential_frames(path))


def sized(folder, width: int, height: int, count: int = 20) -> Faulty:
    """An H.264 mp4 of ``width x height`` frames (yuv444p where a side is odd)."""
    path = f"{folder}/size_{width}x{height}.mp4"
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": "10", "threads": "1"})
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv444p" if width % 2 or height % 2 else "yuv420p"
        for frame in sized_frames(count, width, height):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return Faulty(path, sequential_frames(path))


def with_timestamps(folder, name: str, ticks: List[int], fmt: str = "matroska", ext: str = "mkv") -> Faulty:
    """A Matroska (or ``fmt``) H.264 file (no B-frames, keyframes every 10) whose ``i``-th frame
    carries the timestamp ``ticks[i]`` (1/25 s): equal or decreasing ones make the display order
    the decode order, which a sequential decode gives."""
    path = f"{folder}/{name}.{ext}"
    frames = synthetic_frames(len(ticks))
    with av.open(path, "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=25, options={"g": "10", "threads": "1", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        packets = []
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts, picture.time_base = i, Fraction(1, 25)
            packets += stream.encode(picture)
        packets += stream.encode()
        for i, (packet, tick) in enumerate(zip(packets, ticks)):
            packet.pts, packet.dts = tick, i - len(ticks)  # decode times must only grow
            container.mux(packet)
    return Faulty(path, sequential_frames(path))


def _mux_into(container, stream, packets) -> None:
    for packet in packets:
        packet.stream, packet.time_base = stream, Fraction(1, 25)
        container.mux(packet)


def resolution_change(folder, fmt: str = "mpegts", ext: str = "ts", count: int = 40) -> Faulty:
    """One H.264 stream of 64 x 48 frames, then from frame ``count // 2`` on 96 x 64 ones (a
    second encoder's packets muxed into the same stream, as a broadcast recording has);
    ``expected``: every frame scaled to the first size."""
    path = f"{folder}/resized.{ext}"
    half = count // 2
    with av.open(path, "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=25, options={"g": "10", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for frame in synthetic_frames(half):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
        second = av.CodecContext.create("libx264", "w")
        second.width, second.height, second.pix_fmt = 96, 64, "yuv420p"
        second.time_base, second.framerate, second.options = Fraction(1, 25), 25, {"g": "10", "threads": "1"}
        for i, frame in enumerate(sized_frames(count, 96, 64)[half:]):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            picture.pts, picture.time_base = half + i, Fraction(1, 25)
            _mux_into(container, stream, second.encode(picture))
        _mux_into(container, stream, second.encode(None))
    with av.open(path) as container:
        expected = [f.to_ndarray(format="rgb24", width=WIDTH, height=HEIGHT, interpolation="BILINEAR")
                    for f in container.decode(video=0)]
    return Faulty(path, np.stack(expected))


def all_faulty(folder) -> List[Faulty]:
    """One of each synthetic faulty file, written under ``folder``."""
    return [
        synthetic_cut(folder),
        vfr(folder),
        avi_with_count(folder, 2**31 - 1, name="huge_count"),
        avi_with_count(folder, 80, name="over_count"),
        avi_with_count(folder, 20, name="under_count"),
        rotated(folder),
    ]
