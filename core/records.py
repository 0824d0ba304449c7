"""The shapes of the image database's rows, and how vectors are kept in it (float32 BLOBs)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImageRecord:
    """One row of the images table."""

    id: int
    collection: str
    label: str
    description: str
    caption: str | None
    sha256: str
    width: int
    height: int
    added_by: str | None
    created_at: str
    file: str | None
    source_path: str | None
    colors: str = "[]"  # JSON list of {"hex", "name", "percent"}
    color_families: str = ""
    # The source file's size and mtime when it was indexed: an unchanged file is not decoded again.
    source_size: int | None = None
    source_mtime_ns: int | None = None

    @property
    def color_list(self) -> list[dict[str, object]]:
        return list(json.loads(self.colors or "[]"))


@dataclass(frozen=True)
class NewImage:
    """What :meth:`Store.insert_image` needs to create a row."""

    collection: str
    label: str
    description: str
    sha256: str
    width: int
    height: int
    file: str | None
    source_path: str | None = None
    added_by: str | None = None
    caption: str | None = None
    colors: str = "[]"
    color_families: str = ""
    source_size: int | None = None
    source_mtime_ns: int | None = None


@dataclass(frozen=True)
class PictureText:
    """The text read in one picture (OCR), as stored: its lines in reading order with the reader's
    confidence, and the folded form searches match (core.search.ocr_text.fold: no case, accents,
    spaces or punctuation). No lines means the picture was read and holds no text."""

    lines: tuple[tuple[str, float], ...]
    folded: str
    model_id: str

    @property
    def text(self) -> str:
        """The lines, one per line."""
        return "\n".join(line for line, _ in self.lines)


@dataclass(frozen=True)
class SourceFile:
    """The file an image was indexed from, as it was then: re-indexing compares size and mtime."""

    path: str
    size: int | None = None
    mtime_ns: int | None = None

    @classmethod
    def of(cls, path: str | Path) -> SourceFile:
        """The resolved path and its current size and mtime (blocking: a stat call)."""
        resolved = Path(path).resolve()
        st = resolved.stat()
        return cls(str(resolved), st.st_size, st.st_mtime_ns)


def vector_to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").reshape(-1).tobytes()


def blob_to_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def search_text(label: str, description: str) -> str:
    """Casefolded text that word queries match against (SQLite's lower() is ASCII-only)."""
    return f"{label}\n{description}".casefold()
