"""Image intake: allowed formats, header-checked pixel cap, typed errors and RGB conversion."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import (
    CorruptImageError,
    FileMissingError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedFormatError,
)
from core.media.images import decode_image


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_allowed_formats_decode_to_rgb(photos: dict[str, Path], fmt: str) -> None:
    src = Image.open(photos["coffee"]).convert("RGB").resize((60, 40))
    decoded = decode_image(encode(src, fmt))
    assert decoded.image.mode == "RGB"
    assert (decoded.width, decoded.height) == (60, 40)
    assert decoded.format == fmt


def test_real_photo_from_path(photos: dict[str, Path]) -> None:
    decoded = decode_image(photos["rocket"])
    assert decoded.format == "JPEG" and decoded.image.size == (640, 427)
    assert len(decoded.sha256) == 64 and decoded.data == photos["rocket"].read_bytes()


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"", NotAnImageError, "empty"),
        (b"just some text, not a picture", NotAnImageError, "not an image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", UnsupportedFormatError, "PDF"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", UnsupportedFormatError, "HEIC"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", UnsupportedFormatError, "SVG"),
    ],
)
def test_non_images_are_refused_clearly(data: bytes, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        decode_image(data)


def test_unsupported_image_format_is_named() -> None:
    ico = encode(Image.new("RGB", (16, 16), "red"), "ICO")
    with pytest.raises(UnsupportedFormatError, match="ICO"):
        decode_image(ico)


def test_truncated_jpeg(photos: dict[str, Path]) -> None:
    data = photos["rocket"].read_bytes()
    with pytest.raises(CorruptImageError, match="damaged or truncated"):
        decode_image(data[: len(data) // 2])


def test_corrupt_png_body(photos: dict[str, Path]) -> None:
    data = bytearray(encode(Image.open(photos["coffee"]).convert("RGB"), "PNG"))
    data[200:400] = b"\x00" * 200
    with pytest.raises(CorruptImageError):
        decode_image(bytes(data))


def test_header_only_png_is_corrupt() -> None:
    data = encode(Image.new("RGB", (10, 10)), "PNG")
    with pytest.raises(CorruptImageError):
        decode_image(data[:40])


def test_pixel_cap_is_checked_from_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    big = encode(Image.new("L", (5000, 5000)), "PNG")  # 25 MP, compresses to a few KB
    decoded_calls: list[object] = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded_calls.append(self))
    with pytest.raises(ImageTooLargeError, match=r"5000x5000 .* limit is 10 megapixels"):
        decode_image(big, max_pixels=10_000_000)
    assert decoded_calls == []  # refused before any pixel data was decoded


def test_byte_cap(tmp_path: Path) -> None:
    f = tmp_path / "big.png"
    f.write_bytes(encode(Image.new("RGB", (300, 300), "blue"), "PNG") + b"\0" * 5000)
    with pytest.raises(ImageTooLargeError, match="MB"):
        decode_image(f, max_bytes=1000)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(FileMissingError, match="No such file"):
        decode_image(tmp_path / "nope.jpg")
    with pytest.raises(FileMissingError, match="Not a file"):
        decode_image(tmp_path)


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), "white")
    img.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise on display
    decoded = decode_image(encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert decoded.image.size == (20, 40)
    top = np.asarray(decoded.image)[5, 10]
    assert top[0] > 200 and top[1] < 60  # the red half is now on top


def test_alpha_is_flattened_on_white() -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 255, 0))
    img.putpixel((0, 0), (255, 0, 0, 255))
    out = np.asarray(decode_image(encode(img, "PNG")).image)
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[3, 3]) == (255, 255, 255)


def test_palette_with_transparency_and_la() -> None:
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    p.info["transparency"] = 1
    assert tuple(np.asarray(decode_image(encode(p, "PNG", transparency=1)).image)[0, 0]) == (255, 255, 255)
    la = Image.new("LA", (2, 2), (0, 255))
    assert tuple(np.asarray(decode_image(encode(la, "PNG")).image)[0, 0]) == (0, 0, 0)


def test_cmyk_jpeg() -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = np.asarray(decode_image(encode(cmyk, "JPEG", quality=95)).image)
    assert out[4, 4, 0] > 200 and out[4, 4, 1] < 60


def test_16_bit_greyscale_scaled_not_clipped() -> None:
    arr = np.full((4, 4), 32768, dtype=np.uint16)
    img = Image.fromarray(arr)
    out = np.asarray(decode_image(encode(img, "PNG")).image)
    assert out.dtype == np.uint8 and 126 <= out[0, 0, 0] <= 129  # mid-grey, not saturated white


def test_one_bit_tiff() -> None:
    img = Image.new("1", (8, 8), 1)
    img.putpixel((0, 0), 0)
    out = np.asarray(decode_image(encode(img, "TIFF")).image)
    assert tuple(out[0, 0]) == (0, 0, 0) and tuple(out[1, 1]) == (255, 255, 255)


def test_animated_gif_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue", "green")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    out = np.asarray(decode_image(data).image)
    assert out[0, 0, 0] > 200 and out[0, 0, 2] < 60


def test_large_jpeg_decoded_at_reduced_scale_keeps_its_full_size() -> None:
    big = Image.new("RGB", (4000, 3000), "navy")
    big.paste((250, 200, 0), (0, 0, 2000, 3000))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated a quarter turn
    data = encode(big, "JPEG", quality=90, exif=exif.tobytes())
    decoded = decode_image(data, min_side=448)
    assert (decoded.width, decoded.height) == (3000, 4000)  # full size, oriented
    assert 448 <= min(decoded.image.size) < 1000  # decoded at 1/4 scale
    assert decoded.image.size[0] < decoded.image.size[1]
    full = decode_image(data)
    assert full.image.size == (3000, 4000) and full.sha256 == decoded.sha256
