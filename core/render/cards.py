"""Result cards as PNG bytes: the collage of matches here, the score chart and palette in core.render.charts.

Only matplotlib's object API is used (``Figure`` plus an Agg canvas per figure), never pyplot:
pyplot keeps a global current figure and is not thread-safe, while these functions run in
worker threads side by side. Every call builds its own figure and keeps no module state.

Layout is in pixels, not points: each card has an exact pixel size whatever ``dpi`` is, and
font sizes are converted from pixels so captions fit the space reserved for them. User text
(labels, queries) is measured with the figure's own renderer and shortened to its room, so it
is never cut off by the card's edge or drawn over a neighbour.
"""

from __future__ import annotations

import io
import math
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image, ImageOps

from core.media.images import to_rgb

# Height of the caption strip under each collage tile: "rank. #id label" and "score · file".
CAPTION_PX = 40
# Header above a collage with a title: title line and a line saying how to read the tiles.
TITLE_PX = 52
# Header with the query photo: its thumbnail sets the height.
QUERY_TITLE_PX = 92
ELLIPSIS = "…"

# DejaVu Sans ships inside matplotlib, so no lookup can fail and log "findfont" noise. Fonts
# for scripts it lacks (CJK above all) are added only when installed, found in the font list
# matplotlib already loaded, so hosts that have them show labels such as "猫" instead of boxes.
_FALLBACK_FONTS = (
    "Noto Sans CJK JP", "Noto Sans CJK SC", "Source Han Sans", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
    "Droid Sans Fallback", "Noto Sans", "Noto Sans Symbols 2",
)
_INSTALLED = {f.name for f in font_manager.fontManager.ttflist}
FONT_FAMILY: list[str] = ["DejaVu Sans", *(name for name in _FALLBACK_FONTS if name in _INSTALLED)]
# Characters DejaVu Sans Bold draws itself. Fallback fonts often have no bold face, and asking
# for one logs a findfont warning per lookup: bold text uses DejaVu alone, and text it cannot
# draw is set in the regular weight, where the fallbacks apply.
_BOLD_CHARS = frozenset(font_manager.get_font(
    font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight="bold")),
).get_charmap())

# Labels are user text (folder names, captions): emoji or scripts missing from every font warn
# once per glyph per render. A box in their place is fine on a card; the warning is noise.
_GLYPH_WARNING = r"Glyph \d+ .*missing from font"

_COLLAGE_FONT_PX = 12
_TITLE_FONT_PX = 17
_SUBTITLE_FONT_PX = 12
_TILE_PAD_PX = 4
_QUERY_THUMB_PX = QUERY_TITLE_PX - 16
_MUTED = "#555555"
_RULE = "#d0d0d0"
# Average DejaVu Sans advance is ~0.6 em; a little over keeps wide capitals inside the box.
_CHAR_EM = 0.62


@dataclass(frozen=True)
class Tile:
    """One search result for the collage, best first: its picture, label, score and identity."""

    image: Image.Image
    label: str
    score: float
    image_id: int | None = None  # shown as "#12": the number /delete and the replies use
    note: str = ""  # a detail for the second caption line, such as the original file's name


# --- shared helpers ----------------------------------------------------------------------------

def shorten(text: str, max_chars: int) -> str:
    """``text`` on one line, cut to ``max_chars`` characters with a trailing ellipsis if longer."""
    flat = re.sub(r"\s+", " ", text).strip()
    if len(flat) <= max_chars:
        return flat
    return flat[: max(0, max_chars - 1)].rstrip() + ELLIPSIS


def chars_fitting(width_px: float, font_px: float) -> int:
    """About how many average characters fit ``width_px``; for names, which are plain ASCII."""
    return max(1, int(width_px / (font_px * _CHAR_EM)))


def points(px: float, dpi: int) -> float:
    """A font size in points (1/72 in) for ``px`` pixels (1/dpi in)."""
    return px * 72.0 / dpi


