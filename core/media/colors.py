"""Dominant colours of an image (K-Means on a downsampled copy) and their names and families.

Names come from the CSS named colours plus common names from the xkcd colour survey, matched in
CIELAB so "nearest" means nearest to the eye; families are the eleven broad words a chat colour
filter (``/find car color:red``) understands, and do not depend on the names.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from threadpoolctl import ThreadpoolController  # a scikit-learn dependency

# The CSS Color Module Level 4 named colours (148 names); the seven "grey" spellings are folded
# into "gray" (parse_color_word still accepts them), which leaves 141 entries.
CSS_COLORS: dict[str, str] = {
    "aliceblue": "#f0f8ff", "antiquewhite": "#faebd7", "aqua": "#00ffff", "aquamarine": "#7fffd4",
    "azure": "#f0ffff", "beige": "#f5f5dc", "bisque": "#ffe4c4", "black": "#000000",
    "blanchedalmond": "#ffebcd", "blue": "#0000ff", "blueviolet": "#8a2be2", "brown": "#a52a2a",
    "burlywood": "#deb887", "cadetblue": "#5f9ea0", "chartreuse": "#7fff00", "chocolate": "#d2691e",
    "coral": "#ff7f50", "cornflowerblue": "#6495ed", "cornsilk": "#fff8dc", "crimson": "#dc143c",
    "cyan": "#00ffff", "darkblue": "#00008b", "darkcyan": "#008b8b", "darkgoldenrod": "#b8860b",
    "darkgray": "#a9a9a9", "darkgreen": "#006400", "darkkhaki": "#bdb76b", "darkmagenta": "#8b008b",
    "darkolivegreen": "#556b2f", "darkorange": "#ff8c00", "darkorchid": "#9932cc", "darkred": "#8b0000",
    "darksalmon": "#e9967a", "darkseagreen": "#8fbc8f", "darkslateblue": "#483d8b",
    "darkslategray": "#2f4f4f", "darkturquoise": "#00ced1", "darkviolet": "#9400d3", "deeppink": "#ff1493",
    "deepskyblue": "#00bfff", "dimgray": "#696969", "dodgerblue": "#1e90ff", "firebrick": "#b22222",
    "floralwhite": "#fffaf0", "forestgreen": "#228b22", "fuchsia": "#ff00ff", "gainsboro": "#dcdcdc",
    "ghostwhite": "#f8f8ff", "gold": "#ffd700", "goldenrod": "#daa520", "gray": "#808080", "green": "#008000",
    "greenyellow": "#adff2f", "honeydew": "#f0fff0", "hotpink": "#ff69b4", "indianred": "#cd5c5c",
    "indigo": "#4b0082", "ivory": "#fffff0", "khaki": "#f0e68c", "lavender": "#e6e6fa",
    "lavenderblush": "#fff0f5", "lawngreen": "#7cfc00", "lemonchiffon": "#fffacd", "lightblue": "#add8e6",
    "lightcoral": "#f08080", "lightcyan": "#e0ffff", "lightgoldenrodyellow": "#fafad2",
    "lightgray": "#d3d3d3", "lightgreen": "#90ee90", "lightpink": "#ffb6c1", "lightsalmon": "#ffa07a",
    "lightseagreen": "#20b2aa", "lightskyblue": "#87cefa", "lightslategray": "#778899",
    "lightsteelblue": "#b0c4de", "lightyellow": "#ffffe0", "lime": "#00ff00", "limegreen": "#32cd32",
    "linen": "#faf0e6", "magenta": "#ff00ff", "maroon": "#800000", "mediumaquamarine": "#66cdaa",
    "mediumblue": "#0000cd", "mediumorchid": "#ba55d3", "mediumpurple": "#9370db",
    "mediumseagreen": "#3cb371", "mediumslateblue": "#7b68ee", "mediumspringgreen": "#00fa9a",
    "mediumturquoise": "#48d1cc", "mediumvioletred": "#c71585", "midnightblue": "#191970",
    "mintcream": "#f5fffa", "mistyrose": "#ffe4e1", "moccasin": "#ffe4b5", "navajowhite": "#ffdead",
    "navy": "#000080", "oldlace": "#fdf5e6", "olive": "#808000", "olivedrab": "#6b8e23", "orange": "#ffa500",
    "orangered": "#ff4500", "orchid": "#da70d6", "palegoldenrod": "#eee8aa", "palegreen": "#98fb98",
    "paleturquoise": "#afeeee", "palevioletred": "#db7093", "papayawhip": "#ffefd5", "peachpuff": "#ffdab9",
    "peru": "#cd853f", "pink": "#ffc0cb", "plum": "#dda0dd", "powderblue": "#b0e0e6", "purple": "#800080",
    "rebeccapurple": "#663399", "red": "#ff0000", "rosybrown": "#bc8f8f", "royalblue": "#4169e1",
    "saddlebrown": "#8b4513", "salmon": "#fa8072", "sandybrown": "#f4a460", "seagreen": "#2e8b57",
    "seashell": "#fff5ee", "sienna": "#a0522d", "silver": "#c0c0c0", "skyblue": "#87ceeb",
    "slateblue": "#6a5acd", "slategray": "#708090", "snow": "#fffafa", "springgreen": "#00ff7f",
    "steelblue": "#4682b4", "tan": "#d2b48c", "teal": "#008080", "thistle": "#d8bfd8", "tomato": "#ff6347",
    "turquoise": "#40e0d0", "violet": "#ee82ee", "wheat": "#f5deb3", "white": "#ffffff",
    "whitesmoke": "#f5f5f5", "yellow": "#ffff00", "yellowgreen": "#9acd32",
}

# Common names the CSS list lacks, from the xkcd colour survey (CC0, matplotlib ships it as
# XKCD_COLORS), where thousands of people named colours: photo colours are mostly muted browns,
# olives and greys, for which CSS offers little better than "dimgray". Names CSS already has keep
# the CSS value (xkcd's "khaki" differs), so a shown name typed back as color:khaki means the same.
COMMON_COLORS: dict[str, str] = {
    # browns and neutrals
    "taupe": "#b9a281", "dark taupe": "#7f684e", "umber": "#b26400", "olive brown": "#645403",
    "grayish brown": "#7a6a4f", "brownish gray": "#86775f", "warm gray": "#978a84", "mud": "#735c12",
    "coffee": "#a6814c", "mocha": "#9d7651", "sand": "#e2ca76", "stone": "#ada587", "putty": "#beae8a",
    "camel": "#c69f59", "caramel": "#af6f09", "ochre": "#bf9005", "rust": "#a83c09", "sepia": "#985e2b",
    "chestnut": "#742802", "mahogany": "#4a0100", "cinnamon": "#ac4f06", "light brown": "#ad8150",
    "dark brown": "#341c02", "milk chocolate": "#7f4e1e", "pale brown": "#b1916e", "dark beige": "#ac9362",
    "dirt brown": "#836539", "clay": "#b66a50", "fawn": "#cfaf7b", "cream": "#ffffc2", "off white": "#ffffe4",
    # greens
    "olive green": "#677a04", "dark olive": "#373e02", "army green": "#4b5d16", "moss green": "#658b38",
    "drab": "#828344", "sage": "#87ae73", "grayish green": "#82a67d", "mint": "#9ffeb0", "pine": "#2b5d34",
    "hunter green": "#0b4008", "dark forest green": "#002d04", "dark teal": "#014d4e", "emerald": "#01a049",
    "jade": "#1fa774", "kelly green": "#02ab2e",
    "grass green": "#3f9b0b", "avocado": "#90b134", "pistachio": "#c0fa8b",
    # blues and cool greys
    "navy blue": "#001146", "denim": "#3b638c", "cobalt": "#1e488f", "baby blue": "#a2cffe",
    "periwinkle": "#8e82fe", "cerulean": "#0485d1", "petrol": "#005f6a", "ocean": "#017b92",
    "dusty blue": "#5a86ad", "grayish blue": "#5e819d", "ice blue": "#d7fffe", "slate": "#516572",
    "steel": "#738595", "dark gray blue": "#29465b", "dusk": "#4e5481", "bluish gray": "#748b97",
    "cool gray": "#95a3a6", "gunmetal": "#536267",
    "charcoal": "#343837",
    # reds, pinks and purples
    "burgundy": "#610023", "wine": "#80013f", "brick red": "#8f1402", "scarlet": "#be0119",
    "cherry": "#cf0234", "raspberry": "#b00149", "rose": "#cf6275", "dusty rose": "#c0737a",
    "dusty pink": "#d58a94", "blush": "#f29e8e", "terracotta": "#ca6641", "peach": "#ffb07c",
    "apricot": "#ffb16d", "mauve": "#ae7181", "lilac": "#cea2fd", "amethyst": "#9b5fc0", "grape": "#6c3461",
    "eggplant": "#380835",
    # yellows and oranges
    "mustard": "#ceb301", "lemon": "#fdff52", "butter": "#ffff81", "straw": "#fcf679", "amber": "#feb308",
    "tangerine": "#ff9408", "pumpkin": "#e17701", "burnt orange": "#c04e01", "copper": "#b66325",
    "bronze": "#a87900",
}

COLOR_FAMILIES: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray",
)

# One KMeans start (k-means++ seeding, scikit-learn's own default): three cost twice the time for
# the same colours on <= 96x96 samples, time that ingest takes from the CLIP encoder.
_N_INIT = 1
# KMeans runs OpenMP threads; on <= 9216 points they only cost, and on a busy 2-core host
# (CLIP inference beside us) spinning workers made single calls take 500+ ms. The limit is
# set with omp_set_num_threads, which is per calling thread, so worker threads do not race.
_OPENMP = ThreadpoolController()


@dataclass(frozen=True)
class DominantColor:
    """One cluster of an image's pixels: its colour, nearest common name and share of the image (0-100)."""

    hex: str
    name: str
    percent: float
    rgb: tuple[int, int, int]

    def to_dict(self) -> dict[str, object]:
        return {"hex": self.hex, "name": self.name, "percent": round(float(self.percent), 1)}


