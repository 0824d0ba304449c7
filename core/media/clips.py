"""What a sampled video or animation is, and the limits it is sampled under.

Below both :mod:`core.media.video` (which decides what to decode) and
:mod:`core.media.video_reader` (which seeks and decodes one stream): both use these types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from PIL import Image

from core.media.images import DecodedImage

__all__ = ["STILL_QUALITY", "DecodedMedia", "VideoLimits"]

DEFAULT_VIDEO_FRAMES = 8
DEFAULT_VIDEO_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_VIDEO_MAX_SECONDS = 600.0
DEFAULT_VIDEO_DECODE_SECONDS = 10.0
STILL_QUALITY = 90  # the JPEG a video's frame is stored as


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
