"""Telling chat media apart by their bytes, and reading frame timing without decoding a pixel.

What a chat attachment is gets decided by its content alone, never by its name: MP4/MOV
(``ftyp`` at offset 4), WebM/Matroska (EBML ``1A45DFA3``), animated GIF and animated WebP (more
than one frame) are sampled by :func:`core.media.video.decode_media`; Telegram's animated stickers (TGS:
gzip'd Lottie JSON) are refused with a sentence saying what to send instead; everything else is an
image for :func:`core.media.images.decode_image`.

Everything here reads headers and block structure only, so it is cheap enough to run on every
attachment before deciding what to decode.
"""

from __future__ import annotations

import zlib
from typing import Literal

__all__ = [
    "HEAD_BYTES", "VIDEO_CONTAINERS", "Container", "MediaKind", "gif_durations", "is_lottie", "media_kind",
    "sample_times", "sniff", "webp_durations",
]

Container = Literal["mp4", "webm", "gif", "webp", "gzip", "other"]
MediaKind = Literal["image", "video", "animation", "tgs"]
VIDEO_CONTAINERS: frozenset[str] = frozenset({"mp4", "webm"})
HEAD_BYTES = 64
# ISO-BMFF brands of still images (HEIC, HEIF, AVIF, Canon raw): core.media.images names them.
_IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevm", b"hevs", b"mif1", b"msf1",
                           b"avif", b"avis", b"crx "})
# Old QuickTime files begin with one of these atoms instead of ``ftyp``.
_QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip"})


def sniff(head: bytes) -> Container:
    """The container a file's first bytes announce (``head``: at least its first 16 bytes)."""
    if head[4:8] == b"ftyp":
        return "other" if head[8:12] in _IMAGE_BRANDS else "mp4"
    if head[4:8] in _QUICKTIME_ATOMS:
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    return "other"


def media_kind(data: bytes) -> MediaKind:
    """What ``data`` holds, from its content: a video, an animation (a GIF or WebP of several
    frames), a TGS sticker, or an image (anything else, for core.media.images to accept or refuse)."""
    container = sniff(data[:HEAD_BYTES])
    if container in VIDEO_CONTAINERS:
        return "video"
    if container == "gif" and len(gif_durations(data)) > 1:
        return "animation"
    if container == "webp" and len(webp_durations(data)) > 1:
        return "animation"
    if container == "gzip" and is_lottie(data):
        return "tgs"
    return "image"


def is_lottie(data: bytes) -> bool:
    """Whether gzip'd ``data`` starts with JSON (a TGS sticker's Lottie animation)."""
    try:
        head = zlib.decompressobj(wbits=31).decompress(data[:4096], 64)  # output bounded: no gzip bomb
    except zlib.error:
        return False
    return head.lstrip()[:1] == b"{"


def _display_seconds(ms: float) -> float:
    # Browsers show frames of 10 ms or less for 100 ms; so do we, or such a GIF would last no time.
    return ms / 1000 if ms > 10 else 0.1


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while pos < len(data):
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
    return pos


def gif_durations(data: bytes) -> list[float]:
    """Each frame's display time in seconds, read from a GIF's blocks without decoding pixels."""
    if len(data) < 13 or data[:6] not in (b"GIF87a", b"GIF89a"):
        return []
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # the global colour table
    durations: list[float] = []
    delay = 0
    while pos < len(data):
        block = data[pos]
        if block == 0x21 and pos + 2 <= len(data):  # an extension; 0xF9 holds the next frame's delay
            if data[pos + 1] == 0xF9 and pos + 6 <= len(data) and data[pos + 2] >= 4:
                delay = int.from_bytes(data[pos + 4:pos + 6], "little")
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C and pos + 10 <= len(data):  # an image: descriptor, local colours, LZW data
            packed = data[pos + 9]
            pos += 10 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
            pos = _skip_sub_blocks(data, pos + 1)
            durations.append(_display_seconds(delay * 10))
            delay = 0
        else:  # the trailer, or damage: what was read counts
            break
    return durations


def webp_durations(data: bytes) -> list[float]:
    """Each frame's display time in seconds, from an animated WebP's ANMF chunks (a still
    WebP has none)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return []
    end = min(len(data), 8 + int.from_bytes(data[4:8], "little"))
    durations: list[float] = []
    pos = 12
    while pos + 8 <= end:
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        if data[pos:pos + 4] == b"ANMF" and pos + 8 + 15 <= len(data):
            durations.append(_display_seconds(int.from_bytes(data[pos + 20:pos + 23], "little")))
        pos += 8 + size + (size & 1)
    return durations


def sample_times(duration: float, count: int) -> list[float]:
    """``count`` moments spread evenly over ``duration``: the centres of equal spans."""
    return [(i + 0.5) * duration / count for i in range(count)]
