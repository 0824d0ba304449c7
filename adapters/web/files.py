"""Pictures the page shows (result previews, cards, thumbnails) as files Gradio can serve.

Gradio serves files, not bytes: each picture is written once, named by its content's hash, into
a folder of this process's own, which is removed when the web app stops. Thumbnails are kept by
the stored picture's hash, so paging back and forth decodes each photo once.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from core.errors import ImageError
from core.media import decode_image

THUMB_SIDE = 320
MAX_AGE_S = 24 * 3600  # result cards older than this are removed when the next are written


class PictureFiles:
    """A private folder of pictures to show; blocking methods run on the engine's threads."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="clipbot-web-"))
        self.cards = self.root / "cards"
        self.thumbs = self.root / "thumbs"
        self._last_prune = time.monotonic()

    def write(self, data: bytes, name: str) -> str:
        """Store ``data`` (blocking); returns its path. The same bytes again reuse the file."""
        suffix = Path(name).suffix.lower() or ".png"
        path = self.cards / f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
        if not path.exists():
            self.cards.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        self._prune()
        return str(path)

    def thumbnail(self, source: str | None, key: str) -> str | None:
        """A JPEG thumbnail of a stored picture (blocking), or None when the file cannot be read."""
        if not source:
            return None
        path = self.thumbs / f"{key}.jpg"
        if path.exists():
            return str(path)
        try:
            img = decode_image(source, max_pixels=10**9, max_bytes=2**40, min_side=THUMB_SIDE).image
        except ImageError:
            return None
        img.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=82)
        self.thumbs.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)
        return str(path)

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < 600:
            return
        self._last_prune = now
        cutoff = time.time() - MAX_AGE_S
        for old in self.cards.glob("*"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                pass

    def remove(self) -> None:
        """Delete the folder (when the app stops)."""
        shutil.rmtree(self.root, ignore_errors=True)
