"""Reply-sized JPEG previews of stored images: chat platforms cap photo size and dimensions."""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path

from PIL import Image

from core.errors import ImageError
from core.media.images import decode_image
from core.render.file_cache import FileCache

log = logging.getLogger(__name__)
PREVIEW_MAX_SIDE = 1280
# Telegram refuses photos whose long side is over 20 times the short one, and a 12000x400
# panorama scaled to 1280 px would be a 43 px sliver anyway: such pictures are letterboxed.
MAX_ASPECT = 20


# Previews sent lately, kept: a popular picture is the answer in many chats, and "Next match"
# comes back to the first result. 8 MB holds about 50 of them.
_PREVIEWS: FileCache[bytes] = FileCache(8 * 2**20, len)


def make_preview(path: str | Path, *, max_side: int = PREVIEW_MAX_SIDE, quality: int = 85) -> bytes | None:
    """A JPEG no larger than ``max_side`` on its longer side, or None if the file is unusable.

    Telegram refuses photos over 10 MB or 10000 px and Discord caps attachments; a stored
    40-megapixel TIFF must still come back as a picture. Previews made lately are kept
    (:mod:`core.render.file_cache`), the file's size and mtime part of their key.
    """
    return _PREVIEWS.get(path, (max_side, quality), lambda: _render_preview(path, max_side, quality))


def _render_preview(path: str | Path, max_side: int, quality: int) -> bytes | None:
    try:
        # Reduced-scale JPEG decode: a 12 MP photo needs no full decode for a 1280 px preview.
        img = decode_image(path, max_pixels=10**9, min_side=max_side).image
    except ImageError:
        log.warning("stored image %s cannot be read", path)
        return None
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    img = letterboxed(img)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def letterboxed(img: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """``img`` centred on a white canvas just wide or tall enough for ``max_aspect``; unchanged if within it."""
    width, height = img.size
    long_side, short_side = max(width, height), max(1, min(width, height))
    if long_side <= max_aspect * short_side:
        return img
    short_needed = math.ceil(long_side / max_aspect)
    size = (width, short_needed) if width >= height else (short_needed, height)
    canvas = Image.new("RGB", size, "white")
    canvas.paste(img.convert("RGB"), ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas
