"""The shapes of the image database's rows, and how vectors are kept in it (float32 BLOBs)."""

from __future__ import annotations

import json
from dataclasses import dataclass

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


def vector_to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").reshape(-1).tobytes()


def blob_to_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def search_text(label: str, description: str) -> str:
    """Casefolded text that word queries match against (SQLite's lower() is ASCII-only)."""
    return f"{label}\n{description}".casefold()
