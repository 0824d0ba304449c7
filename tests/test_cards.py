"""Result cards: exact PNG sizes, one tile per result, captions, axes, footers, palettes and thread safety."""

from __future__ import annotations

import io
import itertools
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.media.colors import DominantColor, dominant_colors
from core.render.cards import (
    CAPTION_PX,
    QUERY_TITLE_PX,
    TITLE_PX,
    Tile,
    collage_figure,
    collage_layout,
    collage_size,
    render_collage,
    shorten,
)
from core.render.charts import (
    palette_blocks,
    palette_figure,
    palette_size,
    render_palette,
    render_score_bars,
    score_axis,
    score_bars_figure,
    score_bars_footer,
    score_bars_size,
    text_color_for,
)

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "hubble", "retina", "china")


@pytest.fixture(scope="module")
def tiles(photos: dict[str, Path]) -> list[Tile]:
    """Eight real photos as results, best first."""
    out = []
    for i, name in enumerate(NAMES):
        with Image.open(photos[name]) as img:
            out.append(Tile(image=img.convert("RGB"), label=name, score=0.91 - 0.07 * i))
    return out


def open_png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    img.load()
    return img


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(open_png(data).convert("RGB"))


# --- collage -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "columns", "layout"), [
    (1, 5, (1, 1)), (3, 5, (1, 3)), (5, 5, (1, 5)), (6, 5, (2, 5)), (7, 5, (2, 5)), (10, 5, (2, 5)),
    (11, 5, (3, 5)), (4, 1, (4, 1)), (7, 3, (3, 3)),
])
def test_collage_layout(n: int, columns: int, layout: tuple[int, int]) -> None:
    assert collage_layout(n, columns) == layout


def test_collage_size_formula() -> None:
    assert CAPTION_PX == 40
    assert collage_size(5, columns=5, tile_px=200) == (1000, 240)
    assert collage_size(7, columns=5, tile_px=200) == (1000, 480)
    assert collage_size(3, columns=5, tile_px=150) == (450, 190)
    assert collage_size(7, columns=3, tile_px=123) == (369, 3 * 163)
    # A header adds its height, and widens a lone tile so the title has room.
    assert collage_size(5, titled=True) == (1000, TITLE_PX + 240)
    assert collage_size(5, query=True) == (1000, QUERY_TITLE_PX + 240)
    assert collage_size(1, titled=True) == (400, TITLE_PX + 240)


def test_collage_of_five_photos(tiles: list[Tile]) -> None:
    img = open_png(render_collage(tiles[:5]))
    assert img.size == (5 * 200, 1 * (200 + CAPTION_PX))
    assert img.mode == "RGB"


def test_collage_of_seven_wraps_to_two_rows(tiles: list[Tile]) -> None:
    assert open_png(render_collage(tiles[:7], columns=5)).size == (1000, 2 * 240)


@pytest.mark.parametrize("dpi", [72, 100, 150])
def test_collage_pixel_size_does_not_depend_on_dpi(tiles: list[Tile], dpi: int) -> None:
    assert open_png(render_collage(tiles[:3], tile_px=123, dpi=dpi)).size == (369, 163)


def test_one_tile_per_result(tiles: list[Tile]) -> None:
    for n in (1, 5, 7):
        fig = collage_figure(tiles[:n])
        assert len(fig.images) == n
        captions = [t.get_text() for t in fig.texts]
        want = [[f"{rank}. {t.label}", f"{t.score:.3f}"] for rank, t in enumerate(tiles[:n], 1)]
        assert captions == [line for pair in want for line in pair]


