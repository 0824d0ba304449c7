"""Pictures with text for the front ends' ``/read`` tests and the web gallery's text: big dark words
on a light card, drawn with matplotlib's DejaVu font, which the OCR reader reads every time.

The words are what the tests look for in the replies; the reader may drop the spaces between
words, so the tests compare folded (core.search's ``fold``), as a search does.
"""

from __future__ import annotations

import importlib.util
import io

import pytest
from PIL import Image, ImageDraw

from tests.ocr_pictures import font

SIGN = ("WIFI PASSWORD", "SUNFLOWER42")


def text_picture(lines: tuple[str, ...] = SIGN, *, fmt: str = "PNG", size: int = 64) -> bytes:
    """The lines, black on white, one under the other, as an image file's bytes."""
    face = font("DejaVuSans-Bold.ttf", size)
    widths = [face.getlength(line) for line in lines]
    width, line_height = int(max(widths)) + 2 * size, int(size * 1.5)
    image = Image.new("RGB", (width, line_height * len(lines) + size), "white")
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((size, size // 2 + n * line_height), line, font=face, fill="black")
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def needs_reader() -> None:
    """Skip where the ``ocr`` extra (onnxruntime and rapidocr's models) is not installed."""
    from core.models import ocr

    if ocr.bundled_models() is None or importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("the ocr extra (rapidocr-onnxruntime's models, onnxruntime) is not installed")
