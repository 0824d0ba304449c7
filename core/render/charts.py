"""The score bar chart and the colour palette strip as PNG bytes (the collage is in core.render.cards).

Same rules as core.render.cards: matplotlib's object API only, a figure per call, pixel layout.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from core.media.colors import DominantColor
from core.render.cards import (
    ELLIPSIS,
    FONT_FAMILY,
    chars_fitting,
    figure_png,
    fit_text,
    new_figure,
    place_text,
    points,
    rule,
    shorten,
)

_BARS_FONT_PX = 12
_BARS_TITLE_FONT_PX = 15
_BAR_PX = 24
_BARS_HEADER_PX = 52  # title and a line on how to read the axis
_BARS_AXIS_PX = 48  # tick labels and the axis label
_BARS_FOOTER_PX = 26
_BARS_RIGHT_PX = 60  # room for a "-0.123" value label past the longest bar
_BAR_COLOR = "#4c72b0"
_MUTED = "#555555"
AXIS_LABEL = "cosine similarity"
_PALETTE_FONT_PX = 11
_SWATCH_PAD_PX = 8
_LEGEND_ROW_PX = 20
_LEGEND_PAD_PX = 8
_CHIP_PX = 12
# Palette text is ASCII, so counting characters is close enough: 0.62 em per character (as
# core.render.cards) is generous for text drawn on a swatch, 0.56 fits a legend line of names and digits.
_LEGEND_EM = 0.56


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
    return width_px, _BARS_HEADER_PX + shown * _BAR_PX + _BARS_AXIS_PX + footer


def score_axis(scores: Sequence[float], *, nbins: int = 6) -> tuple[float, float, bool, list[float] | None]:
    """``(low, high, zoomed, ticks)``: the x range of a chart of ``scores``, and its ticks when zoomed.

    Zoomed when every score is positive and 0 lies further from the lowest score than the
    scores spread: 0.98 and 1.00 on a 0-to-1 axis are two equal bars, on a 0.975-to-1.002 axis
    they differ. The low end is then a tick, so its value is printed where the axis is cut.
    Otherwise the axis includes 0 (and any negative score) and ``ticks`` is None. A single
    score is never zoomed: with nothing to compare, a zoomed bar's length would mean nothing.
    """
    lo_d, hi_d = min(scores), max(scores)
    span = hi_d - lo_d
    if len(scores) > 1 and lo_d > 0 and lo_d > span:
        pad = max(0.1 * span, 0.002)
        hi = hi_d + pad / 2
        # MaxNLocator returns ticks enclosing the range, so the first is at or below lo_d - pad.
        ticks = [float(t) for t in MaxNLocator(nbins=nbins).tick_values(lo_d - pad, hi)]
        low = max(t for t in ticks if t <= lo_d - pad / 2)
        if low > 0:
            return low, hi, True, [t for t in ticks if low - 1e-12 <= t <= hi]
    pad = max(0.05 * (max(hi_d, 0.0) - min(lo_d, 0.0)), 0.005)
    return min(lo_d, 0.0) - (pad if lo_d < 0 else 0.0), max(hi_d, 0.0) + pad, False, None


def _axis_break(fig: Figure, x_px: float, y_px: float) -> None:
    # The usual broken-axis mark: two short slanted strokes across the axis where it is cut.
    w, h = fig.bbox.width, fig.bbox.height
    for dx in (-3.0, 3.0):
        xs = [(x_px + dx - 3) / w, (x_px + dx + 3) / w]
        ys = [1 - (y_px + 6) / h, 1 - (y_px - 6) / h]
        fig.add_artist(_line(xs, ys, "white", 4.0))
        fig.add_artist(_line(xs, ys, "#333333", 1.2))


def _line(xs: list[float], ys: list[float], color: str, width: float) -> Line2D:
    return Line2D(xs, ys, color=color, linewidth=width, solid_capstyle="butt")


def score_bars_figure(
    items: Sequence[tuple[str, float]], *, max_bars: int = 25, width_px: int = 800, dpi: int = 100,
    title: str | None = None,
) -> Figure:
    """The bar chart as a figure; see :func:`render_score_bars`."""
    width, height = score_bars_size(len(items), max_bars=max_bars, width_px=width_px)
    label_px = round(width * 0.32)
    plot_w = width - label_px - _BARS_RIGHT_PX
    if plot_w < 50:
        raise ValueError(f"width_px {width_px} leaves no room for bars")
    shown = list(items[:max_bars])
    scores = np.array([float(score) for _, score in shown])
    footer = score_bars_footer(len(items), max_bars)
    bottom_px = _BARS_AXIS_PX + (_BARS_FOOTER_PX if footer else 0)
    # The axis fits the bars drawn: the dropped tail would only squash them.
    lo, hi, zoomed, ticks = score_axis([float(s) for s in scores], nbins=max(3, plot_w // 90))

    fig = new_figure(width, height, dpi)
    plot_h = height - _BARS_HEADER_PX - bottom_px
    ax = fig.add_axes((label_px / width, bottom_px / height, plot_w / width, plot_h / height))
    pt = points(_BARS_FONT_PX, dpi)
    y = np.arange(len(shown))
    ax.barh(y, scores, height=0.7, color=_BAR_COLOR)
    ax.set_xlim(lo, hi)
    ax.set_ylim(len(shown) - 0.5, -0.5)  # inverted: items come best first, the best goes on top
    ax.set_yticks([])
    if ticks is not None:
        ax.set_xticks(ticks)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=max(3, plot_w // 90)))
    ax.tick_params(axis="x", labelsize=pt)
    ax.set_xlabel(AXIS_LABEL, fontsize=pt, family=FONT_FAMILY, color=_MUTED, labelpad=3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if lo < 0 < hi:
        ax.axvline(0.0, color="#555555", linewidth=0.8)
    # Labels drawn as plain text rather than tick labels: tick labels would parse "$" as mathtext.
    pad = 0.01 * (hi - lo)
    for i, (label, score) in enumerate(zip((label for label, _ in shown), scores, strict=True)):
        ax.text(
            -0.015, i, fit_text(fig, label, label_px - 14, _BARS_FONT_PX), transform=ax.get_yaxis_transform(),
            ha="right", va="center", fontsize=pt, family=FONT_FAMILY, parse_math=False,
        )
        ax.text(
            max(float(score), lo, 0.0) + pad, i, f"{score:.3f}", ha="left", va="center", fontsize=pt,
            family=FONT_FAMILY, parse_math=False, clip_on=False,
        )
    n = len(items)
    heading = title if title is not None else "Similarity scores"
    place_text(fig, 12, 8, fit_text(fig, heading, width - 24, _BARS_TITLE_FONT_PX, weight="bold"),
               font_px=_BARS_TITLE_FONT_PX, weight="bold", ha="left", va="top", color="#111111")
    if zoomed:
        how = f"Axis zoomed: it starts at {lo:g}, not at 0 (// on the axis), so bars show differences, not sizes"
        _axis_break(fig, label_px, height - bottom_px)
    else:
        how = f"{n} image{'s' if n != 1 else ''}, best first; bars start at 0"
    place_text(fig, 12, 32, fit_text(fig, how, width - 24, _BARS_FONT_PX), font_px=_BARS_FONT_PX,
               ha="left", va="top", color=_MUTED)
    rule(fig, _BARS_HEADER_PX - 4.5)
    if footer:
        place_text(fig, width / 2, height - _BARS_FOOTER_PX / 2, footer, font_px=_BARS_FONT_PX,
                   ha="center", va="center", color="#444444")
    return fig


def render_score_bars(
    items: Sequence[tuple[str, float]], *, max_bars: int = 25, width_px: int = 800, dpi: int = 100,
    title: str | None = None,
) -> bytes:
    """A PNG horizontal bar chart of ``(label, score)`` items, given best first, best on top.

    Each bar is labelled with its label and score (3 decimals), under a title (default
    "Similarity scores") and over an x axis labelled "cosine similarity". The axis spans the
    data (:func:`score_axis`): when it is zoomed past 0 the cut is marked and said in words.
    Only the first ``max_bars`` are drawn, with a footer "…and N more" for the rest.
    Size: ``width_px`` by ``52 + 24 * bars + 48 (+ 26 with a footer)``.
    """
    return figure_png(score_bars_figure(items, max_bars=max_bars, width_px=width_px, dpi=dpi, title=title))


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


def swatch_text(color: DominantColor, width_px: int, height_px: int) -> str | None:
    """Name (wrapped to two lines at most), hex and percent stacked, if they fit the swatch whole.

    None when they do not: the colour then goes to the legend under the strip, because a
    shortened name ("dark ol…") says less than none.
    """
    room = chars_fitting(width_px - _SWATCH_PAD_PX, _PALETTE_FONT_PX)
    lines: list[str] = []
    for word in color.name.split():
        if lines and len(lines[-1]) + 1 + len(word) <= room:
            lines[-1] += " " + word
        else:
            lines.append(word)
    lines += [color.hex, f"{color.percent:.1f}%"]
    if len(lines) > 4 or max(len(line) for line in lines) > room:
        return None
    if len(lines) * _PALETTE_FONT_PX * 1.25 > height_px - 4:
        return None
    return "\n".join(lines)


def _legend_entry(color: DominantColor, number: int) -> str:
    return f"{number}. {color.name} · {color.hex} · {color.percent:.1f}%"


def _legend_grid(entries: Sequence[str], width_px: int) -> tuple[int, int, int]:
    """``(columns, rows, column width)`` of the legend: as many columns as its longest entry allows."""
    longest = math.ceil(max(len(e) for e in entries) * _PALETTE_FONT_PX * _LEGEND_EM)
    col_w = min(_CHIP_PX + 6 + longest + 8, width_px - 2 * _LEGEND_PAD_PX)
    columns = max(1, min(len(entries), (width_px - 2 * _LEGEND_PAD_PX) // col_w))
    return columns, math.ceil(len(entries) / columns), col_w


def palette_size(colors: Sequence[DominantColor], *, width_px: int = 600, height_px: int = 120) -> tuple[int, int]:
    """``(width, height)`` of a palette: the strip, plus a legend when a swatch is too narrow for its text."""
    blocks = palette_blocks([c.percent for c in colors], width_px)
    legend = [_legend_entry(c, i) for i, (c, (_, w)) in enumerate(zip(colors, blocks, strict=True), 1)
              if swatch_text(c, w, height_px) is None]
    if not legend:
        return width_px, height_px
    _columns, rows, _ = _legend_grid(legend, width_px)
    return width_px, height_px + 2 * _LEGEND_PAD_PX + rows * _LEGEND_ROW_PX


def palette_figure(
    colors: Sequence[DominantColor], *, width_px: int = 600, height_px: int = 120, dpi: int = 100,
) -> Figure:
    """The palette as a figure; see :func:`render_palette`."""
    blocks = palette_blocks([c.percent for c in colors], width_px)
    width, height = palette_size(colors, width_px=width_px, height_px=height_px)
    strip = np.full((height, width, 3), 255, dtype=np.uint8)
    texts = [swatch_text(c, w, height_px) for c, (_, w) in zip(colors, blocks, strict=True)]
    legend = [(i, c) for i, (c, t) in enumerate(zip(colors, texts, strict=True), 1) if t is None]
    for color, (left, w) in zip(colors, blocks, strict=True):
        strip[:height_px, left:left + w] = color.rgb
    columns, _rows, col_w = _legend_grid([_legend_entry(c, i) for i, c in legend], width_px) if legend else (1, 0, 0)
    for k, (_, color) in enumerate(legend):
        row, col = divmod(k, columns)
        x = _LEGEND_PAD_PX + col * col_w
        y = height_px + _LEGEND_PAD_PX + row * _LEGEND_ROW_PX + (_LEGEND_ROW_PX - _CHIP_PX) // 2
        strip[y:y + _CHIP_PX, x:x + _CHIP_PX] = (150, 150, 150)  # a frame, so white shows on white
        strip[y + 1:y + _CHIP_PX - 1, x + 1:x + _CHIP_PX - 1] = color.rgb
    fig = new_figure(width, height, dpi)
    # The blocks are one exact pixel array: no antialiased seams between neighbouring colours.
    fig.figimage(strip, xo=0, yo=0, origin="upper")
    numbers = {i for i, _ in legend}
    for i, (color, (left, w), text) in enumerate(zip(colors, blocks, texts, strict=True), 1):
        if text is None and i in numbers and w >= 10:
            text = str(i)  # the key to its legend row
        if text:
            place_text(fig, left + w / 2, height_px / 2, text, font_px=_PALETTE_FONT_PX, ha="center",
                       va="center", linespacing=1.2, color=text_color_for(color.rgb))
    for k, (i, color) in enumerate(legend):
        row, col = divmod(k, columns)
        entry = shorten(_legend_entry(color, i), int((col_w - _CHIP_PX - 10) / (_PALETTE_FONT_PX * _LEGEND_EM)))
        place_text(fig, _LEGEND_PAD_PX + col * col_w + _CHIP_PX + 6,
                   height_px + _LEGEND_PAD_PX + (row + 0.5) * _LEGEND_ROW_PX, entry,
                   font_px=_PALETTE_FONT_PX, ha="left", va="center", color="#222222")
    return fig


def render_palette(
    colors: Sequence[DominantColor], *, width_px: int = 600, height_px: int = 120, dpi: int = 100,
) -> bytes:
    """A PNG strip ``width_px`` x ``height_px``, one block per colour sized by its percent.

    A block wide enough carries the colour's name, hex and percent, stacked, in black or white,
    whichever contrasts more. Colours whose text does not fit are numbered in their block and
    listed with the same number, a chip, name, hex and percent in a legend under the strip,
    which makes the image taller (:func:`palette_size`). Raises ValueError on no colours.
    """
    return figure_png(palette_figure(colors, width_px=width_px, height_px=height_px, dpi=dpi))