# --- colour science --------------------------------------------------------------------------

# sRGB (D65) -> XYZ, IEC 61966-2-1.
_RGB_TO_XYZ = np.array([
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.1191920, 0.9503041],
])
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def rgb_to_lab(rgb: np.ndarray | Sequence[int]) -> np.ndarray:
    """CIELAB (D65) of 8-bit sRGB colours; accepts one colour or an ``(n, 3)`` array."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _D65_WHITE
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1)


def hex_to_rgb(value: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` (or ``"rrggbb"``) to an ``(r, g, b)`` tuple."""
    v = value.lstrip("#")
    if len(v) != 6:
        raise ValueError(f"not a #rrggbb colour: {value!r}")
    return int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16)


def rgb_to_hex(rgb: Sequence[int]) -> str:
    """``(r, g, b)`` to lowercase ``"#rrggbb"``."""
    r, g, b = (int(x) for x in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


# Words the CSS names are run together from: "darkolivegreen" is shown as "dark olive green",
# which reads at a glance and matches the spaced names of COMMON_COLORS. Names not made only of
# these words (cornsilk, firebrick, honeydew) stay whole.
_CSS_WORDS = frozenset({
    "alice", "antique", "blanched", "almond", "blue", "violet", "burly", "wood", "cadet", "cornflower",
    "dark", "deep", "dim", "dodger", "floral", "forest", "ghost", "white", "green", "yellow", "hot", "pink",
    "indian", "red", "lavender", "blush", "lawn", "lemon", "chiffon", "light", "lime", "medium", "midnight",
    "mint", "cream", "misty", "rose", "navajo", "old", "lace", "olive", "drab", "orange", "pale", "papaya",
    "whip", "peach", "puff", "powder", "rebecca", "purple", "rosy", "brown", "royal", "saddle", "sandy",
    "sea", "sky", "slate", "spring", "steel", "smoke", "gray", "cyan", "goldenrod", "khaki", "magenta",
    "orchid", "salmon", "aquamarine", "turquoise", "coral",
})


def css_display_name(css_name: str) -> str:
    """A CSS colour name with its words spaced: ``"lightgoldenrodyellow"`` -> ``"light goldenrod yellow"``."""
    # best[i]: the fewest known words spelling css_name[:i], or None when none do.
    best: list[list[str] | None] = [[]] + [None] * len(css_name)
    for end in range(1, len(css_name) + 1):
        for start in range(end):
            head, word = best[start], css_name[start:end]
            if head is not None and word in _CSS_WORDS:
                candidate = [*head, word]
                current = best[end]
                if current is None or len(candidate) < len(current):
                    best[end] = candidate
    words = best[-1]
    return " ".join(words) if words else css_name


# Every shown name -> hex: the CSS colours (spaced) first, so an exact CSS colour keeps its CSS
# name when a common name happens to be equally near, then the common names CSS lacks.
NAMED_COLORS: dict[str, str] = {css_display_name(name): value for name, value in CSS_COLORS.items()}
NAMED_COLORS.update({name: value for name, value in COMMON_COLORS.items() if name not in NAMED_COLORS})

_PALETTE_NAMES: tuple[str, ...] = tuple(NAMED_COLORS)
_PALETTE_LAB: np.ndarray = rgb_to_lab(np.array([hex_to_rgb(h) for h in NAMED_COLORS.values()]))


def color_name(rgb: Sequence[int]) -> str:
    """The name in :data:`NAMED_COLORS` nearest to ``rgb`` by Euclidean distance in CIELAB (Delta E 1976).

    Lab distance follows perceived difference far better than RGB distance, which
    over-weights differences among dark colours and under-weights greens. The name is for
    people only: filters use :func:`color_family`, which never looks at it.
    """
    d = np.sum((_PALETTE_LAB - rgb_to_lab(rgb)) ** 2, axis=1)
    return _PALETTE_NAMES[int(np.argmin(d))]  # argmin keeps the first of equal colours (aqua/cyan)


def color_family(rgb: Sequence[int]) -> str:
    """The broad family (one of :data:`COLOR_FAMILIES`) a colour belongs to.

    Achromatic colours are told apart by Lab chroma and lightness (HSL saturation is high for
    near-black colours, so it cannot judge greyness). Chromatic colours are split by HSL hue,
    then lightness and saturation separate brown from orange/red/yellow and pink from red/magenta.
    """
    r, g, b = (int(x) for x in rgb)
    lightness, a, bb = (float(x) for x in rgb_to_lab((r, g, b)))
    chroma = float(np.hypot(a, bb))
    if lightness < 10:  # too dark to show a hue, even navy (L 13) stays above this
        return "black"
    if chroma < 13 or (lightness > 92 and chroma < 15):  # greys and off-whites (ivory, linen)
        if lightness > 90:
            return "white"
        return "black" if lightness < 25 else "gray"
    h, _, s = colorsys.rgb_to_hls(r / 255, g / 255, b / 255)
    hue = h * 360
    if hue >= 345 or hue < 15:
        if lightness > 75:
            return "pink"
        # Desaturated dark reds (CSS brown, rosybrown) read as brown; maroon stays red.
        if (s < 0.65 and lightness < 50) or (s < 0.4 and lightness < 70):
            return "brown"
        return "red"
    if hue < 40:
        # Dark, dull or pale orange is brown: chocolate, sienna, tan, wheat; orangered stays orange.
        if lightness < 45 or (lightness < 62 and s < 0.9) or chroma < 35 or (s < 0.65 and lightness < 85):
            return "brown"
        return "orange"
    if hue < 70:
        if lightness < 55:  # dark yellow: olive reads green, dark gold reads brown
            return "green" if hue >= 55 else "brown"
        return "yellow"
    if hue < 170:
        return "green"
    if hue < 255:
        return "blue"
    if hue < 290:
        return "purple"
    if hue < 320:
        return "pink" if lightness > 82 else "purple"
    return "purple" if lightness < 30 else "pink"


def _canonical(word: str) -> str:
    # "Dark Grey", "dark-grey" and "darkgrey" all mean the CSS "darkgray".
    w = "".join(word.casefold().split()).replace("-", "").replace("_", "")
    return w.replace("grey", "gray")


def parse_color_word(word: str) -> str | None:
    """The family named by ``word``: a family name or any CSS colour name, else None.

    Case, spaces and hyphens are ignored and "grey" is read as "gray", so "Crimson" gives
    "red", "Light Grey" (CSS lightgray) gives "gray", and "banana" gives None.
    """
    w = _canonical(word)
    if w in COLOR_FAMILIES:
        return w
    hex_value = CSS_COLORS.get(w)
    return color_family(hex_to_rgb(hex_value)) if hex_value else None


def color_families(colors: Sequence[DominantColor], min_percent: float = 10.0) -> list[str]:
    """Distinct families of the colours holding at least ``min_percent`` of the image.

    Ordered by share: each family appears where its largest qualifying colour ranks. This is
    the list stored per image for the chat colour filter.
    """
    families: dict[str, None] = {}
    for c in sorted(colors, key=lambda c: -c.percent):
        if c.percent >= min_percent:
            families.setdefault(color_family(c.rgb), None)
    return list(families)


# --- clustering --------------------------------------------------------------------------------

def _sample_pixels(image: Image.Image, sample_side: int) -> np.ndarray:
    img = image if image.mode == "RGB" else image.convert("RGB")
    w, h = img.size
    scale = sample_side / max(w, h)
    if scale < 1:
        # BOX averages every source pixel once: fast, and a tiny red flag still tints its cell.
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = img.resize(size, Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8).reshape(-1, 3)


def _representatives(
    distinct: np.ndarray, counts: np.ndarray, labels: np.ndarray, means: np.ndarray, weights: np.ndarray,
) -> np.ndarray:
    """Each cluster's colour: its most common pixel colour if that is most of it, else its mean.

    Flat areas (graphics, a painted wall) are one exact colour plus a few pixels blended at
    their edges by downsampling; the mean would drift (white becomes "ghostwhite" next to blue).
    Photo clusters have no majority colour, and their mean is the honest summary.
    """
    out: np.ndarray = means.copy()
    for j in range(len(means)):
        members = np.flatnonzero(labels == j)
        if len(members) == 0:
            continue
        top = members[np.argmax(counts[members])]
        if counts[top] * 2 >= weights[j]:
            out[j] = distinct[top]
    return out


def dominant_colors(
    image: Image.Image, k: int = 5, *, sample_side: int = 96, seed: int = 0,
) -> list[DominantColor]:
    """The ``k`` main colours of ``image``, largest share first; percents sum to about 100.

    A copy is downsampled so its longer side is at most ``sample_side``; identical pixels are
    clustered once with their count as weight, which makes flat images almost free. Fewer
    than ``k`` colours come back when the image has fewer distinct colours. Deterministic for
    a given ``seed``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if sample_side < 1:
        raise ValueError(f"sample_side must be at least 1, got {sample_side}")
    pixels = _sample_pixels(image, sample_side)
    packed = (pixels[:, 0].astype(np.int32) << 16) | (pixels[:, 1].astype(np.int32) << 8) | pixels[:, 2]
    codes, counts = np.unique(packed, return_counts=True)
    distinct = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=1).astype(np.float64)
    n_clusters = min(k, len(codes))
    if n_clusters == 1:
        centers = (counts @ distinct / counts.sum())[None, :]
        weights = np.array([counts.sum()], dtype=np.float64)
    else:
        # n_clusters never exceeds the distinct points, so KMeans has no "fewer clusters" warning
        # to raise; no warnings.catch_warnings here, it is not thread-safe.
        from sklearn.cluster import KMeans  # 0.7 s to import: only when a picture needs its colours

        km = KMeans(n_clusters=n_clusters, n_init=_N_INIT, random_state=seed)
        with _OPENMP.limit(limits=1, user_api="openmp"):
            labels = km.fit_predict(distinct, sample_weight=counts)
        # With weights bincount already returns float64 (no copy here); numpy's stubs say integers.
        weights = np.asarray(np.bincount(labels, weights=counts, minlength=n_clusters), dtype=np.float64)
        centers = _representatives(distinct, counts, labels, km.cluster_centers_, weights)
    total = float(weights.sum())
    out: list[DominantColor] = []
    for i in range(len(centers)):
        if weights[i] <= 0:
            continue
        r, g, b = (int(v) for v in np.clip(np.rint(centers[i]), 0, 255))
        out.append(DominantColor(
            hex=rgb_to_hex((r, g, b)), name=color_name((r, g, b)),
            percent=100.0 * float(weights[i]) / total, rgb=(r, g, b),
        ))
    # Ties broken by colour so equal shares still come back in one fixed order.
    out.sort(key=lambda c: (-c.percent, c.hex))
    return out
