"""Pictures with known text, for the OCR tests and bench/ocr.py: memes, chat screenshots, signs,
receipts, a Chinese sign, and photos without text. Offline and deterministic from a seed.

Backgrounds are real photos shipped inside scikit-image, matplotlib and scikit-learn; the fonts are
matplotlib's DejaVu (Sans Bold stands in for Impact) and, for Chinese, whatever CJK font fontconfig
knows (Debian: ``apt-get install fonts-noto-cjk``); without one the ``cjk`` kind is left out.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import matplotlib
import skimage
import sklearn
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
# Photos without legible text: backgrounds, and the `none` kind as they are. Left out: skimage's
# text.png, page.png and logo.png, matplotlib's grace_hopper.jpg (a name tag the reader reads) and
# skimage's astronaut.png (mission patches) and motorcycle_left.png (its badge).
PHOTOS = (
    SKIMAGE_DATA / "chelsea.png", SKIMAGE_DATA / "coffee.png", SKIMAGE_DATA / "rocket.jpg",
    SKIMAGE_DATA / "hubble_deep_field.jpg", SKIMAGE_DATA / "retina.jpg", SKIMAGE_DATA / "grass.png",
    SKIMAGE_DATA / "brick.png",
    Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg",
    Path(sklearn.__file__).parent / "datasets" / "images" / "flower.jpg",
)
KINDS = ("meme", "screenshot_light", "screenshot_dark", "sign", "receipt", "cjk", "none")

# Top and bottom lines of a meme, and what someone looking for it would type.
MEMES: tuple[tuple[str, str, str], ...] = (
    ("ONE DOES NOT SIMPLY", "WALK INTO MORDOR", "one does not simply"),
    ("IS THIS A PIGEON", "", "is this a pigeon"),
    ("Y U NO", "ANSWER YOUR PHONE", "y u no answer"),
    ("BRACE YOURSELVES", "WINTER IS COMING", "brace yourselves"),
    ("I DON'T ALWAYS TEST MY CODE", "BUT WHEN I DO I DO IT IN PRODUCTION", "test my code"),
    ("SHUT UP AND", "TAKE MY MONEY", "take my money"),
    ("NOT SURE IF FRIDAY", "OR JUST TIRED", "not sure if friday"),
    ("THIS IS FINE", "", "this is fine"),
    ("MONDAY MORNING", "NEEDS MORE COFFEE", "monday morning"),
    ("WHEN THE BUILD PASSES", "ON THE FIRST TRY", "build passes"),
    ("ALL THE THINGS", "", "all the things"),
    ("WHAT IF I TOLD YOU", "THE CAT WAS ASLEEP", "what if i told you"),
)
# Chat messages; the first of a screenshot is the one searched for, by the phrase beside it.
CHATS: tuple[tuple[str, str], ...] = (
    ("the wifi password is sunflower42", "wifi password"),
    ("meeting moved to room 4B at half past three", "room 4B"),
    ("your parcel will arrive on Tuesday", "parcel will arrive"),
    ("dinner at Luigi's at 8 tonight?", "dinner at luigi's"),
    ("the door code is 7391", "door code"),
    ("flight BA 117 boards at gate 22", "gate 22"),
    ("don't forget to buy oat milk", "oat milk"),
    ("happy birthday Sarah!", "happy birthday sarah"),
    ("the vet appointment is on Friday at 10", "vet appointment"),
    ("can you send me the slides from today", "send me the slides"),
    ("train delayed by 25 minutes", "train delayed"),
    ("the garage quoted 340 for the brakes", "quoted 340"),
)
REPLIES = ("ok thanks", "see you there", "sounds good", "on my way", "great, thank you!", "lol", "will do",
           "noted", "perfect", "are you sure?")
CONTACTS = ("Alex", "Mum", "Sam Taylor", "Project team", "Priya", "Dad")
SIGNS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("NO PARKING", "TOW AWAY ZONE"), "no parking"),
    (("EMERGENCY EXIT",), "emergency exit"),
    (("PLATFORM 9", "TRAINS TO LONDON"), "platform 9"),
    (("CAUTION", "WET FLOOR"), "wet floor"),
    (("OPEN", "MON-FRI 9-17"), "open mon-fri"),
    (("STAFF ONLY",), "staff only"),
    (("MAIN STREET",), "main street"),
    (("PRIVATE PROPERTY", "KEEP OUT"), "keep out"),
    (("TICKET OFFICE",), "ticket office"),
    (("BIKE LANE", "ENDS"), "bike lane"),
)
SIGN_COLOURS = (((255, 255, 255), (20, 20, 20)), ((0, 110, 60), (255, 255, 255)), ((20, 60, 150), (255, 255, 255)),
                ((250, 210, 0), (10, 10, 10)), ((190, 20, 30), (255, 255, 255)))
SHOPS = ("CORNER GROCER", "CAFE LUNA", "HARDWARE PLUS", "BAKERY & CO", "GREEN MARKET")
ITEMS = ("Oat milk", "Sourdough loaf", "Free range eggs", "Bananas", "Espresso", "Cheddar", "Batteries AA",
         "Wood screws", "Croissant", "Tomatoes", "Olive oil", "Dish soap", "Paint brush", "Orange juice")
CJK_SIGNS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("紧急出口",), "出口"),
    (("禁止吸烟",), "禁止吸烟"),
    (("地铁站", "出口A"), "地铁站"),
    (("小心地滑",), "小心地滑"),
    (("欢迎光临",), "欢迎光临"),
    (("停车场", "入口"), "停车场"),
    (("请勿触摸",), "请勿触摸"),
    (("北京路",), "北京路"),
)


@dataclass
class OcrSample:
    """A picture, the text drawn on it (lines joined by newlines) and what a user would type to find it."""

    kind: str
    image: Image.Image
    text: str
    phrases: list[str] = field(default_factory=list)


@cache
def _photo(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


def background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A random crop of a random photo, scaled to ``size``."""
    photo = _photo(rng.choice(PHOTOS))
    scale = max(size[0] / photo.width, size[1] / photo.height) * rng.uniform(1.0, 1.6)
    big = photo.resize((max(size[0], round(photo.width * scale)), max(size[1], round(photo.height * scale))))
    x, y = rng.randint(0, big.width - size[0]), rng.randint(0, big.height - size[1])
    return big.crop((x, y, x + size[0], y + size[1]))


