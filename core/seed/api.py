"""The seed notebook's six functions, on top of the engine's decoder, encoder and ranking.

``database`` is the seed's list of ``{"path", "embedding", "description", "label"}`` dicts
or the path of its pickle file (read with the restricted unpickler).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError
from core.media.images import decode_image
from core.models.clip import DEFAULT_CLIP_MODEL, ClipEncoder, ImageTextEncoder
from core.search.words import hybrid_order, matches_words, query_words
from core.seed.format import read_seed_database, validate_entries, write_seed_database
from core.storage.vector_index import unit_rows

Database = list[dict[str, Any]] | str | Path

ENCODER_ENTRY_POINT = "clipbot.seed_encoder"
_encoder: ImageTextEncoder | None = None
_encoder_lock = threading.Lock()


def use_encoder(encoder: ImageTextEncoder | None) -> None:
    """Make the seed functions use ``encoder`` (``None`` goes back to the configured model)."""
    global _encoder
    with _encoder_lock:
        _encoder = encoder


def seed_encoder() -> ImageTextEncoder:
    """The encoder the seed functions use: the configured CLIP model unless one was set."""
    global _encoder
    with _encoder_lock:
        if _encoder is None:
            _encoder = configured_encoder()
        return _encoder


def configured_encoder() -> ImageTextEncoder:
    """The encoder the installed application configures, else CLIP's default model.

    The seed API takes no configuration, so the application that reads the settings offers a
    factory under the ``clipbot.seed_encoder`` entry point (clipbot's own is in pyproject.toml).
    Looking it up by name keeps core free of imports from the application above it.
    """
    for entry in entry_points(group=ENCODER_ENTRY_POINT):
        factory: Callable[[], ImageTextEncoder] = entry.load()
        return factory()
    return ClipEncoder(DEFAULT_CLIP_MODEL)


def encode_image(image_path: str | Path) -> np.ndarray:
    """Encode one image file: a ``(dim,)`` float32 unit vector."""
    vectors = seed_encoder().encode_images([decode_image(image_path).image])
    vector: np.ndarray = vectors[0]
    return vector


def build_database(
    image_paths: Sequence[str | Path],
    descriptions: Sequence[str],
    labels: Sequence[str],
    database_path: str | Path,
) -> list[dict[str, Any]]:
    """Encode each image and save the seed's pickled database; returns its entries."""
    if not len(image_paths) == len(descriptions) == len(labels):
        raise InputError(
            f"build_database needs one description and one label per image: got {len(image_paths)} images, "
            f"{len(descriptions)} descriptions and {len(labels)} labels."
        )
    images = [decode_image(p).image for p in image_paths]
    vectors = seed_encoder().encode_images(images)
    entries = [
        {"path": str(p), "embedding": vectors[i], "description": str(descriptions[i]), "label": str(labels[i])}
        for i, p in enumerate(image_paths)
    ]
    write_seed_database(entries, database_path)
    return entries


def calculate_cosine_similarity(database: Database, query_image_path: str | Path) -> list[float]:
    """Cosine similarity of the query image with every entry, in database order."""
    _, matrix = _load(database)
    return (matrix @ encode_image(query_image_path)).tolist() if len(matrix) else []


def find_closest_match(query_image_path: str | Path, database: Database) -> tuple[dict[str, Any], float]:
    """The entry most similar to the query image, and its cosine similarity."""
    entries, matrix = _load(database)
    if not entries:
        raise InputError("The database is empty: build_database or `clipbot index` some images first.")
    scores = matrix @ encode_image(query_image_path)
    best = int(np.argmax(scores))
    return entries[best], float(scores[best])


def find_image_by_description_or_label(query: str, database: Database) -> list[dict[str, Any]]:
    """Entries ranked for a text query, best first.

    Entries whose label or description contain the query's words come first, then the rest;
    both ordered by CLIP text-to-image similarity (the engine's hybrid rule).
    """
    entries, matrix = _load(database)
    if not entries:
        return []
    scores = matrix @ seed_encoder().encode_texts([query])[0]
    words = query_words(query)
    mask = np.array([matches_words(words, str(e.get("label", "")), str(e.get("description", ""))) for e in entries])
    return [entries[i] for i in hybrid_order(scores, mask, len(entries))]


def find_best_match(database: Database, query_image_path: str | Path, labels: Sequence[str]) -> tuple[str, float]:
    """The label of the entry closest to the query image, and its score; ``labels[i]`` names entry ``i``."""
    entries, matrix = _load(database)
    if len(labels) != len(entries):
        raise InputError(f"find_best_match needs one label per entry: {len(labels)} labels, {len(entries)} entries.")
    if not entries:
        raise InputError("The database is empty: build_database or `clipbot index` some images first.")
    scores = matrix @ encode_image(query_image_path)
    best = int(np.argmax(scores))
    return str(labels[best]), float(scores[best])


def _load(database: Database) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Entries as given (list) or as read (pickle), and their unit-normalised vector matrix."""
    if isinstance(database, (str, Path)):
        entries = read_seed_database(database)
        checked = entries
    else:
        entries = list(database)
        checked = validate_entries(entries)
    if not checked:
        return entries, np.zeros((0, 0), dtype=np.float32)
    return entries, unit_rows(np.stack([e["embedding"] for e in checked]))
