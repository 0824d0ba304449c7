"""Result cards for search results: the glue between stored images and the renderers.

Everything here blocks (file reads, decoding, matplotlib); callers run it off the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING

from PIL import Image

from core.errors import ImageError
from core.media.colors import DominantColor
from core.media.images import decode_image
from core.render.file_cache import FileCache
from core.search.words import SearchResult

if TYPE_CHECKING:  # matplotlib loads with the first card, not with every `clipbot` command
    from core.render.cards import Tile

THUMB_SIDE = 400  # decoded at least this large, twice the tile, so the scaled tile stays sharp
TILE_SIDE = 200  # what a collage tile shows at most (cards.render_collage's tile_px)
_NOTE_CHARS = 40  # a file name longer than this is shortened anyway by the tile's width
# Tiles of stored pictures, kept: "Top N" shows the pictures the results just previewed. A
# 200 px tile is 120 KB, so about 50 tiles.
_TILES: FileCache[Image.Image] = FileCache(6 * 2**20, lambda img: img.width * img.height * len(img.getbands()))


def _thumbnail(source: str | None) -> Image.Image:
    tile = _TILES.get(source, TILE_SIDE, lambda: _decode_tile(source)) if source else None
    # The file is gone: a grey tile.
    return tile if tile is not None else Image.new("RGB", (TILE_SIDE, TILE_SIDE), (230, 230, 230))


def _decode_tile(path: str) -> Image.Image | None:
    try:
        img = decode_image(path, max_pixels=10**9, min_side=THUMB_SIDE).image.convert("RGB")
    except ImageError:
        return None
    img.thumbnail((TILE_SIDE, TILE_SIDE))
    return img


def bar_label(result: SearchResult) -> str:
    """``"#12 label"``: the id people type to /delete, then what the image is."""
    return f"#{result.id} {result.label}".rstrip()


def result_tiles(results: Sequence[SearchResult]) -> list[Tile]:
    """One collage tile per result; the note is the operator's own file name, when it has one.

    The stored copy's name is a content hash, meaningless to people, so it is not shown.
    """
    from core.render.cards import Tile

    return [
        Tile(_thumbnail(r.path), r.label, r.score, image_id=r.id,
             note=PurePath(r.source_path).name[:_NOTE_CHARS] if r.source_path else "")
        for r in results
    ]


def collage_png(
    results: Sequence[SearchResult], *, columns: int = 5, title: str | None = None,
    query: Image.Image | bytes | None = None,
) -> bytes:
    """A grid of the results' images, "rank. #id label" and score under each.

    ``title`` (the query text) and ``query`` (the query photo, shown as a thumbnail) put a
    header on top; an undecodable ``query`` loses its thumbnail rather than failing the card.
    """
    query_image = query if isinstance(query, Image.Image) or query is None else _query_thumbnail(query)
    if query is not None and query_image is None and title is None:
        title = "Matches for this photo"
    from core.render.cards import render_collage

    return render_collage(result_tiles(results), columns=columns, title=title, query=query_image)


def _query_thumbnail(data: bytes) -> Image.Image | None:
    try:
        img = decode_image(data, max_pixels=10**9, min_side=THUMB_SIDE).image
    except ImageError:
        return None
    img.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return img


def scores_png(results: Sequence[SearchResult], *, max_bars: int = 25, title: str | None = None) -> bytes:
    """Horizontal bars of every result's score, best at the top, labelled "#id label"."""
    from core.render.charts import render_score_bars

    return render_score_bars([(bar_label(r), r.score) for r in results], max_bars=max_bars, title=title)


def palette_png(colors: Sequence[DominantColor]) -> bytes:
    from core.render.charts import render_palette

    return render_palette(colors)


def colors_text(colors: Sequence[DominantColor]) -> str:
    """One line per colour: share, name and hex, largest first."""
    return "\n".join(f"{c.percent:5.1f}%  {c.name} ({c.hex})" for c in colors)
