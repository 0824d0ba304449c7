"""Result cards for search results: the glue between stored images and core.cards' renderers.

Everything here blocks (file reads, decoding, matplotlib); callers run it off the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from core.cards import Tile, render_collage, render_palette, render_score_bars
from core.colors import DominantColor
from core.errors import ImageError
from core.images import decode_image
from core.search import SearchResult

THUMB_SIDE = 400  # tiles are 200 px; twice that keeps them sharp without decoding full size twice


def _thumbnail(path: str | None) -> Image.Image:
    if path:
        try:
            img = decode_image(path, max_pixels=10**9, min_side=THUMB_SIDE).image
            img.thumbnail((THUMB_SIDE, THUMB_SIDE))
            return img
        except ImageError:
            pass
    return Image.new("RGB", (THUMB_SIDE, THUMB_SIDE), (230, 230, 230))  # the file is gone: a grey tile


def collage_png(results: Sequence[SearchResult], *, columns: int = 5) -> bytes:
    """A grid of the results' images with label and score under each."""
    tiles = [Tile(_thumbnail(r.path), r.label or f"#{r.id}", r.score) for r in results]
    return render_collage(tiles, columns=columns)


def scores_png(results: Sequence[SearchResult], *, max_bars: int = 25) -> bytes:
    """Horizontal bars of every result's score, best at the top."""
    return render_score_bars([(r.label or f"#{r.id}", r.score) for r in results], max_bars=max_bars)


def palette_png(colors: Sequence[DominantColor]) -> bytes:
    return render_palette(colors)


def colors_text(colors: Sequence[DominantColor]) -> str:
    """One line per colour: share, name and hex, largest first."""
    return "\n".join(f"{c.percent:5.1f}%  {c.name} ({c.hex})" for c in colors)
