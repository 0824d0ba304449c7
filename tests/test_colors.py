"""Dominant colours: K-Means shares, colour names in Lab, colour families and chat colour words."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.colors import package_photo_files, top_family_agreement
from core.media import palette
from core.media.colors import (
    COLOR_FAMILIES,
    COMMON_COLORS,
    CSS_COLORS,
    NAMED_COLORS,
    DominantColor,
    color_families,
    color_family,
    color_name,
    css_display_name,
    dominant_colors,
    hex_to_rgb,
    parse_color_word,
    rgb_to_lab,
)
from core.media.images import decode_image
from core.media.palette import dominant_colors_batch


def banded(size: int = 100) -> Image.Image:
    """60% pure red, 30% pure blue, 10% white, in horizontal bands."""
    arr = np.empty((size, size, 3), dtype=np.uint8)
    arr[: size * 6 // 10] = (255, 0, 0)
    arr[size * 6 // 10: size * 9 // 10] = (0, 0, 255)
    arr[size * 9 // 10:] = (255, 255, 255)
    return Image.fromarray(arr)


def test_banded_image_shares_names_and_order() -> None:
    colors = dominant_colors(banded(), k=3)
    assert [c.name for c in colors] == ["red", "blue", "white"]
    for got, want in zip(colors, (60.0, 30.0, 10.0), strict=True):
        assert abs(got.percent - want) <= 3.0, colors
    assert sum(c.percent for c in colors) == pytest.approx(100.0)
    assert colors[0].rgb == (255, 0, 0) or color_name(colors[0].rgb) == "red"


def test_to_dict_shape_and_hex_format() -> None:
    colors = dominant_colors(banded(), k=3)
    for c in colors:
        assert re.fullmatch(r"#[0-9a-f]{6}", c.hex)
        assert hex_to_rgb(c.hex) == c.rgb
        d = c.to_dict()
        assert set(d) == {"hex", "name", "percent"}
        assert d["percent"] == round(c.percent, 1)
    assert DominantColor("#ff0000", "red", 33.333, (255, 0, 0)).to_dict() == {
        "hex": "#ff0000", "name": "red", "percent": 33.3,
    }


def test_large_image_is_downsampled_to_same_answer() -> None:
    # 1000 px bands: the sample is 96 px, shares must survive the BOX downsampling.
    colors = dominant_colors(banded(1000), k=3)
    assert [c.name for c in colors] == ["red", "blue", "white"]
    assert abs(colors[0].percent - 60.0) <= 3.0


def test_single_colour_image_is_one_colour_at_100() -> None:
    colors = dominant_colors(Image.new("RGB", (50, 30), (0, 128, 0)), k=5)
    assert len(colors) == 1
    assert colors[0].percent == pytest.approx(100.0)
    assert colors[0].hex == "#008000" and colors[0].name == "green"


def test_fewer_distinct_colours_than_k() -> None:
    img = Image.new("RGB", (40, 40), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 20, 40))
    colors = dominant_colors(img, k=8, sample_side=40)
    assert sorted(c.name for c in colors) == ["black", "white"]
    assert [c.percent for c in colors] == pytest.approx([50.0, 50.0])


def test_non_rgb_modes_are_accepted() -> None:
    rgba = Image.new("RGBA", (20, 20), (0, 0, 255, 255))
    grey = Image.new("L", (20, 20), 255)
    assert dominant_colors(rgba)[0].name == "blue"
    assert dominant_colors(grey)[0].name == "white"


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_is_an_error(k: int) -> None:
    with pytest.raises(ValueError):
        dominant_colors(banded(), k=k)


def test_deterministic(photos: dict[str, Path]) -> None:
    with Image.open(photos["chelsea"]) as img:
        img.load()
        first = dominant_colors(img, k=5)
        assert dominant_colors(img, k=5) == first
        assert dominant_colors(img.copy(), k=5, seed=0) == first


def test_real_photo_gives_k_colours_summing_to_100(photos: dict[str, Path]) -> None:
    with Image.open(photos["coffee"]) as img:
        colors = dominant_colors(img, k=5)
    assert len(colors) == 5
    assert sum(c.percent for c in colors) == pytest.approx(100.0)
    assert [c.percent for c in colors] == sorted((c.percent for c in colors), reverse=True)
    assert all(c.name in NAMED_COLORS for c in colors)
    # Coffee in a red cup on a wooden table: warm colours, no blue or green.
    assert {"blue", "green"}.isdisjoint(color_families(colors, min_percent=10))


def test_palette_table() -> None:
    assert len(CSS_COLORS) == 141  # 148 CSS names less the seven "grey" spellings
    assert not any("grey" in name for name in CSS_COLORS)
    assert CSS_COLORS["green"] == "#008000" and CSS_COLORS["lime"] == "#00ff00"
    assert CSS_COLORS["rebeccapurple"] == "#663399"


def test_named_colours_table() -> None:
    # Every CSS colour under its spaced name, plus the common names, none shadowing a CSS one.
    assert len(NAMED_COLORS) == len(CSS_COLORS) + len(COMMON_COLORS)
    assert NAMED_COLORS["dark olive green"] == CSS_COLORS["darkolivegreen"]
    assert NAMED_COLORS["khaki"] == CSS_COLORS["khaki"]  # CSS wins over xkcd's khaki
    assert all(re.fullmatch(r"#[0-9a-f]{6}", h) for h in NAMED_COLORS.values())
    assert not any("grey" in name for name in NAMED_COLORS)


def test_common_colours_are_the_xkcd_survey_values() -> None:
    from matplotlib.colors import XKCD_COLORS

    for name, value in COMMON_COLORS.items():
        assert XKCD_COLORS["xkcd:" + name.replace("gray", "grey")] == value, name


@pytest.mark.parametrize(("css", "shown"), [
    ("darkolivegreen", "dark olive green"), ("lightgoldenrodyellow", "light goldenrod yellow"),
    ("mediumvioletred", "medium violet red"), ("dimgray", "dim gray"), ("lightcoral", "light coral"),
    ("red", "red"), ("firebrick", "firebrick"), ("cornsilk", "cornsilk"), ("seashell", "seashell"),
])
def test_css_display_name(css: str, shown: str) -> None:
    assert css_display_name(css) == shown


def test_every_css_display_name_spells_its_css_name() -> None:
    # The shown name always types back as the same CSS colour in a color: filter.
    for css in CSS_COLORS:
        assert css_display_name(css).replace(" ", "") == css
        assert parse_color_word(css_display_name(css)) == color_family(hex_to_rgb(CSS_COLORS[css]))


@pytest.mark.parametrize(("hex_value", "name"), [
    ("#61593f", "grayish brown"),  # china.jpg's hillside: CSS alone called it "dimgray"
    ("#61583f", "grayish brown"), ("#7a6a4f", "grayish brown"), ("#b76534", "copper"),
    ("#556b2f", "dark olive green"), ("#696969", "dim gray"), ("#2e3a54", "dark gray blue"),
])
def test_finer_names_for_muted_colours(hex_value: str, name: str) -> None:
    assert color_name(hex_to_rgb(hex_value)) == name


def test_finer_names_do_not_change_families() -> None:
    # The filter's families come from the colour, never from the name it is shown under.
    assert color_name(hex_to_rgb("#61593f")) not in ("dimgray", "dim gray")
    assert color_family(hex_to_rgb("#61593f")) == "brown"


def test_lab_conversion_reference_values() -> None:
    np.testing.assert_allclose(rgb_to_lab((255, 255, 255)), [100.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(rgb_to_lab((0, 0, 0)), [0.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(rgb_to_lab((255, 0, 0)), [53.24, 80.09, 67.20], atol=0.05)


@pytest.mark.parametrize(("rgb", "name"), [
    ((255, 0, 0), "red"), ((0, 0, 255), "blue"), ((255, 255, 255), "white"), ((0, 0, 0), "black"),
    ((0, 128, 0), "green"), ((0, 255, 0), "lime"), ((128, 128, 128), "gray"),
    ((250, 8, 5), "red"), ((255, 166, 2), "orange"), ((0, 0, 120), "navy"),
])
def test_color_name(rgb: tuple[int, int, int], name: str) -> None:
    assert color_name(rgb) == name


@pytest.mark.parametrize(("rgb", "family"), [
    ((255, 0, 0), "red"), ((139, 0, 0), "red"), ((220, 20, 60), "red"),
    ((255, 192, 203), "pink"), ((255, 105, 180), "pink"),
    ((255, 165, 0), "orange"), ((255, 140, 0), "orange"),
    ((139, 69, 19), "brown"), ((160, 82, 45), "brown"), ((210, 180, 140), "brown"),
    ((255, 255, 0), "yellow"), ((255, 215, 0), "yellow"),
    ((0, 128, 0), "green"), ((0, 255, 0), "green"), ((154, 205, 50), "green"),
    ((0, 0, 255), "blue"), ((0, 0, 128), "blue"), ((135, 206, 235), "blue"), ((0, 128, 128), "blue"),
    ((128, 0, 128), "purple"), ((75, 0, 130), "purple"),
    ((0, 0, 0), "black"), ((20, 20, 22), "black"),
    ((255, 255, 255), "white"), ((250, 250, 245), "white"),
    ((128, 128, 128), "gray"), ((192, 192, 192), "gray"), ((112, 128, 144), "gray"),
])
def test_color_family(rgb: tuple[int, int, int], family: str) -> None:
    assert color_family(rgb) == family


def test_every_css_colour_has_a_family() -> None:
    families = {color_family(hex_to_rgb(h)) for h in CSS_COLORS.values()}
    assert families == set(COLOR_FAMILIES)


@pytest.mark.parametrize(("word", "family"), [
    ("Crimson", "red"), ("grey", "gray"), ("GRAY", "gray"), ("red", "red"), ("brown", "brown"),
    ("navy", "blue"), ("Dark Grey", "gray"), ("light-pink", "pink"), ("SaddleBrown", "brown"),
    ("lime", "green"), ("  white ", "white"), ("banana", None), ("", None), ("reddish", None),
])
def test_parse_color_word(word: str, family: str | None) -> None:
    assert parse_color_word(word) == family


def test_family_names_are_parsed_to_themselves() -> None:
    # "brown" as a word means the family, even though CSS "brown" (#a52a2a) is a dull red.
    assert all(parse_color_word(f) == f for f in COLOR_FAMILIES)


def test_color_families_threshold_and_order() -> None:
    colors = [
        DominantColor("#1010a0", "darkblue", 40.0, (16, 16, 160)),
        DominantColor("#ff0000", "red", 25.0, (255, 0, 0)),
        DominantColor("#0000ff", "blue", 20.0, (0, 0, 255)),
        DominantColor("#ffffff", "white", 9.0, (255, 255, 255)),
        DominantColor("#00ff00", "lime", 6.0, (0, 255, 0)),
    ]
    assert color_families(colors) == ["blue", "red"]
    assert color_families(colors, min_percent=5.0) == ["blue", "red", "white", "green"]
    assert color_families(colors, min_percent=50.0) == []
    assert color_families(list(reversed(colors))) == ["blue", "red"]


def test_banded_image_families() -> None:
    assert color_families(dominant_colors(banded(), k=3)) == ["red", "blue", "white"]


# --- dominant_colors_batch: the vectorised batch (core.media.palette) ---------------------------


def test_batch_top_family_agrees_with_kmeans_on_package_photos() -> None:
    # Every picture scikit-image, matplotlib and scikit-learn ship, greyscale ones included. The
    # reference against itself with seeds 1 to 5 keeps the top family of 29 to 31 of them.
    paths = package_photo_files()
    assert len(paths) >= 20, [str(p) for p in paths]
    agree, total, differ = top_family_agreement(paths)
    print(f"top colour family: batch == K-Means on {agree} of {total} photos ({agree / total:.1%}); differ: {differ}")
    assert agree / total >= 0.95, (agree, total, differ)


def _mixed_batch(photos: dict[str, Path]) -> list[Image.Image]:
    """Real photos of different sizes, a greyscale and a flat picture: padding and every path."""
    images = [decode_image(photos[name]).image for name in ("chelsea", "coffee", "rocket", "hubble")]
    grey = images[0].convert("L")
    return [*images, grey, banded(), Image.new("RGB", (33, 17), (12, 200, 40)), banded(7)]


def test_batch_is_deterministic_and_independent_of_the_batch(photos: dict[str, Path]) -> None:
    images = _mixed_batch(photos)
    first = dominant_colors_batch(images)
    assert dominant_colors_batch(images) == first
    assert dominant_colors_batch(images[::-1]) == first[::-1]
    for image, colours in zip(images, first, strict=True):
        assert dominant_colors_batch([image]) == [colours]


def test_batch_chunks_give_the_same_colours(photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    images = _mixed_batch(photos)
    whole = dominant_colors_batch(images)
    monkeypatch.setattr(palette, "_CHUNK", 3)
    assert dominant_colors_batch(images) == whole


def test_batch_real_photos_give_k_colours_summing_to_100(photos: dict[str, Path]) -> None:
    images = [decode_image(p).image for p in photos.values()]
    for colors in dominant_colors_batch(images):
        assert len(colors) == 5
        assert sum(c.percent for c in colors) == pytest.approx(100.0)
        assert [(-c.percent, c.hex) for c in colors] == sorted((-c.percent, c.hex) for c in colors)
        for c in colors:
            assert hex_to_rgb(c.hex) == c.rgb and c.name == color_name(c.rgb)


def test_batch_flat_image_is_one_colour_at_100() -> None:
    [colors] = dominant_colors_batch([Image.new("RGB", (640, 480), (0, 128, 0))])
    assert colors == [DominantColor("#008000", "green", 100.0, (0, 128, 0))]


def test_batch_two_colours_with_their_shares() -> None:
    img = Image.new("RGB", (200, 100), (255, 255, 255))
    img.paste((0, 0, 128), (0, 0, 60, 100))  # 30% navy; reduced by 4, the edge stays on a block border
    [colors] = dominant_colors_batch([img], k=5)
    assert [(c.hex, c.name) for c in colors] == [("#ffffff", "white"), ("#000080", "navy")]
    assert [c.percent for c in colors] == pytest.approx([70.0, 30.0])


def test_batch_k_above_distinct_colours() -> None:
    img = Image.new("RGB", (40, 40), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 20, 40))
    img.paste((255, 0, 0), (20, 0, 30, 40))
    [colors] = dominant_colors_batch([img], k=8)
    # Equal shares come in hex order: #ff0000 before #ffffff.
    assert [(c.name, c.percent) for c in colors] == [("black", 50.0), ("red", 25.0), ("white", 25.0)]


def test_batch_empty_is_empty() -> None:
    assert dominant_colors_batch([]) == []


def test_batch_banded_image_matches_the_reference() -> None:
    for size in (100, 1000):  # 1000: reduced to 63 px, the bands' shares survive
        [colors] = dominant_colors_batch([banded(size)], k=3)
        assert [(c.hex, c.name) for c in colors] == [(c.hex, c.name) for c in dominant_colors(banded(size), k=3)]
        for got, want in zip(colors, (60.0, 30.0, 10.0), strict=True):
            assert abs(got.percent - want) <= 3.0, colors
    assert color_families(dominant_colors_batch([banded()], k=3)[0]) == ["red", "blue", "white"]


def test_batch_cluster_colour_is_its_majority_or_its_mean() -> None:
    # Left half exact white (the majority of its cluster), right half dull red noise (no colour
    # holds half its cluster: the mean). 64 px wide, so nothing is downsampled.
    rng = np.random.default_rng(3)
    arr = np.full((32, 64, 3), 255, dtype=np.uint8)
    arr[:, 32:] = np.stack([rng.integers(120, 180, (32, 32)), rng.integers(10, 30, (32, 32)),
                            rng.integers(10, 30, (32, 32))], axis=-1)
    [colors] = dominant_colors_batch([Image.fromarray(arr)], k=2)
    mean = tuple(int(v) for v in np.rint(arr[:, 32:].reshape(-1, 3).mean(axis=0)))
    assert sorted((c.rgb, c.percent) for c in colors) == sorted([((255, 255, 255), 50.0), (mean, 50.0)])


def test_batch_single_cluster_is_the_mean() -> None:
    # 60% red, 30% blue, 10% white: (178.5, 25.5, 102), rounded half to even as np.rint does.
    [colors] = dominant_colors_batch([banded()], k=1)
    assert [(c.rgb, c.percent) for c in colors] == [((178, 26, 102), 100.0)]


def test_batch_non_rgb_modes_are_accepted() -> None:
    rgba = Image.new("RGBA", (20, 20), (0, 0, 255, 255))
    grey = Image.new("L", (200, 100), 255)
    palette_image = Image.new("RGB", (30, 30), (255, 0, 0)).convert("P")
    got = dominant_colors_batch([rgba, grey, palette_image])
    assert [c[0].name for c in got] == ["blue", "white", "red"]


@pytest.mark.parametrize(("k", "side"), [(0, 64), (-1, 64), (5, 0)])
def test_batch_bad_arguments_are_errors(k: int, side: int) -> None:
    with pytest.raises(ValueError):
        dominant_colors_batch([banded()], k=k, sample_side=side)


def test_batch_names_are_color_name() -> None:
    # The batch names all its colours in one array pass; it must pick what color_name picks.
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(0, 256, 17)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    palette_rgb = np.array([hex_to_rgb(h) for h in NAMED_COLORS.values()])
    rgb = np.concatenate([grid, palette_rgb, rng.integers(0, 256, (2000, 3))])
    assert palette._color_names(rgb) == [color_name(tuple(int(v) for v in c)) for c in rgb]
