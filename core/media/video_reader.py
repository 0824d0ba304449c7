"""Sampling one video stream's frames with PyAV: seeking, decoding and scaling against a deadline.

:class:`VideoReader` opens an MP4/MOV or WebM/Matroska container, picks its video stream and
finds one frame at (or just after) each sampled time: by seeking to the keyframe before it where
that is cheaper than decoding on, or, with no duration to aim at, by decoding from the start and
thinning what it keeps. The wall-clock deadline is checked between packets and FFmpeg's own reads
are interrupted past it, so a hostile or huge file costs a bounded time; the frames found by then
are kept.

It is separate from :mod:`core.media.video`, which decides what an attachment is and decodes animations
and stills, because this part is all about FFmpeg's behaviour (demuxers, keyframe indexes, codec
contexts, packet damage) and is read and changed on its own. The frame rules animations share
(:data:`FRAME_MAX_SIDE`, :func:`fit`, :func:`check_pixels`, :func:`too_long`) live here so that
:mod:`core.media.video` can import them without an import cycle.
"""
from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.codec.context import CodecContext
from av.container import InputContainer
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from core.errors import CorruptVideoError, VideoTimeoutError, VideoTooLargeError, VideoTooLongError
from core.media.clips import DecodedMedia, VideoLimits
from core.media.images import to_rgb
from core.media.kinds import sample_times

__all__ = ["FRAME_MAX_SIDE", "VideoReader", "check_pixels", "fit", "too_long"]
# The records keep the logger they had before this module was split out of core.media.video, so log
# levels and filters set for core.media.video still apply to them.
log = logging.getLogger("core.media.video")

# Frames are kept at most this large on their longer side (720p): plenty for CLIP (224), BLIP
# (384) and colours (96), and for the stored picture of an added video, at a bounded memory cost.
FRAME_MAX_SIDE = 1280
_DEMUXERS = {"mp4": "mov", "webm": "matroska"}  # only these FFmpeg demuxers ever see user bytes
_ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}  # FFmpeg's own VP8/VP9 decoders drop WebM's alpha
_MAX_BAD_PACKETS = 64
_EPSILON = 1e-3


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} second{'' if round(seconds) == 1 else 's'}"
    if seconds < 7200:
        return f"{seconds / 60:.3g} minutes"
    return f"{seconds / 3600:.3g} hours"


def too_long(noun: str, duration: float, limit: float) -> VideoTooLongError:
    """The error refusing a ``noun`` ("video", "animation") of ``duration`` seconds over ``limit``."""
    return VideoTooLongError(f"The {noun} is {_span(duration)} long; the limit is {_span(limit)}. "
                             "Send a shorter one.")


def check_pixels(width: int, height: int, max_pixels: int, noun: str) -> None:
    """Raise :class:`VideoTooLargeError` when a ``width`` x ``height`` ``noun`` is over ``max_pixels``."""
    if width * height > max_pixels:
        raise VideoTooLargeError(f"The {noun} is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
                                 f"the limit is {max_pixels / 1e6:.3g} megapixels.")


