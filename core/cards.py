"""Result cards as PNG bytes: a collage of matches, a score bar chart and a colour palette strip.

Only matplotlib's object API is used (``Figure`` plus an Agg canvas per figure), never pyplot:
pyplot keeps a global current figure and is not thread-safe, while these functions run in
worker threads side by side. Every call builds its own figure and keeps no module state.

Layout is in pixels, not points: each card has an exact pixel size whatever ``dpi`` is, and
font sizes are converted from pixels so captions fit the space reserved for them.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from core.colors import DominantColor
from core.images import to_rgb

# Height of the caption strip under each collage tile: two lines ("label" and "0.87").
CAPTION_PX = 40
# DejaVu Sans ships inside matplotlib, so no lookup can fail and log "findfont" noise.
FONT_FAMILY = "DejaVu Sans"
ELLIPSIS = "…"

# Labels are user text (folder names, captions): emoji or scripts missing from DejaVu warn
# once per glyph per render. A box in their place is fine on a card; the warning is noise.
_GLYPH_WARNING = r"Glyph \d+ .*missing from font"

_COLLAGE_FONT_PX = 12
_TILE_PAD_PX = 4
_BARS_FONT_PX = 12
_BAR_PX = 24
_BARS_TOP_PX = 12
_BARS_AXIS_PX = 34
_BARS_FOOTER_PX = 26
_BARS_RIGHT_PX = 56
_BAR_COLOR = "#4c72b0"
_PALETTE_FONT_PX = 11
# Average DejaVu Sans advance is ~0.6 em; a little over keeps wide capitals inside the box.
_CHAR_EM = 0.62


@dataclass(frozen=True)
class Tile:
    """One search result for the collage: its picture, label and score."""

    image: Image.Image
    label: str
    score: float


# --- shared helpers ----------------------------------------------------------------------------

def shorten(text: str, max_chars: int) -> str:
    """``text`` on one line, cut to ``max_chars`` characters with a trailing ellipsis if longer."""
    flat = re.sub(r"\s+", " ", text).strip()
    if len(flat) <= max_chars:
        return flat
    return flat[: max(0, max_chars - 1)].rstrip() + ELLIPSIS


def _chars_fitting(width_px: float, font_px: float) -> int:
    return max(1, int(width_px / (font_px * _CHAR_EM)))


def _points(px: float, dpi: int) -> float:
    # Font sizes are in points (1/72 in); a pixel is 1/dpi in.
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


def _new_figure(width_px: int, height_px: int, dpi: int) -> Figure:
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
    assert isinstance(canvas, FigureCanvasAgg), "figures here are built by _new_figure"
    canvas.draw()  # type: ignore[no-untyped-call]  # matplotlib's backend_agg.py has no annotations
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[no-untyped-call]  # likewise unannotated
    buf = io.BytesIO()
    # Pillow's encoder writes no timestamp, so equal pixels give equal bytes.
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(buf, "PNG")
    return buf.getvalue()


def _text(fig: Figure, x_px: float, y_px: float, s: str, *, font_px: float, **kw: Any) -> None:
    """Figure text placed in pixels from the top-left corner; never parsed as mathtext."""
    w, h = fig.bbox.width, fig.bbox.height
    fig.text(
        x_px / w, 1.0 - y_px / h, s, fontsize=_points(font_px, int(fig.dpi)), family=FONT_FAMILY,
        parse_math=False, **kw,  # a label such as "$5 mug" must not become TeX
    )


# --- collage -----------------------------------------------------------------------------------

def collage_layout(n: int, columns: int) -> tuple[int, int]:
    """``(rows, columns_used)`` of a collage of ``n`` tiles at most ``columns`` wide."""
    if n < 1:
        raise ValueError("a collage needs at least one tile")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    used = min(columns, n)
    return math.ceil(n / used), used


def collage_size(n: int, *, columns: int = 5, tile_px: int = 200) -> tuple[int, int]:
    """``(width, height)`` in pixels: ``columns_used * tile_px`` by ``rows * (tile_px + CAPTION_PX)``."""
    rows, used = collage_layout(n, columns)
    return used * tile_px, rows * (tile_px + CAPTION_PX)


def _fit(image: Image.Image, box: int) -> Image.Image:
    """The image scaled (up or down) to fit a ``box`` x ``box`` square, aspect kept."""
    img = to_rgb(image)
    scale = box / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if size == img.size:
        return img
    # reducing_gap: a cheap integer reduce first, so a 40 MP photo does not cost a full Lanczos.
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0 if scale < 1 else None)


def collage_figure(tiles: Sequence[Tile], *, columns: int = 5, tile_px: int = 200, dpi: int = 100) -> Figure:
    """The collage as a figure: one ``figimage`` per tile (so ``len(fig.images) == len(tiles)``).

    Images are placed pixel for pixel (no resampling by matplotlib), centred in their square;
    the caption "label" / "score" sits in the ``CAPTION_PX`` strip below.
    """
    if tile_px < 2 * _TILE_PAD_PX + 8:
        raise ValueError(f"tile_px must be at least {2 * _TILE_PAD_PX + 8}, got {tile_px}")
    _rows, used = collage_layout(len(tiles), columns)
    width, height = collage_size(len(tiles), columns=columns, tile_px=tile_px)
    fig = _new_figure(width, height, dpi)
    inner = tile_px - 2 * _TILE_PAD_PX
    max_chars = _chars_fitting(inner, _COLLAGE_FONT_PX)
    cell_h = tile_px + CAPTION_PX
    for i, tile in enumerate(tiles):
        row, col = divmod(i, used)
        thumb = np.asarray(_fit(tile.image, inner))
        th, tw = thumb.shape[:2]
        left = col * tile_px + (tile_px - tw) // 2
        top = row * cell_h + (tile_px - th) // 2
        # figimage offsets count from the bottom-left corner, in pixels.
        fig.figimage(thumb, xo=left, yo=height - top - th, origin="upper")
        caption = f"{shorten(tile.label, max_chars)}\n{tile.score:.2f}"
        _text(
            fig, col * tile_px + tile_px / 2, row * cell_h + tile_px + 2, caption,
            font_px=_COLLAGE_FONT_PX, ha="center", va="top", linespacing=1.1, color="#222222",
        )
    return fig


def render_collage(tiles: Sequence[Tile], *, columns: int = 5, tile_px: int = 200, dpi: int = 100) -> bytes:
    """A PNG grid of the matches, each image with "label" and its score (2 decimals) under it.

    Size: ``min(columns, n) * tile_px`` wide and ``ceil(n / columns_used) * (tile_px + CAPTION_PX)``
    tall (``CAPTION_PX`` = 40), independent of ``dpi``. Raises ValueError on no tiles.
    """
    return figure_png(collage_figure(tiles, columns=columns, tile_px=tile_px, dpi=dpi))


# --- score bars --------------------------------------------------------------------------------

def score_bars_footer(n_items: int, max_bars: int) -> str | None:
    """The note under a bar chart that had to drop items ("…and 15 more"), or None."""
    extra = n_items - max_bars
    return f"{ELLIPSIS}and {extra} more" if extra > 0 else None


def score_bars_size(n_items: int, *, max_bars: int = 25, width_px: int = 800) -> tuple[int, int]:
    """``(width, height)`` in pixels of a bar chart of ``n_items``: 24 px per bar plus margins."""
    if n_items < 1:
        raise ValueError("a bar chart needs at least one item")
    if max_bars < 1:
        raise ValueError(f"max_bars must be at least 1, got {max_bars}")
    shown = min(n_items, max_bars)
    footer = _BARS_FOOTER_PX if score_bars_footer(n_items, max_bars) else 0
    return width_px, _BARS_TOP_PX + shown * _BAR_PX + _BARS_AXIS_PX + footer


def score_bars_figure(
    items: Sequence[tuple[str, float]], *, max_bars: int = 25, width_px: int = 800, dpi: int = 100,
) -> Figure:
    """The bar chart as a figure; see :func:`render_score_bars`."""
    width, height = score_bars_size(len(items), max_bars=max_bars, width_px=width_px)
    label_px = round(width * 0.32)
    plot_w = width - label_px - _BARS_RIGHT_PX
    if plot_w < 50:
        raise ValueError(f"width_px {width_px} leaves no room for bars")
    shown = list(items[:max_bars])
    labels = [label for label, _ in shown]
    scores = np.array([float(score) for _, score in shown])
    footer = score_bars_footer(len(items), max_bars)
    bottom_px = _BARS_AXIS_PX + (_BARS_FOOTER_PX if footer else 0)

    fig = _new_figure(width, height, dpi)
    plot_h = height - _BARS_TOP_PX - bottom_px
    ax = fig.add_axes((label_px / width, bottom_px / height, plot_w / width, plot_h / height))
    pt = _points(_BARS_FONT_PX, dpi)
    y = np.arange(len(shown))
    ax.barh(y, scores, height=0.7, color=_BAR_COLOR)
    lo, hi = min(0.0, float(scores.min())), max(1.0, float(scores.max()))
    ax.set_xlim(lo, hi)
    ax.set_ylim(len(shown) - 0.5, -0.5)  # inverted: items come best first, the best goes on top
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=pt)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if lo < 0:
        ax.axvline(0.0, color="#555555", linewidth=0.8)
    # Labels drawn as plain text rather than tick labels: tick labels would parse "$" as mathtext.
    max_chars = _chars_fitting(label_px - 10, _BARS_FONT_PX)
    pad = 0.01 * (hi - lo)
    for i, (label, score) in enumerate(zip(labels, scores, strict=True)):
        ax.text(
            -0.015, i, shorten(label, max_chars), transform=ax.get_yaxis_transform(), ha="right",
            va="center", fontsize=pt, family=FONT_FAMILY, parse_math=False,
        )
        ax.text(
            max(float(score), 0.0) + pad, i, f"{score:.2f}", ha="left", va="center", fontsize=pt,
            family=FONT_FAMILY, parse_math=False, clip_on=False,
        )
    if footer:
        _text(fig, width / 2, height - _BARS_FOOTER_PX / 2, footer, font_px=_BARS_FONT_PX,
              ha="center", va="center", color="#444444")
    return fig


def render_score_bars(
    items: Sequence[tuple[str, float]], *, max_bars: int = 25, width_px: int = 800, dpi: int = 100,
) -> bytes:
    """A PNG horizontal bar chart of ``(label, score)`` items, given best first, best on top.

    Each bar is labelled with its label and score (2 decimals); the x axis runs from
    ``min(0, lowest score)`` to 1. Only the first ``max_bars`` are drawn, with a footer
    "…and N more" for the rest. Size: ``width_px`` by ``12 + 24 * bars + 34 (+ 26 with a footer)``.
    """
    return figure_png(score_bars_figure(items, max_bars=max_bars, width_px=width_px, dpi=dpi))


# --- palette -----------------------------------------------------------------------------------

def text_color_for(rgb: Sequence[int]) -> str:
    """``"black"`` or ``"white"``, whichever reads better on ``rgb`` (WCAG relative luminance)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    luminance = float(linear @ np.array([0.2126, 0.7152, 0.0722]))
    # 0.179 is where contrast against black equals contrast against white.
    return "black" if luminance > 0.179 else "white"


