"""Image intake: bytes or a path become a safe, oriented RGB image."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Registering exactly the decoders we allow; Image.open(formats=...) needs them loaded.
from PIL import (  # noqa: F401
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageOps,
    JpegImagePlugin,
    MpoImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from core.errors import (
    AnimatedStickerError,
    CorruptImageError,
    FileMissingError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedFormatError,
)

# Pillow format names we decode. Pillow's JPEG decoder also yields MPO, what phones write for
# JPEGs with extra frames; that is a JPEG for us.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
FORMAT_EXTENSIONS: dict[str, str] = {
    "JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
}
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".mpo"}
)
SUPPORTED_TEXT = "JPEG, PNG, WebP, GIF, BMP or TIFF"
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
# Video types core.media.video reads (by content: what the platform calls it only decides the download).
# GIF and WebP animations and stickers come as image/gif and image/webp.
VIDEO_MIME_TYPES: frozenset[str] = frozenset({
    "video/mp4", "video/webm", "video/quicktime", "video/x-matroska", "video/x-m4v", "video/3gpp",
})
# Telegram's animated stickers: gzip'd Lottie JSON, refused before they are downloaded.
TGS_MIME_TYPES: frozenset[str] = frozenset({"application/x-tgsticker", "application/x-tgs"})


def refusal_before_download(mime_type: str | None, size: int | None, max_bytes: int,
                            name: str | None = None, *, video_max_bytes: int | None = None) -> str | None:
    """Why a chat attachment will not be downloaded, judged from what the platform says of it.

    Platforms tell type and size before any download; a file refused here costs no traffic.
    Images and :data:`VIDEO_MIME_TYPES` pass; a video over ``video_max_bytes`` (when given; the
    engine's ``video_limits.max_bytes``) or ``max_bytes`` is refused, TGS stickers always are.
    """
    subject = name or "That file"
    content_type = (mime_type or "").split(";")[0].strip().lower()
    if content_type in TGS_MIME_TYPES:
        return AnimatedStickerError.USER_MESSAGE
    video = content_type in VIDEO_MIME_TYPES
    if content_type and not video and not content_type.startswith("image/"):
        kind = content_type.split("/")[-1].upper() if "/" in content_type else content_type
        return f"{subject} is {kind}, not an image or a video; send a {SUPPORTED_TEXT} image or an MP4 or WebM video."
    limit = min(max_bytes, video_max_bytes) if video and video_max_bytes is not None else max_bytes
    if size is not None and size > limit:
        return (f"{subject} is {size / 1024 / 1024:.1f} MB; the limit is {limit / 1024 / 1024:.0f} MB. "
                f"Send a smaller {'video' if video else 'image'}.")
    return None

# Signatures of common formats we refuse, so the user hears what they sent instead of "not an image".
_KNOWN_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF", 0, "a PDF document"),
    (b"8BPS", 0, "a Photoshop (PSD) file"),
    (b"\x00\x00\x01\x00", 0, "an ICO icon"),
    (b"ftypheic", 4, "a HEIC photo"),
    (b"ftypheix", 4, "a HEIC photo"),
    (b"ftypmif1", 4, "a HEIF photo"),
    (b"ftypavif", 4, "an AVIF image"),
    (b"<svg", 0, "an SVG drawing"),
    (b"<?xml", 0, "an XML/SVG file"),
    (b"PK\x03\x04", 0, "a ZIP archive"),
)


@dataclass(frozen=True)
class DecodedImage:
    """An accepted image: RGB pixels plus the original bytes and their identity."""

    image: Image.Image
    data: bytes
    sha256: str
    format: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS[self.format]


# Formats libjpeg can decode at 1/2, 1/4 or 1/8 scale (Image.draft).
REDUCIBLE_FORMATS = frozenset({"JPEG", "MPO"})


def read_image_bytes(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a file's bytes, refusing missing files, folders and files over ``max_bytes``."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        raise FileMissingError(f"No such file: {p}") from None
    if not p.is_file():
        raise FileMissingError(f"Not a file: {p}")
    if size > max_bytes:
        raise ImageTooLargeError(
            f"{p.name} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB."
        )
    try:
        return p.read_bytes()
    except OSError as exc:
        raise FileMissingError(f"Cannot read {p}: {exc.strerror or exc}") from None


def decode_image(
    source: bytes | str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    min_side: int | None = None,
) -> DecodedImage:
    """Decode bytes or a file into an RGB image, or raise a typed :class:`ImageError`.

    The format is checked against an allow-list and the pixel count is checked from the
    header before any pixel data is decoded. EXIF orientation is applied; palette, alpha
    (flattened on white), CMYK, 16-bit and 1-bit images are converted to 8-bit RGB.

    ``min_side``: the caller needs no more than this many pixels on the shorter side, so a
    JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg does it in the DCT, several times
    faster than a full decode). ``width``/``height`` still report the full size.
    """
    data = source if isinstance(source, bytes) else read_image_bytes(source, max_bytes=max_bytes)
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
    if not data:
        raise NotAnImageError("The file is empty, not an image.")
    img = _open_header(data)
    width, height = img.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {max_pixels / 1e6:.3g} megapixels."
        )
    fmt = str(img.format)
    try:
        img.seek(0)  # first frame of an animated GIF or multi-page TIFF
        if min_side and fmt in REDUCIBLE_FORMATS and min(width, height) > 2 * min_side:
            scale = min(width, height) / min_side
            img.draft("RGB", (int(width / scale), int(height / scale)))
        decoded_size = img.size
        img.load()
        img = _orient(img)
        rgb = to_rgb(img)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise CorruptImageError(f"The {fmt} image is damaged or truncated and cannot be read.") from exc
    full = (width, height) if rgb.size == decoded_size else (height, width)  # EXIF may turn it a quarter
    return DecodedImage(
        image=rgb, data=data, sha256=hashlib.sha256(data).hexdigest(), format=fmt, width=full[0], height=full[1],
    )


def _open_header(data: bytes) -> Image.Image:
    """Open lazily (header only) with just the allowed decoders."""
    try:
        with warnings.catch_warnings():
            # We enforce our own pixel cap right after; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except Image.DecompressionBombError:
        raise ImageTooLargeError("The image has too many pixels to be decoded safely.") from None
    except UnidentifiedImageError:
        raise _unidentified(data) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError("The image is damaged and cannot be read.") from exc


def _unidentified(data: bytes) -> Exception:
    head = data[:64].lstrip()
    for signature, offset, what in _KNOWN_SIGNATURES:
        if head[offset:offset + len(signature)] == signature or data[offset:offset + len(signature)] == signature:
            return UnsupportedFormatError(f"That is {what}; send a {SUPPORTED_TEXT} image instead.")
    for fmt, sig in (("JPEG", b"\xff\xd8\xff"), ("PNG", b"\x89PNG"), ("GIF", b"GIF8")):
        if data.startswith(sig):
            return CorruptImageError(f"The {fmt} image is damaged and cannot be read.")
    return NotAnImageError(f"That file is not an image; send a {SUPPORTED_TEXT} image.")


def _orient(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB deliberately (alpha flattened on white)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        return to_rgb(img)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "RGBX"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_depth_to_rgb(img)
    if mode == "1":
        return img.convert("L").convert("RGB")
    return img.convert("RGB")  # L, CMYK, YCbCr, LAB, HSV


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float greyscale to 8 bits instead of clipping at 255."""
    arr = np.asarray(img)
    if img.mode == "F":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    else:
        # 16-bit PNG/TIFF greyscale arrives as I;16 or I with values in 0..65535.
        scaled = np.clip(arr.astype(np.float64), 0, 65535) / 257.0
    grey = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    return grey.convert("RGB")


def is_image_filename(path: Path) -> bool:
    """Whether a file name looks like an image we index when walking folders."""
    return path.suffix.lower() in IMAGE_SUFFIXES
