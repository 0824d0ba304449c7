"""Videos and animations sampled into a few timed frames.

What an attachment is gets decided by :mod:`core.media.kinds` from its bytes; here an MP4/MOV or
WebM/Matroska video, or an animated GIF or WebP, is decoded into frames, a TGS sticker is refused
with a sentence saying what to send instead, and anything else goes to
:func:`core.media.images.decode_image`. A video's seeking and decoding is :mod:`core.media.video_reader`'s.

A video yields at most ``VideoLimits.frames`` frames, spread evenly over its duration (the
centres of equal spans), each with its time in seconds. Containers with an index are sampled by
seeking, so a video of 100,000 frames costs a few keyframe intervals, not a full decode. All of
it runs against a wall-clock budget (``VideoLimits.decode_seconds``) checked between packets, and
FFmpeg's own reads are interrupted past it: when it runs out, the frames found so far are used,
and with none the user hears "I can't read this video in time." Frames are RGB, at most
:data:`FRAME_MAX_SIDE` on their longer side, with transparency flattened on white exactly as
:func:`core.media.images.to_rgb` flattens a PNG's.
"""
from __future__ import annotations

import bisect
import hashlib
import io
import itertools
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import GifImagePlugin, Image, UnidentifiedImageError, WebPImagePlugin  # noqa: F401 (formats= needs them)

from core.errors import (
    AnimatedStickerError,
    CorruptVideoError,
    VideoTimeoutError,
    VideoTooLargeError,
)
from core.media.clips import STILL_QUALITY, DecodedMedia, VideoLimits
from core.media.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    decode_image,
    read_image_bytes,
    to_rgb,
)
from core.media.kinds import (
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
from core.media.video_reader import FRAME_MAX_SIDE, VideoReader, check_pixels, fit, too_long

# core.media.kinds's names, and FRAME_MAX_SIDE from core.media.video_reader, are re-exported: they lived
# here first, and callers may import them from here.
__all__ = [
    "FRAME_MAX_SIDE", "HEAD_BYTES", "VIDEO_CONTAINERS", "Container", "DecodedMedia", "MediaKind", "VideoLimits",
    "decode_media", "gif_durations", "kept_animation", "media_kind", "read_media", "representative", "sample_times",
    "sniff", "still_of", "webp_durations",
]

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
    data = source if isinstance(source, bytes) else read_media(Path(source), max_bytes, limits.max_bytes)
    container = sniff(data[:HEAD_BYTES])
    if container in VIDEO_CONTAINERS:
        if len(data) > limits.max_bytes:
            raise VideoTooLargeError(f"The video is {len(data) / 2**20:.1f} MB; the limit is "
                                     f"{limits.max_bytes / 2**20:.3g} MB. Send a shorter or smaller one.")
        return VideoReader(data, container, limits=limits, max_pixels=max_pixels, deadline=deadline,
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


def read_media(path: Path, max_bytes: int, video_max_bytes: int) -> bytes:
    """A file's bytes, under the video limit when it starts like a video, else the image one: what
    :func:`decode_media` reads from a path, for callers that keep the bytes too."""
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


def kept_animation(data: bytes, frame: Image.Image) -> DecodedImage:
    """An animated GIF or WebP as a picture to store: its own bytes, not a JPEG of ``frame``.

    ``frame`` (its representative one) is what the model, colours and captions see; ``data``,
    ``sha256``, format and size are the file's, so results show the animation that was indexed,
    an unchanged file is recognised again by its hash, and the same file twice is one entry.
    """
    # The header only: decode_media has already read the whole file, so this cannot fail on damage.
    with Image.open(io.BytesIO(data), formats=["GIF", "WEBP"]) as img:
        fmt, (width, height) = str(img.format), img.size
    return DecodedImage(image=frame, data=data, sha256=hashlib.sha256(data).hexdigest(), format=fmt,
                        width=width, height=height)


def representative(vectors: np.ndarray) -> int:
    """The index of the frame closest to the mean of the frames' (unit) vectors: what the video
    shows most of the time."""
    mean = np.asarray(vectors, dtype=np.float64).mean(axis=0)
    return int(np.argmax(np.asarray(vectors, dtype=np.float64) @ mean))


def _decode_animation(data: bytes, container: str, durations: list[float], *, limits: VideoLimits,
                      max_pixels: int, deadline: float, clock: Callable[[], float]) -> DecodedMedia:
    """Frames of an animated GIF or WebP at the sampled moments (Pillow decodes them in order:
    each may draw on the one before)."""
    starts = list(itertools.accumulate(durations, initial=0.0))
    total = starts.pop()
    if total > limits.max_seconds:
        raise too_long("animation", total, limits.max_seconds)
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
        check_pixels(image.width, image.height, max_pixels, "animation")
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
                if frame.size != fit(*frame.size):
                    frame = frame.resize(fit(*frame.size), Image.Resampling.LANCZOS)
                taken.append((starts[index], frame))
    if not taken:
        if not complete:
            raise VideoTimeoutError("I can't read this animation in time.")
        raise CorruptVideoError("I can't read this animation.")
    return DecodedMedia("animation", tuple(f for _, f in taken), tuple(t for t, _ in taken), duration=total,
                        decoded=decoded, complete=complete)