def palette_blocks(percents: Sequence[float], width_px: int) -> list[tuple[int, int]]:
    """``(left, width)`` pixel spans proportional to ``percents`` that tile ``width_px`` exactly."""
    p = np.asarray(percents, dtype=np.float64)
    if len(p) == 0 or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ValueError("a palette needs colours with positive shares")
    # Rounding cumulative edges (not each width) keeps the blocks gap-free and summing to width_px.
    edges = np.rint(np.concatenate([[0.0], np.cumsum(p)]) / p.sum() * width_px).astype(int)
    return [(int(a), int(b - a)) for a, b in itertools.pairwise(edges)]


def palette_figure(
    colors: Sequence[DominantColor], *, width_px: int = 600, height_px: int = 120, dpi: int = 100,
) -> Figure:
    """The palette strip as a figure; see :func:`render_palette`."""
    blocks = palette_blocks([c.percent for c in colors], width_px)
    strip = np.empty((height_px, width_px, 3), dtype=np.uint8)
    for color, (left, w) in zip(colors, blocks, strict=True):
        strip[:, left:left + w] = color.rgb
    fig = _new_figure(width_px, height_px, dpi)
    # The blocks are one exact pixel array: no antialiased seams between neighbouring colours.
    fig.figimage(strip, xo=0, yo=0, origin="upper")
    for color, (left, w) in zip(colors, blocks, strict=True):
        if w >= 64:
            name = shorten(color.name, _chars_fitting(w - 6, _PALETTE_FONT_PX))
            text = f"{name}\n{color.hex}\n{color.percent:.1f}%"
        elif w >= 30:  # too narrow for the name: the share alone
            text = f"{color.percent:.0f}%"
        else:
            continue
        _text(fig, left + w / 2, height_px / 2, text, font_px=_PALETTE_FONT_PX, ha="center",
              va="center", linespacing=1.2, color=text_color_for(color.rgb))
    return fig


def render_palette(
    colors: Sequence[DominantColor], *, width_px: int = 600, height_px: int = 120, dpi: int = 100,
) -> bytes:
    """A PNG strip, exactly ``width_px`` x ``height_px``, one block per colour sized by its percent.

    Blocks wide enough carry the colour's name, hex and percent in black or white, whichever
    contrasts more; narrow ones show the percent only, or nothing. Raises ValueError on no colours.
    """
    return figure_png(palette_figure(colors, width_px=width_px, height_px=height_px, dpi=dpi))
