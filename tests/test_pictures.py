"""Pictures that explain themselves: titles, ranks and #ids, three decimals, zoomed axes, named swatches.

Built from SearchResults over real package photos, as core.render.visuals builds them for the chat
service; the figures' texts are checked, and the PNGs for size and for not being blank.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from bot.composition import build_service
from bot.settings import Settings
from core.chat.context import Chat, Context, User
from core.gallery.engine import Engine
from core.media.colors import DominantColor, color_name, dominant_colors, hex_to_rgb
from core.render.cards import QUERY_TITLE_PX, TITLE_PX, collage_figure, collage_size
from core.render.charts import palette_figure, palette_size, render_palette, score_bars_figure, score_bars_size
from core.render.visuals import bar_label, collage_png, result_tiles, scores_png
from core.search.words import SearchResult

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "hubble", "retina", "china")
LABELS = ("chelsea", "a very long label about a ginger cat asleep on a sunny windowsill", "猫 cat",
          "Ünïcödé café — Ελληνικά", "$5 mug \\beta_1", "")


def results(photos: dict[str, Path], n: int, *, top: float = 1.0, step: float = 0.0007) -> list[SearchResult]:
    """``n`` results over the photos, best first; odd ones were indexed from an operator's file."""
    return [
        SearchResult(
            id=100 + 7 * i, label=LABELS[i % len(LABELS)], description="", path=str(photos[NAMES[i % len(NAMES)]]),
            score=top - step * i, source_path=f"/home/op/Pictures/IMG_{i:04d}.jpg" if i % 2 else None,
        )
        for i in range(n)
    ]