@cache
def font(name: str, size: int, index: int = 0) -> ImageFont.FreeTypeFont:
    path = Path(name) if name.startswith("/") else FONTS / name
    return ImageFont.truetype(str(path), size, index=index)


@cache
def cjk_font() -> tuple[str, int] | None:
    """A font file covering simplified Chinese and its index in a collection, or None."""
    if shutil.which("fc-list") is None:
        return None
    listing = subprocess.run(["fc-list", ":lang=zh", "file", "family"], capture_output=True, text=True,
                             check=False).stdout
    candidates = []
    for row in sorted(listing.splitlines()):
        path, _, families = row.partition(":")
        if Path(path).is_file() and path.endswith((".ttc", ".otf", ".ttf")):
            candidates.append((path, families))
    if not candidates:
        return None
    # Prefer a bold simplified-Chinese face; in a collection, find the face's index by its name.
    candidates.sort(key=lambda c: ("Bold" not in c[0], "SC" not in c[1]))
    path = candidates[0][0]
    for index in range(16):
        try:
            name = ImageFont.truetype(path, 20, index=index).getname()[0] or ""
        except OSError:
            break
        if "SC" in name:
            return path, index
    return path, 0


def _width(text: str, face: ImageFont.FreeTypeFont, stroke: int = 0) -> float:
    left, _, right, _ = face.getbbox(text, stroke_width=stroke)
    return right - left


def _fitted(text: str, name: str, largest: int, width: float, stroke: int = 0) -> ImageFont.FreeTypeFont:
    """The largest size of font ``name`` at which ``text`` fits in ``width`` pixels."""
    size = largest
    while size > 12 and _width(text, font(name, size), stroke) > width:
        size -= 2
    return font(name, size)


