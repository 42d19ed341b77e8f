"""A container's sanity probe: what a viewer displays, and whether decord can be trusted with it.

decord 0.6.0 indexes the packets of a file, trusts its header and ignores edit lists, so on
some files it hangs (stream-copy cuts, dmlc/decord#373), aborts the process (an AVI header
claiming 2^31-1 frames: ``std::bad_alloc``), returns other frames than asked, or squashes
rotated frames. The probe compares, from the index (MP4, AVI) or the packets (others),
without decoding more than the first frame:

- packets hidden by an edit list (flagged discard by FFmpeg),
- the header's frame count and ``duration x fps`` against the displayed packet count,
- the rotation of the display matrix,
- timestamps that do not give the display order (equal, or jumping back; MP4's from its
  packets, since its index holds decode times only; AVI has none),
- what decord 0.6.0 cannot decode right (MPEG-TS, AV1, GIF, frames under 32 pixels, H.264 or
  B-frames in AVI);

refuses absurd frame sizes (:func:`check_size`),

and :attr:`Probe.distrust` says why decord must not see the file ("" if it may).
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import av

from cgnl_video.decoding.errors import DecodeError

# Frames refused (see check_size): 8K is 33 Mpixels; the widest cinema format is 2.76:1.
MAX_PIXELS, MAX_ASPECT = 1 << 26, 100
# decord 0.6.0 decodes MPEG-TS with colour errors (up to 51 levels on H.264), cannot open
# AV1 or GIF, and fails on frames smaller than its tile ("The size must exactly match"). In
# AVI (no presentation times; FFmpeg seeks by decode time) its seeks return other frames on
# H.264 (frame 39 of 40 asked, an early one given) and, with B-frames, on MPEG-4 part 2
# (the last frame, about 1 in 3 opens on mmaction2's test.avi): the rule of _unsupported.
_DECORD_FORMATS_WRONG = ("mpegts", "gif")
_DECORD_CODECS_WRONG = ("av1", "libdav1d", "libaom-av1", "gif")  # FFmpeg decoder names
_DECORD_MIN_SIDE = 32

# Formats whose index lists every packet (Matroska, for one, indexes keyframes only).
_FULLY_INDEXED = ("mov", "avi")


@dataclass(frozen=True)
class Probe:
    """``num_frames`` displayed frames at ``fps``, coded ``native`` (width, height), shown
    rotated by ``rotation`` degrees counterclockwise (a multiple of 90); ``distrust``: why
    decord must not decode the file, or ""."""

    num_frames: int
    fps: float
    native: Tuple[int, int]
    rotation: int
    distrust: str


def video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    """The video stream decord picks (FFmpeg's ``av_find_best_stream``), never a cover picture
    (an ``attached_pic`` stream, one frame beside the real track); DecodeError if there is none."""
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        raise DecodeError(path, "no video stream")
    best = container.streams.best("video")
    return best if best in streams else streams[0]


def check_size(native: Tuple[int, int], path: str) -> None:
    """Refuses frames whose aspect ratio exceeds ``MAX_ASPECT`` or that hold more than
    ``MAX_PIXELS`` (resized to a clip's short side they would take gigabytes)."""
    width, height = native
    if width * height > MAX_PIXELS:
        raise DecodeError(path, f"frames of {width}x{height} exceed {MAX_PIXELS} pixels")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise DecodeError(path, f"frames of {width}x{height}: aspect ratio over {MAX_ASPECT}")


def display_ordered(packets: Sequence[Tuple[int, bool]]) -> bool:
    """Whether the (pts, keyframe) ``packets`` in decode order have timestamps that sort them
    into display order: all distinct, and each keyframe shown after every frame decoded
    before the keyframe preceding it (B-frames reorder within a GOP, never across two)."""
    stamps = [pts for pts, _ in packets]
    if len(set(stamps)) < len(stamps):
        return False
    before_previous, before_this = float("-inf"), float("-inf")
    for pts, keyframe in packets:
        if keyframe:
            if pts <= before_previous:
                return False
            before_previous = before_this
        before_this = max(before_this, pts)
    return True


def _shown(container: av.container.InputContainer, stream) -> List[Tuple[int, bool]]:
    """(pts, keyframe) of the shown packets of ``stream`` in decode order (rewinds after)."""
    packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None and not p.is_discard]
    container.seek(0, stream=stream, backward=True)
    return packets


def _packet_counts(container: av.container.InputContainer, stream) -> Tuple[int, int, bool]:
    """(displayed, hidden) packets, from the index where it lists every packet, and whether
    their timestamps give the display order (see :func:`display_ordered`)."""
    fmt = container.format.name.split(",")[0]
    if fmt in _FULLY_INDEXED and len(stream.index_entries):
        flags = [entry.is_discard for entry in stream.index_entries if entry.size]
        # AVI has no presentation times (FFmpeg's follow the decode order); MP4's composition
        # offsets are not in the index: read from the packets (equal ones mislead decord).
        ordered = fmt == "avi" or display_ordered(_shown(container, stream))
    else:
        packets = [p for p in container.demux(stream) if p.pts is not None]
        flags = [p.is_discard for p in packets]
        ordered = display_ordered([(p.pts, p.is_keyframe) for p in packets if not p.is_discard])
        container.seek(0, stream=stream, backward=True)
    hidden = sum(flags)
    return len(flags) - hidden, hidden, ordered


def _rotation(container: av.container.InputContainer, stream, path: str) -> int:
    """Rotation of the first frame (decoding it also proves the stream decodes)."""
    frame = next(container.decode(stream), None)
    if frame is None:
        raise DecodeError(path, "no frames")
    return round(frame.rotation / 90) * 90 % 360


def _unsupported(container: av.container.InputContainer, stream) -> str:
    """Why decord 0.6.0 decodes ``stream`` wrong or not at all, or ""."""
    fmt, codec = container.format.name.split(",")[0], stream.codec_context
    if fmt in _DECORD_FORMATS_WRONG:
        return f"container {fmt}"
    if codec.name in _DECORD_CODECS_WRONG:
        return f"codec {codec.name}"
    if fmt == "avi" and (codec.name == "h264" or codec.has_b_frames):
        return f"{codec.name} with{'' if codec.has_b_frames else 'out'} B-frames in AVI"
    if min(codec.width, codec.height) < _DECORD_MIN_SIDE:
        return f"frames of {codec.width}x{codec.height}"
    return ""


def _distrust(count: int, hidden: int, header: int, duration_frames: float, rotation: int) -> str:
    if hidden:
        return f"{hidden} packets hidden by an edit list"
    if header and header != count:
        return f"the header claims {header} frames, the index holds {count}"
    if duration_frames and abs(duration_frames - count) > max(2.0, 0.02 * count):
        return f"duration x fps gives {duration_frames:.0f} frames, the index holds {count}"
    if rotation:
        return f"rotated by {rotation} degrees"
    return ""


def probe(container: av.container.InputContainer, path: str) -> Probe:
    """Probes the open ``container`` of ``path`` (leaves it positioned anywhere)."""
    stream = video_stream(container, path)
    fps = stream.average_rate or stream.guessed_rate
    if not fps:
        raise DecodeError(path, "unknown frame rate")
    count, hidden, ordered = _packet_counts(container, stream)
    if count < 1:
        raise DecodeError(path, "no frames")
    duration_frames = float(stream.duration * stream.time_base * fps) if stream.duration else 0.0
    rotation = _rotation(container, stream, path)
    codec = stream.codec_context
    check_size((codec.width, codec.height), path)
    distrust = "" if ordered else "timestamps out of display order"
    distrust = distrust or _unsupported(container, stream) or _distrust(count, hidden, stream.frames, duration_frames, rotation)
    return Probe(count, float(fps), (codec.width, codec.height), rotation, distrust)
