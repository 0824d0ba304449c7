"""The text reader (core.models.ocr) on generated pictures: it finds what a user would type, in
reading order, with sane confidences and boxes, and finds nothing in a photo without text.

The reader needs the ``ocr`` extra (rapidocr-onnxruntime's model files and onnxruntime); where it
is missing those tests are skipped, and the one-line errors it gives instead are checked.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import random
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image, ImageDraw

from core.errors import ModelLoadError
from core.models import ocr
from core.models.ocr import TextLine, TextReader, ocr_version, rows, text_of
from core.search.ocr_text import fold, phrase_in
from tests.ocr_pictures import FONTS, OcrSample, cjk_font, font, make_sample, plain_photo


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return loadable(TextReader())


def loadable(reader: TextReader) -> TextReader:
    """``reader``, or a skip where the ocr extra is not installed."""
    if ocr.bundled_models() is None or importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("the ocr extra (rapidocr-onnxruntime's models, onnxruntime) is not installed")
    return reader


def sample(kind: str, seed: int = 0) -> OcrSample:
    return make_sample(kind, random.Random(f"test:{kind}:{seed}"))


def check_lines(lines: list[TextLine], image: Image.Image) -> None:
    assert lines
    for line in lines:
        assert line.text.strip() and 0.0 <= line.confidence <= 1.0
        left, top, right, bottom = line.bbox
        assert 0 <= left < right <= image.width and 0 <= top < bottom <= image.height


def extent(lines: list[TextLine]) -> tuple[float, float, float, float]:
    """The rectangle around every line: (left, top, right, bottom)."""
    boxes = [line.bbox for line in lines]
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


@pytest.mark.parametrize("kind", ["meme", "screenshot_light", "screenshot_dark", "sign"])
def test_reads_the_phrase_a_user_would_type(reader: TextReader, kind: str) -> None:
    picture = sample(kind)
    lines = reader.read(picture.image)
    check_lines(lines, picture.image)
    assert picture.phrases
    for phrase in picture.phrases:
        assert phrase_in(phrase, text_of(lines)), (phrase, text_of(lines))


def test_reads_chinese(reader: TextReader) -> None:
    if cjk_font() is None:
        pytest.skip("no CJK font (Debian: apt-get install fonts-noto-cjk)")
    picture = sample("cjk")
    lines = reader.read(picture.image)
    assert phrase_in(picture.phrases[0], text_of(lines)), text_of(lines)


def test_a_photo_without_text_gives_nothing(reader: TextReader) -> None:
    for seed in range(2):
        assert reader.read(plain_photo(random.Random(seed)).image) == []
    assert reader.read(Image.new("RGB", (320, 240), "white")) == []


def test_lines_come_in_reading_order(reader: TextReader) -> None:
    image = Image.new("RGB", (720, 400), "white")
    draw = ImageDraw.Draw(image)
    face = font("DejaVuSans.ttf", 34)
    # Drawn out of order, and the second row's right half slightly higher than its left.
    draw.text((420, 168), "BANANAS", font=face, fill="black")
    draw.text((40, 40), "SHOPPING LIST", font=face, fill="black")
    draw.text((40, 290), "TOTAL 7.20", font=face, fill="black")
    draw.text((40, 176), "MILK 2.10", font=face, fill="black")
    lines = reader.read(image)
    assert [line.text.replace(" ", "") for line in lines] == ["SHOPPINGLIST", "MILK2.10", "BANANAS", "TOTAL7.20"]
    assert text_of(lines).replace(" ", "").splitlines() == ["SHOPPINGLIST", "MILK2.10BANANAS", "TOTAL7.20"]
    tops = [line.bbox[1] for line in lines]
    assert tops[0] < min(tops[1:3]) and max(tops[1:3]) < tops[3]


def test_huge_pictures_are_shrunk_and_boxes_given_in_their_pixels(reader: TextReader) -> None:
    picture = sample("meme")
    small = reader.read(picture.image)
    # A reader that shrinks anything over 700 pixels (the default, 2000, would make a slow test).
    shrinking = TextReader(max_side=700)
    k = math.ceil(1.5 * shrinking.max_side / max(picture.image.size))
    big_image = picture.image.resize((picture.image.width * k, picture.image.height * k))
    big = shrinking.read(big_image)
    check_lines(big, big_image)
    # Spaces may come and go with the scale (the recogniser drops some); the letters may not.
    assert fold(text_of(big)) == fold(text_of(small))
    # The detector may cut a line into words at one scale and not at another: compare where the text is.
    assert all(abs(k * a - b) < 6 * k for a, b in zip(extent(small), extent(big), strict=True))


def test_any_image_mode(reader: TextReader) -> None:
    picture = sample("sign", seed=1)
    for mode in ("L", "P"):
        lines = reader.read(picture.image.convert(mode))
        assert phrase_in(picture.phrases[0], text_of(lines)), mode


def test_loads_once_and_reads_from_several_threads() -> None:
    fresh = loadable(TextReader(threads=1))
    loaded_before = fresh.loaded
    picture = sample("meme", seed=2)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(text_of(fresh.read(picture.image)))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not loaded_before and fresh.loaded
    assert len(results) == 3 and len(set(results)) == 1
    assert phrase_in(picture.phrases[0], results[0])


def test_model_id_names_package_and_models() -> None:
    assert TextReader().model_id == f"rapidocr-onnxruntime {ocr_version() or '?'} PP-OCRv4"


def test_never_imports_the_package_or_opencv(reader: TextReader) -> None:
    reader.read(sample("sign").image)
    # Only the wheel's ONNX files are read: its OpenCV would need the system's libGL.
    assert "rapidocr_onnxruntime" not in sys.modules and "cv2" not in sys.modules


def one_line_error(reader: TextReader) -> str:
    with pytest.raises(ModelLoadError) as caught:
        reader.load()
    message = str(caught.value)
    assert message and "\n" not in message
    return message


def test_missing_models_are_a_one_line_model_load_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ocr, "bundled_models", lambda: None)
    assert "pip install 'clipbot[ocr]'" in one_line_error(TextReader())
    message = one_line_error(TextReader(model_dir=tmp_path))
    assert "ch_PP-OCRv4_det_infer.onnx" in message and str(tmp_path) in message


def test_missing_onnxruntime_is_a_one_line_model_load_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"):
        (tmp_path / name).write_bytes(b"")
    real = importlib.import_module

    def refuse(name: str, package: str | None = None) -> ModuleType:
        if name == "onnxruntime":
            raise ModuleNotFoundError("No module named 'onnxruntime'", name=name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", refuse)
    assert "needs onnxruntime" in one_line_error(TextReader(model_dir=tmp_path))


def test_damaged_model_files_say_why_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    for name in ("ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"):
        (tmp_path / name).write_bytes(b"not a model\nat all")
    assert one_line_error(TextReader(model_dir=tmp_path)).startswith("Reading text in pictures is unavailable: ")


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        TextReader(threads=0)
    with pytest.raises(ValueError):
        TextReader(max_side=8)
    with pytest.raises(ValueError):
        TextReader(min_confidence=1.5)


def quad(x: float, y: float, w: float, h: float, degrees: float = 0.0) -> tuple[tuple[float, float], ...]:
    """A w x h box whose top-left corner is at (x, y), turned ``degrees`` about that corner."""
    a = math.radians(degrees)
    corners = ((0, 0), (w, 0), (w, h), (0, h))
    return tuple((x + cx * math.cos(a) - cy * math.sin(a), y + cx * math.sin(a) + cy * math.cos(a))
                 for cx, cy in corners)


def test_rows_undo_the_tilt_of_a_photographed_sign() -> None:
    # A two-row sign turned 15 degrees: the second row's left piece sits higher on the picture
    # than the first row's right end, which a plain top-to-bottom sort would get wrong.
    a = math.radians(15)
    down = (-math.sin(a) * 60, math.cos(a) * 60)  # one row down, along the tilted sign
    right = (math.cos(a) * 300, math.sin(a) * 300)  # one piece to the right
    pieces = {"PRIVATE": (100, 100), "PROPERTY": (100 + right[0], 100 + right[1]),
              "KEEP": (100 + down[0], 100 + down[1]), "OUT": (100 + down[0] + right[0], 100 + down[1] + right[1])}
    lines = [TextLine(text, 0.9, quad(x, y, 280, 40, 15)) for text, (x, y) in pieces.items()]  # type: ignore[arg-type]
    assert pieces["PROPERTY"][1] > pieces["KEEP"][1]
    shuffled = [lines[i] for i in (3, 1, 2, 0)]
    assert [[ln.text for ln in row] for row in rows(shuffled)] == [["PRIVATE", "PROPERTY"], ["KEEP", "OUT"]]
    assert text_of(shuffled) == "PRIVATE PROPERTY\nKEEP OUT"
    assert rows([]) == [] and text_of([]) == ""


def test_fonts_for_the_pictures_are_there() -> None:
    assert (FONTS / "DejaVuSans-Bold.ttf").is_file()