def _wrap(text: str, face: ImageFont.FreeTypeFont, width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and _width(f"{lines[-1]} {word}", face) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def _jpeg(image: Image.Image, rng: random.Random, shrink: float = 1.0) -> Image.Image:
    """Through what chats do to pictures: scaled down by up to ``shrink``, then a JPEG round trip."""
    scale = rng.uniform(shrink, 1.0)
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=rng.randint(60, 92))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def meme(rng: random.Random) -> OcrSample:
    top, bottom, phrase = rng.choice(MEMES)
    image = background(rng, (rng.choice((400, 500, 600, 640)), rng.choice((320, 400, 480, 560))))
    draw = ImageDraw.Draw(image)
    drawn = []
    for caption, at_top in ((top, True), (bottom, False)):
        if not caption:
            continue
        stroke = 3
        face = _fitted(caption, "DejaVuSans-Bold.ttf", 52, image.width * 0.94, stroke)
        lines = [caption]
        if face.size < 28:  # a long caption goes on two lines, as meme makers do
            face = _fitted(caption, "DejaVuSans-Bold.ttf", 40, image.width * 1.7, stroke)
            lines = _wrap(caption, face, image.width * 0.94 - 2 * stroke)
        step = face.size * 1.15
        y = 12 if at_top else image.height - 16 - step * len(lines)
        for line in lines:
            x = (image.width - _width(line, face, stroke)) / 2
            draw.text((x, y), line, font=face, fill="white", stroke_width=stroke, stroke_fill="black")
            y += step
        drawn += lines
    # Memes are shared again and again: smaller and more compressed each time.
    return OcrSample("meme", _jpeg(image, rng, shrink=0.6), "\n".join(drawn), [phrase])


def screenshot(rng: random.Random, dark: bool) -> OcrSample:
    width, height = 540, rng.choice((720, 800, 900))
    colours = ({"bg": (18, 18, 18), "bar": (32, 32, 36), "in": (52, 52, 58), "out": (0, 92, 75), "ink": (235, 235, 235)}
               if dark else
               {"bg": (236, 229, 221), "bar": (0, 128, 105), "in": (255, 255, 255), "out": (220, 248, 198),
                "ink": (20, 20, 20)})
    image = Image.new("RGB", (width, height), colours["bg"])
    draw = ImageDraw.Draw(image)
    contact = rng.choice(CONTACTS)
    draw.rectangle((0, 0, width, 64), fill=colours["bar"])
    draw.text((24, 18), contact, font=font("DejaVuSans-Bold.ttf", 24), fill=(255, 255, 255))
    message, phrase = rng.choice(CHATS)
    others = rng.sample([m for m, _ in CHATS if m != message], 2)
    sequence = [message, *rng.sample(REPLIES, 2), *others[: rng.randint(0, 2)]]
    rng.shuffle(sequence)
    face = font("DejaVuSans.ttf", rng.choice((20, 22, 24)))
    drawn, shown, y, outgoing = [contact], [], 84.0, rng.random() < 0.5
    for text in sequence:
        lines = _wrap(text, face, width * 0.62)
        box_w = max(_width(line, face) for line in lines) + 28
        box_h = len(lines) * face.size * 1.3 + 18
        if y + box_h > height - 10:
            break
        x = width - box_w - 16 if outgoing else 16
        draw.rounded_rectangle((x, y, x + box_w, y + box_h), radius=14, fill=colours["out" if outgoing else "in"])
        for i, line in enumerate(lines):
            draw.text((x + 14, y + 9 + i * face.size * 1.3), line, font=face, fill=colours["ink"])
        drawn += lines
        shown.append(text)
        y += box_h + rng.randint(10, 22)
        outgoing = not outgoing
    kind = "screenshot_dark" if dark else "screenshot_light"
    # Half are sent as files (PNG, as taken), half as photos: scaled down and compressed.
    sent = image if rng.random() < 0.5 else _jpeg(image, rng, shrink=0.6)
    return OcrSample(kind, sent, "\n".join(drawn), [phrase] if message in shown else [])


def _panel(lines: tuple[str, ...], face_name: str, size: int, colours: tuple[tuple[int, int, int], ...],
           index: int = 0) -> Image.Image:
    """A sign: the lines centred on a coloured board with a border, as RGBA (transparent outside)."""
    face = font(face_name, size, index)
    widths = [_width(line, face) for line in lines]
    pad, step = size // 2, size * 1.3
    board = Image.new("RGBA", (int(max(widths) + 2 * pad), int(step * len(lines) + 2 * pad - size * 0.3)))
    draw = ImageDraw.Draw(board)
    paper, ink = colours
    draw.rounded_rectangle((0, 0, board.width - 1, board.height - 1), radius=size // 4, fill=(*paper, 255),
                           outline=(*ink, 255), width=max(2, size // 12))
    for i, (line, width) in enumerate(zip(lines, widths, strict=True)):
        top = face.getbbox(line)[1]
        draw.text(((board.width - width) / 2, pad + i * step - top * 0.5), line, font=face, fill=(*ink, 255))
    return board


def sign(rng: random.Random, chinese: bool = False) -> OcrSample:
    if chinese:
        located = cjk_font()
        if located is None:
            raise RuntimeError("no CJK font installed (Debian: apt-get install fonts-noto-cjk)")
        (lines, phrase), (face_name, index) = rng.choice(CJK_SIGNS), located
    else:
        (lines, phrase), face_name, index = rng.choice(SIGNS), "DejaVuSans-Bold.ttf", 0
    image = background(rng, (rng.choice((560, 640, 720)), rng.choice((420, 480, 540))))
    board = _panel(lines, face_name, rng.choice((28, 36, 44, 52)), rng.choice(SIGN_COLOURS), index)
    limit = image.width * 0.8 / board.width
    if limit < 1:
        board = board.resize((int(board.width * limit), int(board.height * limit)))
    angle = rng.uniform(5, 20) * rng.choice((-1, 1))
    tilted = board.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    x = rng.randint(0, max(0, image.width - tilted.width))
    y = rng.randint(0, max(0, image.height - tilted.height))
    image.paste(tilted, (x, y), tilted)
    kind = "cjk" if chinese else "sign"
    photo = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))  # a photo is never quite sharp
    return OcrSample(kind, _jpeg(photo, rng, shrink=0.8), "\n".join(lines), [phrase])


