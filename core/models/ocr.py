"""Reading the text in pictures (OCR) with PP-OCRv4, for searches such as "the meme that says…".

The models are the ONNX files inside the ``rapidocr-onnxruntime`` wheel (the ``ocr`` extra):
nothing is downloaded, ever. They run through :mod:`core.models.ocr_onnx` on onnxruntime alone;
the package's own code is never imported, so neither is its OpenCV (which needs the system's libGL).
Its last release installs on Python 3.10-3.12; on later Pythons the wheel can still be installed
without its dependencies, since only its files are read. Where it is missing, :meth:`TextReader.load`
raises a one-line :class:`~core.errors.ModelLoadError` that says how to get it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import math
import statistics
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from core.errors import ModelLoadError
from core.models.clip import Announce, Encoder

log = logging.getLogger(__name__)

PACKAGE = "rapidocr-onnxruntime"
MODULE = "rapidocr_onnxruntime"
MODELS = "PP-OCRv4"
# The wheel's dependencies (OpenCV and others, never used here) block it on 3.13+, not its files.
INSTALL_HINT = ("pip install 'clipbot[ocr]' (Python 3.13+: "
                "pip install --no-deps --ignore-requires-python rapidocr-onnxruntime==1.4.4)")
# One thread per model: OCR runs beside CLIP, which already keeps the cores busy. On the shared
# 2-core machine of bench/ocr.py, two threads read no faster (1.9-3.0 pictures/s against 1.9-3.4
# for one) and cost 10-15% more CPU per picture; raise it where cores sit idle.
DEFAULT_THREADS = 1
# Longer sides are shrunk first: cropping text out of a 12-megapixel photo costs more than the
# models, and the detector sees at most `detect_side` pixels anyway.
DEFAULT_MAX_SIDE = 2000
# The detector's input: the long side is brought down to this, never up. PaddleOCR's own default;
# rapidocr's (short side up to 736) turns a 640x200 meme into 2355x736, 3-5 times slower, and read
# no better on bench/ocr.py's pictures.
DEFAULT_DETECT_SIDE = 960
# Recognised pieces below this confidence are dropped (PaddleOCR's and rapidocr's default).
DEFAULT_MIN_CONFIDENCE = 0.5
# A piece of a single letter or digit needs more: round and straight shapes in photos read as "O" or "I".
LONE_CHARACTER_CONFIDENCE = 0.8

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]


@dataclass(frozen=True)
class TextLine:
    """One piece of text the detector found: usually a line, or a column's cell of one.

    ``box`` is its quadrilateral in the original picture's pixels, clockwise from the top-left
    corner (so a tilted sign gives a tilted box).
    """

    text: str
    confidence: float
    box: Quad

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """The upright rectangle around :attr:`box`: ``(left, top, right, bottom)``."""
        xs = [p[0] for p in self.box]
        ys = [p[1] for p in self.box]
        return min(xs), min(ys), max(xs), max(ys)


def ocr_version() -> str | None:
    """The installed ``rapidocr-onnxruntime`` version, or None; reads metadata, imports nothing."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def bundled_models() -> Path | None:
    """The folder of ONNX files inside the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def reader_from_setting(source: str | None, **kw: Any) -> TextReader | None:
    """A reader for the ``CLIPBOT_OCR`` value, or None when reading text is off: ``none``/``off``/empty,
    or ``auto`` without the ``ocr`` extra installed. ``rapidocr`` always makes one (its load says
    what is missing); any other value is a folder holding the two ONNX files. Nothing is loaded here."""
    value = (source or "").strip()
    if value.lower() in ("", "none", "off", "false", "0"):
        return None
    if value.lower() == "auto":
        if bundled_models() is None or importlib.util.find_spec("onnxruntime") is None:
            return None
        return TextReader(**kw)
    if value.lower() == "rapidocr":
        return TextReader(**kw)
    return TextReader(model_dir=Path(value).expanduser(), **kw)


def load_error(error: BaseException) -> ModelLoadError:
    """The one-line error for an OCR that cannot load: what is missing, or the first line of why."""
    if isinstance(error, ModuleNotFoundError) and error.name == "onnxruntime":
        return ModelLoadError(f"Reading text in pictures needs onnxruntime: {INSTALL_HINT}")
    text = str(error).strip()
    reason = text.splitlines()[0] if text else type(error).__name__
    return ModelLoadError(f"Reading text in pictures is unavailable: {reason}")


class TextReader(Encoder):
    """Finds and reads the text in a picture; loads its models once, on first use, thread-safely.

    :meth:`read` is synchronous and CPU-bound: call it from an executor. Calls are serialised, so a
    reader keeps to ``threads`` cores however many callers it has.
    """

    def __init__(
        self,
        *,
        threads: int = DEFAULT_THREADS,
        max_side: int = DEFAULT_MAX_SIDE,
        detect_side: int = DEFAULT_DETECT_SIDE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        model_dir: Path | None = None,
        announce: Announce | None = None,
    ) -> None:
        """``threads``: onnxruntime's intra-op threads per model (at least 1). ``max_side``: pictures
        are shrunk to this long side before anything else; ``detect_side``: the detector's.
        ``model_dir``: a folder holding the two ONNX files, instead of the installed wheel's.
        ``announce`` is told once when loading takes over a second."""
        super().__init__(announce=announce)
        if threads < 1 or max_side < 32 or detect_side < 32:
            raise ValueError(f"threads must be >= 1 and sides >= 32 (got {threads}, {max_side}, {detect_side})")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be within [0, 1], not {min_confidence}")
        self.threads = threads
        self.max_side = max_side
        self.detect_side = detect_side
        self.min_confidence = min_confidence
        self.model_dir = model_dir
        self._detector: Any = None
        self._recogniser: Any = None
        self._alphabet: list[str] = []
        self._run_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """Names the package and models, for the provenance of stored text."""
        return f"{PACKAGE} {ocr_version() or '?'} {MODELS}"

    def loading_message(self) -> str:
        return "Loading the text reader (OCR)…"

    def _load(self) -> None:
        from core.models import ocr_onnx

        folder = self.model_dir or bundled_models()
        if folder is None:
            raise ModelLoadError(f"Reading text in pictures needs {PACKAGE}'s models: {INSTALL_HINT}")
        missing = [name for name in (ocr_onnx.DETECTOR, ocr_onnx.RECOGNISER) if not (folder / name).is_file()]
        if missing:
            raise ModelLoadError(f"Reading text in pictures needs {', '.join(missing)} in {folder}: {INSTALL_HINT}")
        try:
            self._detector = ocr_onnx.new_session(folder / ocr_onnx.DETECTOR, self.threads)
            self._recogniser = ocr_onnx.new_session(folder / ocr_onnx.RECOGNISER, self.threads)
            self._alphabet = ocr_onnx.characters(self._recogniser)
        except Exception as e:  # no onnxruntime, one that fails to load, or damaged model files
            raise load_error(e) from e
        log.info("loaded the text reader %s from %s (%d threads)", self.model_id, folder, self.threads)

    def read(self, image: Image.Image) -> list[TextLine]:
        """The text in ``image``, in reading order (rows top to bottom, each left to right); ``[]`` if none.

        Boxes are in ``image``'s own pixels, whatever shrinking happened first.
        """
        from core.models import ocr_onnx

        self.load()
        small, scale = _shrunk(image, self.max_side)
        with self._run_lock:
            boxes = ocr_onnx.detect(self._detector, small, self.detect_side)
            if not boxes:
                return []
            strips = [ocr_onnx.crop(small, box) for box in boxes]
            read = ocr_onnx.recognise(self._recogniser, self._alphabet, strips)
        lines = []
        for box, (text, confidence) in zip(boxes, read, strict=True):
            text = text.strip()
            if confidence < self.min_confidence or not _plausible(text, confidence):
                continue
            quad = tuple((float(x) / scale, float(y) / scale) for x, y in box)
            lines.append(TextLine(text, min(1.0, max(0.0, confidence)), quad))  # type: ignore[arg-type]
        return [line for row in rows(lines) for line in row]


def _plausible(text: str, confidence: float) -> bool:
    """False for what photos without text yield: pieces with no letter or digit (a row of stars on
    a uniform), and lone characters read without conviction (a cup's rim read as "O" at 0.51)."""
    alphanumeric = sum(ch.isalnum() for ch in text)
    return alphanumeric > 1 or (alphanumeric == 1 and confidence >= LONE_CHARACTER_CONFIDENCE)


def _shrunk(image: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    """``image`` as RGB with its long side at most ``max_side``, and the factor it was scaled by."""
    if image.mode != "RGB":
        # Transparent parts become white, not whatever colour they hide: stickers' text is mostly dark.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    longest = max(image.size)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # reducing_gap: a cheap box reduction first, then the filter; far faster on huge photos.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), scale


def _height(box: Quad) -> float:
    return (math.dist(box[0], box[3]) + math.dist(box[1], box[2])) / 2


def rows(lines: Sequence[TextLine]) -> list[list[TextLine]]:
    """``lines`` grouped into rows of text, top to bottom, each row left to right.

    The picture's tilt (the median slope of the boxes' top edges) is undone first, so a sign
    photographed at 15 degrees still reads row by row. A piece joins a row when its centre lies
    within half a text height of the row's.
    """
    if not lines:
        return []
    angles = [math.atan2(ln.box[1][1] - ln.box[0][1], ln.box[1][0] - ln.box[0][0]) for ln in lines]
    tilt = statistics.median(angles)
    cos, sin = math.cos(-tilt), math.sin(-tilt)

    def centre(line: TextLine) -> Point:
        x = sum(p[0] for p in line.box) / 4
        y = sum(p[1] for p in line.box) / 4
        return x * cos - y * sin, x * sin + y * cos

    placed = sorted(((centre(ln), _height(ln.box), ln) for ln in lines), key=lambda item: item[0][1])
    grouped: list[list[tuple[Point, float, TextLine]]] = []
    for item in placed:
        (_, y), height, _ = item
        if grouped:
            row = grouped[-1]
            row_y = statistics.fmean(member[0][1] for member in row)
            row_height = statistics.fmean(member[1] for member in row)
            if abs(y - row_y) < 0.5 * min(height, row_height):
                row.append(item)
                continue
        grouped.append([item])
    return [[member[2] for member in sorted(row, key=lambda member: member[0][0])] for row in grouped]


def text_of(lines: Sequence[TextLine]) -> str:
    """The text of ``lines`` as it reads: a row's pieces joined by spaces, rows by newlines."""
    return "\n".join(" ".join(line.text for line in row) for row in rows(lines))