def fit(width: int, height: int) -> tuple[int, int]:
    """A frame's size scaled down (never up) to at most :data:`FRAME_MAX_SIDE` on its longer side."""
    scale = min(1.0, FRAME_MAX_SIDE / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _thin(items: list[tuple[float, Image.Image]], count: int) -> list[tuple[float, Image.Image]]:
    """At most ``count`` of ``items``, spread evenly over them, first and last included."""
    if len(items) <= count:
        return items
    picks = sorted({round(i * (len(items) - 1) / max(1, count - 1)) for i in range(count)})
    return [items[i] for i in picks]


class _OutOfTime(Exception):
    """The decode budget ran out."""


@dataclass
class VideoReader:
    """One video's container, decoder and progress while its frames are sampled."""

    data: bytes
    container: str
    limits: VideoLimits
    max_pixels: int
    deadline: float
    clock: Callable[[], float]
    decoded: int = 0
    bad_packets: int = 0
    taken: list[tuple[float, Image.Image]] = field(default_factory=list)

    def read(self) -> DecodedMedia:
        """The sampled frames. Raises :class:`core.errors.VideoError` subclasses: too large or too
        long, corrupt, or no frame found in time."""
        # FFmpeg's reads are interrupted past the budget too (a demuxer stuck on hostile bytes).
        budget = max(0.05, self.deadline - self.clock())
        try:
            box = av.open(io.BytesIO(self.data), "r", format=_DEMUXERS[self.container],
                          timeout=(budget, budget), metadata_errors="ignore")
        except av.ExitError:
            raise VideoTimeoutError(VideoTimeoutError.USER_MESSAGE) from None
        except (av.FFmpegError, ValueError, IndexError, OSError, MemoryError) as exc:
            raise CorruptVideoError(CorruptVideoError.USER_MESSAGE) from exc
        with box:
            return self._sample(box)

    def _sample(self, box: InputContainer) -> DecodedMedia:
        stream = next((s for s in box.streams.video if s.codec_context is not None), None)
        if stream is None:
            raise CorruptVideoError("There is no video in that file I can read.")
        check_pixels(stream.codec_context.width, stream.codec_context.height, self.max_pixels, "video")
        duration = _duration(box, stream)
        if duration is not None and duration > self.limits.max_seconds:
            raise too_long("video", duration, self.limits.max_seconds)
        time_base = stream.time_base
        start = float(stream.start_time * time_base) if stream.start_time is not None and time_base else 0.0
        decoder = _decoder(stream)
        complete = True
        try:
            if duration is not None and time_base:
                self._seek_sample(box, stream, decoder, sample_times(duration, self.limits.frames), start,
                                  time_base)
            else:
                self._scan(box, stream, decoder, start)
        except _OutOfTime:
            complete = False
        except (CorruptVideoError, av.FFmpegError, ValueError, IndexError, MemoryError) as exc:
            if not self.taken:
                raise CorruptVideoError(CorruptVideoError.USER_MESSAGE) from exc
            complete = False  # damage further in: the frames before it still count
        taken = _thin(self.taken, self.limits.frames)
        if not taken:
            if not complete:
                raise VideoTimeoutError(VideoTimeoutError.USER_MESSAGE)
            raise CorruptVideoError(CorruptVideoError.USER_MESSAGE)
        if not complete:
            log.info("video sampled in part: %d frame(s) within %.1f s", len(taken), self.limits.decode_seconds)
        return DecodedMedia("video", tuple(f for _, f in taken), tuple(t for t, _ in taken), duration=duration,
                            decoded=self.decoded, complete=complete)

    def _frames(self, box: InputContainer, stream: VideoStream,
                decoder: VideoCodecContext) -> Generator[VideoFrame, None, None]:
        """Decoded frames from the demuxer's position on, the budget checked before each packet."""
        try:
            for packet in box.demux(stream):
                if self.clock() > self.deadline:
                    raise _OutOfTime
                try:
                    frames = decoder.decode(packet)
                except av.ExitError:
                    raise _OutOfTime from None
                except (av.FFmpegError, ValueError) as exc:  # a damaged packet: its neighbours may still decode
                    self.bad_packets += 1
                    if self.bad_packets > _MAX_BAD_PACKETS:
                        raise CorruptVideoError(CorruptVideoError.USER_MESSAGE) from exc
                    continue
                for frame in frames:
                    self.decoded += 1
                    yield frame
        except av.ExitError:
            raise _OutOfTime from None

    def _seek_sample(self, box: InputContainer, stream: VideoStream, decoder: VideoCodecContext,
                     targets: Sequence[float], start: float, time_base: Fraction) -> None:
        """One frame at (or just after) each target time, seeking to the keyframe before it
        unless decoding on from the last frame gets there sooner.

        Where the container indexes every frame (MP4), the index says which: a seek pays when a
        keyframe lies between the last frame decoded and the target. Elsewhere (WebM's cues may
        list a few keyframes only) every target seeks, until a seek lands no further than the
        frame already taken: keyframes lie further apart than the samples, and from then on
        decoding simply goes on, so no part is decoded twice.
        """
        frames: Generator[VideoFrame, None, None] | None = None
        entries = getattr(stream, "index_entries", None)  # not in older PyAV: then seek and see
        indexed = bool(stream.frames) and entries is not None and len(entries) >= stream.frames
        seeking = True
        position: float | None = None  # the moment of the last frame decoded
        for target in targets:
            if position is not None and position >= target:
                continue
            fresh = False
            if seeking and (not indexed or self._keyframe_after(stream, position, start + target, start)):
                if frames is not None:
                    frames.close()
                    frames = None
                try:
                    box.seek(int((start + target) / time_base), stream=stream, backward=True)
                except av.ExitError:
                    raise _OutOfTime from None
                except av.FFmpegError:
                    seeking = False  # not seekable: decode on from where it is
                else:
                    if decoder is not stream.codec_context:
                        decoder.flush_buffers()
                    fresh = True
            if frames is None:
                frames = self._frames(box, stream, decoder)
            found: tuple[float, VideoFrame] | None = None
            for frame in frames:
                moment = self._moment(frame, start, target)
                if fresh:
                    fresh = False
                    if not indexed and self.taken and moment <= self.taken[-1][0]:
                        seeking = False
                if moment + _EPSILON >= target:
                    found = (moment, frame)
                    position = moment
                    break
                found, position = (moment, frame), moment  # the last frame so far, should the stream end
            ended = position is None or position + _EPSILON < target
            if found is not None and (not self.taken or found[0] > self.taken[-1][0]):
                self.taken.append((found[0], self._picture(found[1])))
            if ended:  # the stream ended before the target: its last frame shows until the end
                break

    @staticmethod
    def _keyframe_after(stream: VideoStream, position: float | None, until: float, start: float) -> bool:
        """Whether the index has a keyframe after ``position`` (seconds) and no later than
        ``until`` (a stream time, seconds)."""
        if position is None:
            return True
        entries, time_base = stream.index_entries, stream.time_base
        if not time_base:
            return True
        i = entries.search_timestamp(int(until / time_base), backward=True)
        return i < 0 or float(entries[i].timestamp * time_base) - start > position

    def _scan(self, box: InputContainer, stream: VideoStream, decoder: VideoCodecContext, start: float) -> None:
        """No duration to aim at: decode from the start, keeping every ``stride``-th frame and
        doubling the stride whenever twice the wanted count is kept (evenly spread, bounded)."""
        stride, index, last = 1, 0, 0.0
        for frame in self._frames(box, stream, decoder):
            moment = self._moment(frame, start, last)
            if moment > self.limits.max_seconds:
                raise too_long("video", moment, self.limits.max_seconds)
            if index % stride == 0:
                self.taken.append((moment, self._picture(frame)))
                if len(self.taken) >= 2 * self.limits.frames:
                    self.taken[:] = self.taken[::2]
                    stride *= 2
            index, last = index + 1, moment

    @staticmethod
    def _moment(frame: VideoFrame, start: float, otherwise: float) -> float:
        seconds: float | None = frame.time
        if seconds is None or not math.isfinite(seconds):
            return otherwise
        return max(0.0, seconds - start)

    def _picture(self, frame: VideoFrame) -> Image.Image:
        """An RGB picture of a frame: scaled to fit, turned upright, alpha flattened on white."""
        check_pixels(frame.width, frame.height, self.max_pixels, "video")
        alpha = any(c.is_alpha for c in frame.format.components)
        width, height = fit(frame.width, frame.height)
        array = frame.to_ndarray(width=width, height=height, format="rgba" if alpha else "rgb24",
                                 interpolation="AREA")
        image = Image.fromarray(np.ascontiguousarray(array))
        rotation = round(float(getattr(frame, "rotation", 0) or 0) / 90) * 90 % 360
        if rotation:  # phones store portrait videos sideways, with a display matrix to turn them
            image = image.rotate(rotation, expand=True)
        return to_rgb(image)


def _duration(box: InputContainer, stream: VideoStream) -> float | None:
    seconds: float | None = None
    if stream.duration is not None and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif box.duration is not None:
        seconds = box.duration / av.time_base
    return seconds if seconds is not None and math.isfinite(seconds) and seconds > 0 else None


def _decoder(stream: VideoStream) -> VideoCodecContext:
    """The stream's decoder; for WebM with an alpha channel (Telegram's video stickers) libvpx's,
    the one that decodes the alpha, when this FFmpeg has it."""
    context = stream.codec_context
    alpha_codec = _ALPHA_DECODERS.get(context.name)
    if alpha_codec and stream.metadata.get("alpha_mode") == "1":
        try:
            created = CodecContext.create(alpha_codec, "r")
        except (av.FFmpegError, ValueError):
            created = None  # the colours still decode, the transparency is lost
        if isinstance(created, VideoCodecContext):
            return created
    return context
