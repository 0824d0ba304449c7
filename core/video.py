"""Videos and animations sampled into a few timed frames.

What an attachment is gets decided by :mod:`core.media_kind` from its bytes; here an MP4/MOV or
WebM/Matroska video, or an animated GIF or WebP, is decoded into frames, a TGS sticker is refused
with a sentence saying what to send instead, and anything else goes to
:func:`core.images.decode_image`.

A video yields at most ``VideoLimits.frames`` frames, spread evenly over its duration (the
centres of equal spans), each with its time in seconds. Containers with an index are sampled by
seeking, so a video of 100,000 frames costs a few keyframe intervals, not a full decode. All of
it runs against a wall-clock budget (``VideoLimits.decode_seconds``) checked between packets, and
FFmpeg's own reads are interrupted past it: when it runs out, the frames found so far are used,
and with none the user hears "I can't read this video in time." Frames are RGB, at most
:data:`FRAME_MAX_SIDE` on their longer side, with transparency flattened on white exactly as
:func:`core.images.to_rgb` flattens a PNG's.
"""
from __future__ import annotations

import bisect
import hashlib
import io
import itertools
import logging
import math
import time
import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from av.codec.context import CodecContext
from av.container import InputContainer
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import GifImagePlugin, Image, UnidentifiedImageError, WebPImagePlugin  # noqa: F401 (formats= needs them)

from core.errors import (
    AnimatedStickerError,
    CorruptVideoError,
    VideoTimeoutError,
    VideoTooLargeError,
    VideoTooLongError,
)
from core.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DecodedImage, decode_image, read_image_bytes, to_rgb
from core.media_kind import (
    HEAD_BYTES,
    VIDEO_CONTAINERS,
    Container,
    MediaKind,
    gif_durations,
    is_lottie,
    media_kind,
    sample_times,
    sniff,
    webp_durations,
)

# core.media_kind's names are re-exported: they lived here first, and callers may import them from here.
__all__ = [
    "FRAME_MAX_SIDE", "HEAD_BYTES", "VIDEO_CONTAINERS", "Container", "DecodedMedia", "MediaKind", "VideoLimits",
    "decode_media", "gif_durations", "media_kind", "representative", "sample_times", "sniff", "still_of",
    "webp_durations",
]
log = logging.getLogger(__name__)

DEFAULT_VIDEO_FRAMES = 8
DEFAULT_VIDEO_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_VIDEO_MAX_SECONDS = 600.0
DEFAULT_VIDEO_DECODE_SECONDS = 10.0
# Frames are kept at most this large on their longer side (720p): plenty for CLIP (224), BLIP
# (384) and colours (96), and for the stored picture of an added video, at a bounded memory cost.
FRAME_MAX_SIDE = 1280
STILL_QUALITY = 90  # the JPEG a video's frame is stored as
_DEMUXERS = {"mp4": "mov", "webm": "matroska"}  # only these FFmpeg demuxers ever see user bytes
_ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}  # FFmpeg's own VP8/VP9 decoders drop WebM's alpha
_MAX_BAD_PACKETS = 64
_EPSILON = 1e-3


@dataclass(frozen=True)
class VideoLimits:
    """How videos are sampled and what is refused (CLIPBOT_VIDEO_* settings)."""

    frames: int = DEFAULT_VIDEO_FRAMES
    max_bytes: int = DEFAULT_VIDEO_MAX_BYTES
    max_seconds: float = DEFAULT_VIDEO_MAX_SECONDS
    decode_seconds: float = DEFAULT_VIDEO_DECODE_SECONDS


@dataclass(frozen=True)
class DecodedMedia:
    """A still image, or the frames sampled from a video or animation.

    ``frames`` are RGB and in time order; ``moments`` their times in seconds from the start. A
    still image is one frame at moment None, and ``still`` is it decoded as any image is.
    ``decoded`` counts the frames decoded to find these (a measure of the work done), and
    ``complete`` is False when the decode budget ran out, or damage stopped the decoding, before
    every sample was found: the frames then come from the part read.
    """

    kind: Literal["image", "video", "animation"]
    frames: tuple[Image.Image, ...]
    moments: tuple[float | None, ...]
    still: DecodedImage | None = None
    duration: float | None = None
    decoded: int = 0
    complete: bool = True


# -- decoding -----------------------------------------------------------------------------------


def decode_media(source: bytes | str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES, limits: VideoLimits | None = None,
                 min_side: int | None = None, clock: Callable[[], float] = time.monotonic,
                 decode_still: Callable[..., DecodedImage] = decode_image) -> DecodedMedia:
    """Decode an image, or sample a video's or animation's frames; blocking (run it on the
    engine's decode threads). Raises :class:`ImageError` subclasses (videos: :class:`VideoError`).

    ``max_bytes`` and ``max_pixels`` are the image limits (animations too); videos have
    ``limits.max_bytes``. Still images go to ``decode_still`` (:func:`decode_image`), with ``min_side``.
    """
    limits = limits or VideoLimits()
    deadline = clock() + limits.decode_seconds
    data = source if isinstance(source, bytes) else _read(Path(source), max_bytes, limits.max_bytes)
    container = sniff(data[:HEAD_BYTES])
    if container in VIDEO_CONTAINERS:
        if len(data) > limits.max_bytes:
            raise VideoTooLargeError(f"The video is {len(data) / 2**20:.1f} MB; the limit is "
                                     f"{limits.max_bytes / 2**20:.3g} MB. Send a shorter or smaller one.")
        return _VideoReader(data, container, limits=limits, max_pixels=max_pixels, deadline=deadline,
                            clock=clock).read()
    if container == "gzip" and is_lottie(data):
        raise AnimatedStickerError(AnimatedStickerError.USER_MESSAGE)
    if container in ("gif", "webp") and len(data) <= max_bytes:
        durations = gif_durations(data) if container == "gif" else webp_durations(data)
        if len(durations) > 1:
            return _decode_animation(data, container, durations, limits=limits, max_pixels=max_pixels,
                                     deadline=deadline, clock=clock)
    still = decode_still(data, max_pixels=max_pixels, max_bytes=max_bytes, min_side=min_side)
    return DecodedMedia("image", (still.image,), (None,), still=still)