def test_collage_places_each_image_in_its_cell() -> None:
    # Solid tiles make placement checkable to the pixel: each colour only inside its own square.
    colours = [(255, 0, 0), (0, 0, 255), (0, 160, 0)]
    tiles = [Tile(Image.new("RGB", (50, 80), c), f"t{i}", 0.5) for i, c in enumerate(colours)]
    arr = pixels(render_collage(tiles, columns=2, tile_px=100))
    assert arr.shape == (2 * 140, 200, 3)
    for i, colour in enumerate(colours):
        row, col = divmod(i, 2)
        ys, xs = np.nonzero(np.all(arr == colour, axis=2))
        assert len(ys) > 0
        assert row * 140 <= ys.min() and ys.max() < row * 140 + 100  # above the caption strip
        assert col * 100 <= xs.min() and xs.max() < (col + 1) * 100
        # Aspect kept: a 50x80 tile scaled into 92 px keeps its 5:8 shape (57x92).
        assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (92, 58) or \
            (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (92, 57)


def test_long_and_awkward_labels(tiles: list[Tile]) -> None:
    long = "a " * 60 + "very long label"
    odd = "$5 to $10 \\beta_1 😀 猫"  # mathtext and missing glyphs must not break or warn
    sample = [Tile(tiles[0].image, long, 0.876), Tile(tiles[1].image, odd, -0.1234)]
    fig = collage_figure(sample, tile_px=200)
    label, score, second, second_score = (t.get_text() for t in fig.texts)
    assert label.startswith("1. a a") and label.endswith("…") and len(label) < len(long) and score == "0.876"
    assert second == f"2. {odd}" and second_score == "-0.123"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_png(render_collage(sample))
    assert not [w for w in caught if "Glyph" in str(w.message)]


def test_collage_accepts_any_image_mode() -> None:
    sample = [
        Tile(Image.new("RGBA", (30, 30), (255, 0, 0, 0)), "transparent", 0.1),
        Tile(Image.new("L", (300, 10), 128), "grey strip", 0.2),
        Tile(Image.new("P", (5, 5)), "palette", 0.3),
    ]
    assert open_png(render_collage(sample, tile_px=64)).size == (192, 104)


def test_collage_rejects_bad_input(tiles: list[Tile]) -> None:
    with pytest.raises(ValueError):
        render_collage([])
    with pytest.raises(ValueError):
        render_collage(tiles[:2], columns=0)
    with pytest.raises(ValueError):
        render_collage(tiles[:2], tile_px=4)


@pytest.mark.parametrize(("text", "n", "want"), [
    ("short", 10, "short"), ("exactly10!", 10, "exactly10!"), ("abcdefghijkl", 5, "abcd…"),
    ("two\n lines  here", 40, "two lines here"), ("abc", 1, "…"),
])
def test_shorten(text: str, n: int, want: str) -> None:
    assert shorten(text, n) == want


# --- score bars --------------------------------------------------------------------------------

def items(n: int) -> list[tuple[str, float]]:
    return [(f"image {i:02d}", 0.95 - i * 0.02) for i in range(n)]


def test_footer_text() -> None:
    assert score_bars_footer(40, 25) == "…and 15 more"
    assert score_bars_footer(26, 25) == "…and 1 more"
    assert score_bars_footer(25, 25) is None
    assert score_bars_footer(3, 25) is None


def test_score_bars_with_more_items_than_bars() -> None:
    data = render_score_bars(items(40), max_bars=25)
    assert open_png(data).size == score_bars_size(40, max_bars=25)
    fig = score_bars_figure(items(40), max_bars=25)
    (ax,) = fig.axes
    assert len(ax.patches) == 25
    texts = [t.get_text() for t in fig.texts] + [t.get_text() for t in ax.texts]
    assert "…and 15 more" in texts
    assert "image 00" in texts and "0.950" in texts
    assert "image 25" not in texts


def test_score_bars_best_on_top_and_axis_range() -> None:
    fig = score_bars_figure([("best", 0.9), ("mid", 0.5), ("worst", -0.2)])
    (ax,) = fig.axes
    lo, hi = ax.get_xlim()
    assert lo < -0.2 and 0.9 < hi < 1.0  # the data, with a margin, and 0 inside
    bars = sorted(ax.patches, key=lambda p: p.get_y())
    # The y axis is inverted, so the smallest y is drawn on top.
    assert [round(b.get_width(), 2) for b in bars] == [0.9, 0.5, -0.2]
    assert ax.yaxis_inverted()
    assert any(line.get_xdata()[0] == 0.0 for line in ax.lines)  # the zero line between them
    fig = score_bars_figure([("a", 0.3), ("b", 0.1)])
    lo, hi = fig.axes[0].get_xlim()
    assert lo == 0.0 and 0.3 < hi < 0.35  # spread wider than its distance to 0: not zoomed
    texts = [t.get_text() for t in fig.texts]
    assert not any("more" in t for t in texts)  # no footer
    assert "Similarity scores" in texts and fig.axes[0].get_xlabel() == "cosine similarity"


@pytest.mark.parametrize(("scores", "zoomed"), [
    ([1.0, 0.998, 0.98], True), ([0.31, 0.25, 0.22], True), ([0.9, 0.1], False), ([0.5, -0.1], False),
    ([0.97], False), ([-0.3, -0.2], False),
])
def test_score_axis(scores: list[float], zoomed: bool) -> None:
    lo, hi, was_zoomed, ticks = score_axis(scores)
    assert was_zoomed is zoomed
    assert lo < min(scores) and hi > max(scores)  # every bar end inside, none on the edge
    if zoomed:
        assert ticks is not None and ticks[0] == lo > 0  # the cut is labelled with its value
        assert max(scores) - min(scores) > 0.2 * (hi - lo)  # the data fill most of the axis
    else:
        assert ticks is None and lo <= 0.0 <= hi


def test_score_bars_height_grows_with_bars() -> None:
    h3 = open_png(render_score_bars(items(3))).size
    h25 = open_png(render_score_bars(items(25))).size
    assert h3[0] == h25[0] == 800
    assert h3[1] < h25[1]
    assert h3 == score_bars_size(3) and h25 == score_bars_size(25)
    assert open_png(render_score_bars(items(5), width_px=500, dpi=150)).size == (500, score_bars_size(5)[1])


def test_score_bars_rejects_empty() -> None:
    with pytest.raises(ValueError):
        render_score_bars([])


# --- palette -----------------------------------------------------------------------------------

PALETTE = [
    DominantColor("#ff0000", "red", 50.0, (255, 0, 0)),
    DominantColor("#000080", "navy", 30.0, (0, 0, 128)),
    DominantColor("#ffffff", "white", 15.0, (255, 255, 255)),
    DominantColor("#008000", "green", 5.0, (0, 128, 0)),
]


def test_palette_exact_size_and_blocks() -> None:
    arr = pixels(render_palette(PALETTE))
    # The 30 px green block is too narrow for its text: a one-row legend goes under the strip.
    assert palette_size(PALETTE) == (600, 120 + 16 + 20)
    assert arr.shape == (156, 600, 3)
    assert palette_size(PALETTE[:3]) == (600, 120)
    spans = palette_blocks([c.percent for c in PALETTE], 600)
    assert spans == [(0, 300), (300, 180), (480, 90), (570, 30)]
    for colour, (left, width) in zip(PALETTE, spans, strict=True):
        # Bottom row, away from the centred text: the block's own colour.
        assert tuple(arr[118, left + width // 2]) == colour.rgb
    small = pixels(render_palette(PALETTE, width_px=333, height_px=47, dpi=72))
    assert small.shape == (palette_size(PALETTE, width_px=333, height_px=47)[1], 333, 3)


def test_palette_labels_and_contrast() -> None:
    fig = palette_figure(PALETTE)
    texts = {t.get_text(): t.get_color() for t in fig.texts}
    assert texts["red\n#ff0000\n50.0%"] == "black"  # WCAG: 5.3:1 against black, 4:1 white
    assert texts["navy\n#000080\n30.0%"] == "white"
    assert texts["white\n#ffffff\n15.0%"] == "black"
    assert texts["4"] == "white"  # 30 px: too narrow for the name, numbered for the legend
    assert texts["4. green · #008000 · 5.0%"] == "#222222"


def test_palette_blocks_tile_exactly() -> None:
    spans = palette_blocks([33.3, 33.3, 33.4], 100)
    assert sum(w for _, w in spans) == 100
    assert all(left == prev_left + prev_w for (prev_left, prev_w), (left, _) in itertools.pairwise(spans))
    with pytest.raises(ValueError):
        palette_blocks([], 100)
    with pytest.raises(ValueError):
        render_palette([])


@pytest.mark.parametrize(("rgb", "text"), [
    ((0, 0, 0), "white"), ((255, 255, 255), "black"), ((255, 255, 0), "black"), ((0, 0, 128), "white"),
    ((255, 0, 0), "black"), ((0, 255, 0), "black"), ((139, 0, 0), "white"),
])
def test_text_color_for(rgb: tuple[int, int, int], text: str) -> None:
    assert text_color_for(rgb) == text


def test_palette_of_a_real_photo(photos: dict[str, Path]) -> None:
    with Image.open(photos["flower"]) as img:
        colors = dominant_colors(img)
    w, h = palette_size(colors)
    assert pixels(render_palette(colors)).shape == (h, w, 3)


# --- thread safety -----------------------------------------------------------------------------

def test_concurrent_renders_equal_sequential(tiles: list[Tile]) -> None:
    """Eight different cards rendered by four threads at once match the one-at-a-time renders.

    With pyplot's shared current figure, or any module-level figure, threads would draw into
    each other's cards and the bytes would differ.
    """
    jobs: list[Callable[[], bytes]] = []
    for i in range(4):
        subset = tiles[i:i + 3 + i]
        jobs.append(lambda s=subset, c=i + 2: render_collage(s, columns=c, tile_px=96))
        jobs.append(lambda n=5 + 9 * i: render_score_bars(items(n), max_bars=20, width_px=500))
    sequential = [job() for job in jobs]
    assert len(set(sequential)) == len(jobs)  # the inputs really differ
    with ThreadPoolExecutor(4) as pool:
        for _ in range(2):
            concurrent = list(pool.map(lambda job: job(), jobs))
            assert concurrent == sequential