def png(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB"))


def assert_not_blank(arr: np.ndarray) -> None:
    # A card that drew nothing is one flat colour; a real one has text, bars or photos.
    assert float(arr.std()) > 20.0
    assert (arr.min(axis=2) < 128).mean() > 0.01  # some dark ink, not just a faint tint


def texts_of(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]


# --- collage -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 5, 25, 60])
def test_collage_title_ranks_ids_and_scores(photos: dict[str, Path], n: int) -> None:
    found = results(photos, n)
    fig = collage_figure(result_tiles(found), title="Top results for red car")
    texts = texts_of(fig)
    assert texts[0] == "Top results for red car"
    assert len(fig.images) == n
    for rank, r in enumerate(found, 1):
        head = next(t for t in texts if t.startswith(f"{rank}. #{r.id}"))
        assert r.label.startswith(head.removeprefix(f"{rank}. #{r.id}").strip().rstrip("…"))
        assert any(t.startswith(f"{r.score:.3f}") for t in texts)
    # The operator's own file name, never the stored copy's hash name.
    assert any(t.endswith("· IMG_0001.jpg") for t in texts) or n == 1
    arr = png(collage_png(found, title="Top results for red car"))
    assert arr.shape[:2][::-1] == collage_size(n, titled=True)
    assert_not_blank(arr)


def test_near_equal_scores_no_longer_tie(photos: dict[str, Path]) -> None:
    found = results(photos, 3, top=0.9991, step=0.0004)  # 0.999, 0.999 and 0.998 in three decimals...
    texts = texts_of(collage_figure(result_tiles(found)))
    assert [t for t in texts if t[0] == "0"] == ["0.999", "0.999 · IMG_0001.jpg", "0.998"]  # ...all "1.00" in two


def test_collage_with_the_query_photo(photos: dict[str, Path]) -> None:
    found = results(photos, 5)
    query = photos["coffee"].read_bytes()
    arr = png(collage_png(found, query=query))
    assert arr.shape[:2][::-1] == collage_size(5, query=True)
    assert arr.shape[0] == QUERY_TITLE_PX + 240
    # The query's thumbnail sits in the header, left: coffee's dark red cup, not white paper.
    assert float(arr[8:QUERY_TITLE_PX - 8, 12:80].std()) > 20
    with Image.open(photos["coffee"]) as img:
        fig = collage_figure(result_tiles(found), query=img, title="Top 5 for photo")
    assert len(fig.images) == 6 and texts_of(fig)[0] == "Top 5 for photo"
    # An undecodable query photo costs the thumbnail, not the card.
    assert png(collage_png(found, query=b"not an image")).shape[0] == TITLE_PX + 240


def test_collage_without_title_keeps_its_old_size(photos: dict[str, Path]) -> None:
    assert png(collage_png(results(photos, 3))).shape[:2] == (240, 600)


def test_long_unicode_and_negative_captions_fit_their_tile(photos: dict[str, Path]) -> None:
    found = [SearchResult(id=9, label=LABELS[1] * 3, description="", path=str(photos["china"]), score=-0.04321,
                          source_path="/x/" + "very_long_file_name_" * 5 + ".jpg")]
    fig = collage_figure(result_tiles(found), title="q " * 200)
    fig.canvas.draw()  # type: ignore[no-untyped-call]  # matplotlib's canvas draw is unannotated
    width = fig.bbox.width
    assert int(width) == 400  # one tile, widened for the title: the tile spans 100-300
    title, subtitle, *captions = fig.texts
    for text in (title, subtitle):
        box = text.get_window_extent()
        assert box.x0 >= 0 and box.x1 <= width, text.get_text()  # nothing runs off the card
    for text in captions:
        box = text.get_window_extent()
        assert box.x0 >= 100 and box.x1 <= 300, text.get_text()  # nor into a neighbouring tile
    texts = texts_of(fig)
    assert any(t.startswith("-0.043 · very_long") and t.endswith("…") for t in texts)
    assert texts[0].endswith("…")


# --- score bars --------------------------------------------------------------------------------

def axis_cut_marked(fig: Figure) -> bool:
    # The broken-axis strokes are figure-level Line2D artists besides the header's rule.
    return sum(isinstance(a, Line2D) for a in fig.artists) > 1


@pytest.mark.parametrize("n", [1, 5, 25, 60])
def test_scores_chart_ids_title_and_axis_label(photos: dict[str, Path], n: int) -> None:
    found = results(photos, n, step=0.004)
    items = [(bar_label(r), r.score) for r in found]
    fig = score_bars_figure(items, title=f"Scores against {n} images")
    texts = texts_of(fig)
    assert f"Scores against {n} images" in texts
    (ax,) = fig.axes
    assert ax.get_xlabel() == "cosine similarity"
    labels = [t for t in (t.get_text() for t in ax.texts) if t.startswith("#")]
    assert len(labels) == min(n, 25)
    assert all((label + " ").startswith(f"#{r.id} ") for label, r in zip(labels, found[:25], strict=True))
    assert f"{found[0].score:.3f}" in texts
    arr = png(scores_png(found, title=f"Scores against {n} images"))
    assert arr.shape[:2][::-1] == score_bars_size(n)
    assert_not_blank(arr)


def test_high_scores_zoom_the_axis_and_say_so(photos: dict[str, Path]) -> None:
    found = results(photos, 5, step=0.004)  # 1.000 down to 0.984
    fig = score_bars_figure([(bar_label(r), r.score) for r in found])
    lo, hi = fig.axes[0].get_xlim()
    assert 0.9 < lo < 0.984 and 1.0 < hi < 1.01
    assert lo in fig.axes[0].get_xticks()  # the cut's value is printed on the axis
    assert any("not at 0" in t for t in texts_of(fig))  # and where 0 is, in words
    assert axis_cut_marked(fig)
    # Spread-out scores keep 0 on the axis, with no cut to mark.
    spread = score_bars_figure([("a", 0.9), ("b", 0.2)])
    assert spread.axes[0].get_xlim()[0] == 0.0 and not axis_cut_marked(spread)
    assert not any("not at 0" in t for t in texts_of(spread))


def test_negative_scores_show_the_zero_line(photos: dict[str, Path]) -> None:
    fig = score_bars_figure([("#1 a", 0.3), ("#2 b", 0.05), ("#3 c", -0.12)])
    lo, hi = fig.axes[0].get_xlim()
    assert lo < -0.12 < 0 < 0.3 < hi
    assert "-0.120" in texts_of(fig)


# --- palette -----------------------------------------------------------------------------------

def swatch(hex_value: str, percent: float) -> DominantColor:
    rgb = hex_to_rgb(hex_value)
    return DominantColor(hex_value, color_name(rgb), percent, rgb)


NARROW = [swatch("#61593f", 70), swatch("#fafad2", 12), swatch("#556b2f", 8), swatch("#ffffff", 5),
          swatch("#000080", 3), swatch("#ff0000", 2)]


@pytest.mark.parametrize("photo", ["china", "coffee", "flower", "rocket"])
def test_every_swatch_keeps_its_name_and_hex(photos: dict[str, Path], photo: str) -> None:
    with Image.open(photos[photo]) as img:
        colors = dominant_colors(img)
    check_palette(colors)


def test_narrow_swatches_go_to_a_legend() -> None:
    fig = check_palette(NARROW)
    texts = texts_of(fig)
    assert "grayish brown\n#61593f\n70.0%" in texts  # wide: name, hex and share stacked inside
    assert "6. red · #ff0000 · 2.0%" in texts and "6" in texts  # narrow: numbered, listed below
    assert palette_size(NARROW)[1] > 120


def check_palette(colors: list[DominantColor]) -> Figure:
    fig = palette_figure(colors)
    joined = "\n".join(texts_of(fig))
    for c in colors:
        assert c.name in " ".join(joined.split()) and c.hex in joined, c  # never shortened away, however narrow
    arr = png(render_palette(colors))
    assert arr.shape[:2][::-1] == palette_size(colors)
    assert_not_blank(arr)
    return fig


def test_china_hillside_is_not_dimgray(photos: dict[str, Path]) -> None:
    with Image.open(photos["china"]) as img:
        names = {c.hex: c.name for c in dominant_colors(img)}
    assert all(name not in ("dimgray", "dim gray") for name in names.values())
    assert color_name(hex_to_rgb("#61593f")) == "grayish brown"


# --- the chat service passes the titles ---------------------------------------------------------

async def test_service_titles_its_cards(engine: Engine, settings: Settings, photos: dict[str, Path],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import core.chat.results
    import core.chat.service

    seen: dict[str, Any] = {}

    def spy(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> bytes:
            seen[name] = kwargs
            return bytes(fn(*args, **kwargs))
        return wrapper

    monkeypatch.setattr(core.chat.results, "collage_png", spy("collage", core.chat.results.collage_png))
    monkeypatch.setattr(core.chat.service, "scores_png", spy("scores", core.chat.service.scores_png))
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), engine)
    for name in ("rocket", "coffee", "chelsea"):
        await engine.add_image(photos[name], label=name)
    ctx = Context(Chat("telegram", "1"), User("telegram", "1"))
    scores = await service.scores(ctx, photos["coffee"].read_bytes())
    assert scores is not None and seen["scores"]["title"] == "Scores against 3 images"
    found = await service.find(ctx, "coffee")
    assert found is not None
    top = await service.press(ctx, found.buttons[1].data)
    assert seen["collage"]["title"] == "Top 3 for coffee"
    assert top.image is not None and png(top.image).shape[:2] == (TITLE_PX + 240, 600)