def receipt(rng: random.Random) -> OcrSample:
    shop = rng.choice(SHOPS)
    items = rng.sample(ITEMS, rng.randint(3, 6))
    prices = [rng.randint(49, 1299) / 100 for _ in items]
    rows = [(item, f"{price:.2f}") for item, price in zip(items, prices, strict=True)]
    rows.append(("TOTAL", f"{sum(prices):.2f}"))
    face = font("DejaVuSansMono.ttf", rng.choice((16, 18, 20, 22)))
    head = font("DejaVuSansMono-Bold.ttf", face.size + 6)
    width = 360
    paper = Image.new("RGB", (width, int(face.size * 1.6 * (len(rows) + 2) + head.size * 2 + 40)), (250, 248, 240))
    draw = ImageDraw.Draw(paper)
    draw.text(((width - _width(shop, head)) / 2, 20), shop, font=head, fill=(30, 30, 30))
    y = 20 + head.size * 2.2
    drawn = [shop]
    for i, (item, price) in enumerate(rows):
        if i == len(rows) - 1:
            draw.line((20, y, width - 20, y), fill=(60, 60, 60), width=2)
            y += face.size * 0.6
        draw.text((20, y), item, font=face, fill=(30, 30, 30))
        draw.text((width - 20 - _width(price, face), y), price, font=face, fill=(30, 30, 30))
        drawn.append(f"{item} {price}")
        y += face.size * 1.6
    # Photographed on a table: a little askew and soft.
    image = background(rng, (paper.width + 160, paper.height + 120))
    tilted = paper.convert("RGBA").rotate(rng.uniform(-4, 4), resample=Image.Resampling.BICUBIC, expand=True)
    image.paste(tilted, (80 - (tilted.width - paper.width) // 2, 60 - (tilted.height - paper.height) // 2), tilted)
    photo = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.8)))
    return OcrSample("receipt", _jpeg(photo, rng), "\n".join(drawn), [shop.lower(), rng.choice(items).lower()])


def plain_photo(rng: random.Random) -> OcrSample:
    return OcrSample("none", _jpeg(background(rng, (rng.choice((480, 640)), rng.choice((360, 480)))), rng), "", [])


def make_sample(kind: str, rng: random.Random) -> OcrSample:
    """One sample of ``kind`` (one of :data:`KINDS`)."""
    makers = {"meme": lambda: meme(rng), "screenshot_light": lambda: screenshot(rng, dark=False),
              "screenshot_dark": lambda: screenshot(rng, dark=True), "sign": lambda: sign(rng),
              "receipt": lambda: receipt(rng), "cjk": lambda: sign(rng, chinese=True), "none": lambda: plain_photo(rng)}
    return makers[kind]()


def available_kinds() -> tuple[str, ...]:
    """:data:`KINDS`, less ``cjk`` where no font covers Chinese."""
    return tuple(k for k in KINDS if k != "cjk" or cjk_font() is not None)


def make_samples(n_per_kind: int, seed: int = 0, kinds: tuple[str, ...] | None = None) -> list[OcrSample]:
    """``n_per_kind`` samples of each kind (:func:`available_kinds` by default), the same for the same seed."""
    # A string seed goes through SHA-512, so the pictures do not depend on PYTHONHASHSEED.
    return [make_sample(kind, random.Random(f"{seed}:{kind}:{i}"))
            for kind in (kinds or available_kinds()) for i in range(n_per_kind)]