def _quiet_missing_glyphs() -> None:
    # A filter, not warnings.catch_warnings() around the draw: that swaps global state and is
    # not thread-safe. Ensured per figure rather than once at import, because callers and test
    # runners that wrap code in catch_warnings() restore the filter list and drop it, and kept
    # first so a broad "always"/"default" filter does not bring the noise back.
    first = warnings.filters[0] if warnings.filters else None
    if first and first[0] == "ignore" and first[1] is not None and first[1].pattern == _GLYPH_WARNING:
        return
    warnings.filterwarnings("ignore", message=_GLYPH_WARNING, category=UserWarning)


def new_figure(width_px: int, height_px: int, dpi: int) -> Figure:
    """A fresh white figure whose Agg canvas is exactly ``width_px`` x ``height_px``."""
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi}")
    _quiet_missing_glyphs()
    # Agg truncates figsize * dpi to int; a quarter pixel of slack stops 199.99999 becoming 199.
    fig = Figure(figsize=((width_px + 0.25) / dpi, (height_px + 0.25) / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render ``fig`` with its Agg canvas and encode it as an RGB PNG."""
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg), "figures here are built by new_figure"
    canvas.draw()  # type: ignore[no-untyped-call]  # matplotlib's backend_agg.py has no annotations
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[no-untyped-call]  # likewise unannotated
    buf = io.BytesIO()
    # Pillow's encoder writes no timestamp, so equal pixels give equal bytes. zlib's fastest
    # level: a photo collage took 120 ms at the default (6) and takes 40 at 1, for 8% more bytes.
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def place_text(fig: Figure, x_px: float, y_px: float, s: str, *, font_px: float, **kw: Any) -> None:
    """Figure text placed in pixels from the top-left corner; never parsed as mathtext."""
    w, h = fig.bbox.width, fig.bbox.height
    family, weight = text_style(s, kw.pop("weight", "normal"))
    fig.text(
        x_px / w, 1.0 - y_px / h, s, fontsize=points(font_px, int(fig.dpi)), family=family, weight=weight,
        parse_math=False, **kw,  # a label such as "$5 mug" must not become TeX
    )


def text_style(text: str, weight: str = "normal") -> tuple[list[str], str]:
    """``(font families, weight)`` to draw ``text`` in: bold only where DejaVu Sans Bold has every glyph."""
    if weight != "bold":
        return FONT_FAMILY, weight
    if len(FONT_FAMILY) == 1 or all(ord(ch) in _BOLD_CHARS for ch in text):
        return ["DejaVu Sans"], weight
    return FONT_FAMILY, "normal"


def text_width_px(fig: Figure, s: str, font_px: float, *, weight: str = "normal") -> float:
    """How wide ``s`` is drawn on ``fig``, in pixels, measured by the renderer that will draw it.

    Remembered by text, size, weight and dpi, all the width depends on: a collage's labels and
    their shortened forms come back card after card, and measuring was a fifth of drawing one.
    """
    key = (s, float(font_px), int(fig.dpi), weight)
    with _WIDTHS_LOCK:
        width = _WIDTHS.get(key)
    if width is None:
        canvas = fig.canvas
        assert isinstance(canvas, FigureCanvasAgg), "figures here are built by new_figure"
        renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]  # backend_agg.py is unannotated
        family, style = text_style(s, weight)
        prop = font_manager.FontProperties(family=family, size=points(font_px, int(fig.dpi)), weight=style)
        width = float(renderer.get_text_width_height_descent(s, prop, ismath=False)[0])
        with _WIDTHS_LOCK:
            if len(_WIDTHS) >= _WIDTHS_KEPT:
                _WIDTHS.clear()
            _WIDTHS[key] = width
    return width


_WIDTHS: dict[tuple[str, float, int, str], float] = {}
_WIDTHS_KEPT = 20_000  # about 2 MB; then it starts again rather than keeping every label ever drawn
_WIDTHS_LOCK = threading.Lock()


def fit_text(fig: Figure, text: str, width_px: float, font_px: float, *, weight: str = "normal") -> str:
    """``text`` on one line, shortened with an ellipsis until it is drawn within ``width_px``.

    Measured rather than counted: "WWW" is three times as wide as "iii", and a CJK character
    is about twice a Latin one.
    """
    flat = re.sub(r"\s+", " ", text).strip()
    if text_width_px(fig, flat, font_px, weight=weight) <= width_px:
        return flat
    lo, hi = 0, len(flat) - 1  # the longest prefix that fits with the ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_width_px(fig, flat[:mid].rstrip() + ELLIPSIS, font_px, weight=weight) <= width_px:
            lo = mid
        else:
            hi = mid - 1
    return flat[:lo].rstrip() + ELLIPSIS


def rule(fig: Figure, y_px: float) -> None:
    """A thin grey line across the figure, ``y_px`` from the top, under a header."""
    y = 1.0 - y_px / fig.bbox.height
    fig.add_artist(Line2D([0.0, 1.0], [y, y], color=_RULE, linewidth=1.0))


# --- collage -----------------------------------------------------------------------------------

def collage_layout(n: int, columns: int) -> tuple[int, int]:
    """``(rows, columns_used)`` of a collage of ``n`` tiles at most ``columns`` wide."""
    if n < 1:
        raise ValueError("a collage needs at least one tile")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    used = min(columns, n)
    return math.ceil(n / used), used


def collage_header_px(*, titled: bool, query: bool) -> int:
    """Height of the header strip: ``QUERY_TITLE_PX`` with a query photo, ``TITLE_PX`` with a title."""
    return QUERY_TITLE_PX if query else TITLE_PX if titled else 0


def collage_size(n: int, *, columns: int = 5, tile_px: int = 200, titled: bool = False,
                 query: bool = False) -> tuple[int, int]:
    """``(width, height)`` in pixels of a collage of ``n`` tiles.

    Without a header: ``columns_used * tile_px`` by ``rows * (tile_px + CAPTION_PX)``. A header
    (a title, a query photo) adds its height on top and widens a one-tile collage to two tiles,
    so the title has room to be read.
    """
    rows, used = collage_layout(n, columns)
    header = collage_header_px(titled=titled, query=query)
    width = used * tile_px if not header else max(used, 2) * tile_px
    return width, header + rows * (tile_px + CAPTION_PX)


def _fit(image: Image.Image, box: int) -> Image.Image:
    """The image scaled (up or down) to fit a ``box`` x ``box`` square, aspect kept."""
    img = to_rgb(image)
    scale = box / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if size == img.size:
        return img
    # reducing_gap: a cheap integer reduce first, so a 40 MP photo does not cost a full Lanczos.
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0 if scale < 1 else None)


def tile_caption(tile: Tile, rank: int) -> tuple[str, str]:
    """The two caption lines of a tile, unshortened: ``"1. #12 label"`` and ``"0.913 · file.jpg"``.

    Three decimals: cosine scores of near-duplicates differ in the third place, and two
    decimals showed three different images all as "1.00".
    """
    ident = f"#{tile.image_id} " if tile.image_id is not None else ""
    head = f"{rank}. {ident}{tile.label}".rstrip()
    score = f"{tile.score:.3f}"
    return head, f"{score} · {tile.note}" if tile.note else score


def _header(fig: Figure, width: int, title: str, subtitle: str, short_subtitle: str,
            query: Image.Image | None) -> None:
    left = 12
    if query is not None:
        thumb = _fit(query, _QUERY_THUMB_PX - 2)
        framed = np.asarray(ImageOps.expand(thumb, border=1, fill=(160, 160, 160)))
        fh = framed.shape[0]
        top = (QUERY_TITLE_PX - fh) // 2
        fig.figimage(framed, xo=left, yo=int(fig.bbox.height) - top - fh, origin="upper")
        left += _QUERY_THUMB_PX + 12
    header = collage_header_px(titled=True, query=query is not None)
    room = width - left - 12
    mid = header / 2
    place_text(fig, left, mid - 3, fit_text(fig, title, room, _TITLE_FONT_PX, weight="bold"),
               font_px=_TITLE_FONT_PX, weight="bold", ha="left", va="bottom", color="#111111")
    if text_width_px(fig, subtitle, _SUBTITLE_FONT_PX) > room:  # a narrow card: the terse legend
        subtitle = short_subtitle
    place_text(fig, left, mid + 3, fit_text(fig, subtitle, room, _SUBTITLE_FONT_PX),
               font_px=_SUBTITLE_FONT_PX, ha="left", va="top", color=_MUTED)
    rule(fig, header - 0.5)


def collage_figure(
    tiles: Sequence[Tile], *, columns: int = 5, tile_px: int = 200, dpi: int = 100,
    title: str | None = None, query: Image.Image | None = None,
) -> Figure:
    """The collage as a figure: one ``figimage`` per tile, plus one for the query photo if given.

    Images are placed pixel for pixel (no resampling by matplotlib), centred in their square;
    the caption lines "rank. #id label" and "score · note" sit in the ``CAPTION_PX`` strip below.
    With ``title`` or ``query`` a header on top shows the title (or "Matches for this photo")
    next to the query's thumbnail, and a line saying how to read the captions.
    """
    if tile_px < 2 * _TILE_PAD_PX + 8:
        raise ValueError(f"tile_px must be at least {2 * _TILE_PAD_PX + 8}, got {tile_px}")
    _rows, used = collage_layout(len(tiles), columns)
    titled = title is not None or query is not None
    width, height = collage_size(len(tiles), columns=columns, tile_px=tile_px, titled=titled,
                                 query=query is not None)
    fig = new_figure(width, height, dpi)
    header = collage_header_px(titled=titled, query=query is not None)
    if titled:
        n = len(tiles)
        heading = title if title is not None else "Best match for this photo" if n == 1 else "Matches for this photo"
        what = "The best match" if n == 1 else f"{n} matches, best first"
        _header(fig, width, heading, f"{what} · under each: rank, #id, label, similarity score",
                f"{what} · rank, #id, label, score", query)
    x0 = (width - used * tile_px) // 2  # a widened one-tile collage keeps its tile centred
    inner = tile_px - 2 * _TILE_PAD_PX
    cell_h = tile_px + CAPTION_PX
    for i, tile in enumerate(tiles):
        row, col = divmod(i, used)
        thumb = np.asarray(_fit(tile.image, inner))
        th, tw = thumb.shape[:2]
        left = x0 + col * tile_px + (tile_px - tw) // 2
        top = header + row * cell_h + (tile_px - th) // 2
        # figimage offsets count from the bottom-left corner, in pixels.
        fig.figimage(thumb, xo=left, yo=height - top - th, origin="upper")
        head, detail = tile_caption(tile, i + 1)
        cx, cy = x0 + col * tile_px + tile_px / 2, header + row * cell_h + tile_px
        place_text(fig, cx, cy + 1, fit_text(fig, head, inner, _COLLAGE_FONT_PX, weight="bold"),
                   font_px=_COLLAGE_FONT_PX, weight="bold", ha="center", va="top", color="#222222")
        place_text(fig, cx, cy + 1 + _COLLAGE_FONT_PX * 1.45, fit_text(fig, detail, inner, _COLLAGE_FONT_PX),
                   font_px=_COLLAGE_FONT_PX, ha="center", va="top", color=_MUTED)
    return fig


def render_collage(
    tiles: Sequence[Tile], *, columns: int = 5, tile_px: int = 200, dpi: int = 100,
    title: str | None = None, query: Image.Image | None = None,
) -> bytes:
    """A PNG grid of the matches, each with "rank. #id label" and its score (3 decimals) under it.

    Size: :func:`collage_size` (``titled`` when ``title`` or ``query`` is given), independent of
    ``dpi``. Raises ValueError on no tiles.
    """
    return figure_png(collage_figure(tiles, columns=columns, tile_px=tile_px, dpi=dpi, title=title, query=query))