def _read(path: Path, max_bytes: int, video_max_bytes: int) -> bytes:
    """A file's bytes, under the video limit when it starts like a video, else the image one."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError:
        head = b""  # read_image_bytes says what is wrong with it
    return read_image_bytes(path, max_bytes=video_max_bytes if sniff(head) in VIDEO_CONTAINERS else max_bytes)


def still_of(frame: Image.Image) -> DecodedImage:
    """A frame as a picture to store: a JPEG, like any photo added."""
    buf = io.BytesIO()
    frame.save(buf, "JPEG", quality=STILL_QUALITY)
    data = buf.getvalue()
    return DecodedImage(image=frame, data=data, sha256=hashlib.sha256(data).hexdigest(), format="JPEG",
                        width=frame.width, height=frame.height)


def representative(vectors: np.ndarray) -> int:
    """The index of the frame closest to the mean of the frames' (unit) vectors: what the video
    shows most of the time."""
    mean = np.asarray(vectors, dtype=np.float64).mean(axis=0)
    return int(np.argmax(np.asarray(vectors, dtype=np.float64) @ mean))


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} second{'' if round(seconds) == 1 else 's'}"
    if seconds < 7200:
        return f"{seconds / 60:.3g} minutes"
    return f"{seconds / 3600:.3g} hours"


def _too_long(noun: str, duration: float, limit: float) -> VideoTooLongError:
    return VideoTooLongError(f"The {noun} is {_span(duration)} long; the limit is {_span(limit)}. "
                             "Send a shorter one.")


def _check_pixels(width: int, height: int, max_pixels: int, noun: str) -> None:
    if width * height > max_pixels:
        raise VideoTooLargeError(f"The {noun} is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
                                 f"the limit is {max_pixels / 1e6:.3g} megapixels.")


def _fit(width: int, height: int) -> tuple[int, int]:
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
class _VideoReader:
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
        _check_pixels(stream.codec_context.width, stream.codec_context.height, self.max_pixels, "video")
        duration = _duration(box, stream)
        if duration is not None and duration > self.limits.max_seconds:
            raise _too_long("video", duration, self.limits.max_seconds)
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
                raise _too_long("video", moment, self.limits.max_seconds)
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
        _check_pixels(frame.width, frame.height, self.max_pixels, "video")
        alpha = any(c.is_alpha for c in frame.format.components)
        width, height = _fit(frame.width, frame.height)
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


def _decode_animation(data: bytes, container: str, durations: list[float], *, limits: VideoLimits,
                      max_pixels: int, deadline: float, clock: Callable[[], float]) -> DecodedMedia:
    """Frames of an animated GIF or WebP at the sampled moments (Pillow decodes them in order:
    each may draw on the one before)."""
    starts = list(itertools.accumulate(durations, initial=0.0))
    total = starts.pop()
    if total > limits.max_seconds:
        raise _too_long("animation", total, limits.max_seconds)
    wanted = sorted({max(0, bisect.bisect_right(starts, t) - 1) for t in sample_times(total, limits.frames)})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["GIF" if container == "gif" else "WEBP"])
    except Image.DecompressionBombError:
        raise VideoTooLargeError("The animation has too many pixels to be decoded safely.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptVideoError("I can't read this animation.") from exc
    taken: list[tuple[float, Image.Image]] = []
    decoded, complete = 0, True
    with image:
        _check_pixels(image.width, image.height, max_pixels, "animation")
        for index in range(wanted[-1] + 1):
            if clock() > deadline:
                complete = False
                break
            try:
                image.seek(index)
                image.load()
            except EOFError:
                break  # fewer frames than the blocks announced
            except (OSError, SyntaxError, ValueError, IndexError, TypeError) as exc:
                if not taken:
                    raise CorruptVideoError("I can't read this animation.") from exc
                break  # damage further in: the frames before it still count
            decoded += 1
            if index in wanted:
                frame = to_rgb(image)
                frame = frame.copy() if frame is image else frame  # the next seek draws over this one
                if frame.size != _fit(*frame.size):
                    frame = frame.resize(_fit(*frame.size), Image.Resampling.LANCZOS)
                taken.append((starts[index], frame))
    if not taken:
        if not complete:
            raise VideoTimeoutError("I can't read this animation in time.")
        raise CorruptVideoError("I can't read this animation.")
    return DecodedMedia("animation", tuple(f for _, f in taken), tuple(t for t, _ in taken), duration=total,
                        decoded=decoded, complete=complete)
