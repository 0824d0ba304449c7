"""Moving the seed notebook's pickled database in and out of the engine's gallery."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from core.errors import DimensionMismatchError, FileMissingError, ImageError
from core.galleries import GLOBAL_COLLECTION
from core.gallery.engine import Engine
from core.media.images import DecodedImage
from core.seed.format import read_seed_database, write_seed_database


@dataclass(frozen=True)
class ImportReport:
    added: int
    updated: int
    without_file: int


async def import_seed(engine: Engine, path: str | Path, *, collection: str = GLOBAL_COLLECTION) -> ImportReport:
    """Import a seed pickle; vectors are kept bit for bit, image files copied when present."""
    entries = read_seed_database(path)
    dim = await engine.dim()
    for n, entry in enumerate(entries):
        if entry["embedding"].shape[0] != dim:
            raise DimensionMismatchError(
                f"Entry {n} has {entry['embedding'].shape[0]}-dimensional vectors, but {engine.model_id} "
                f"makes {dim}-dimensional ones; import it with the model that made it "
                "(CLIPBOT_CLIP_MODEL)."
            )
    added = updated = without_file = 0
    for entry in entries:
        decoded: DecodedImage | None = None
        try:
            decoded = await engine.decode(entry["path"]) if entry["path"] else None
        except (FileMissingError, ImageError):
            decoded = None
        vector = entry["embedding"]
        if decoded is None:
            without_file += 1
            sha = "vector:" + hashlib.sha256(vector.tobytes() + entry["path"].encode()).hexdigest()
        else:
            sha = decoded.sha256
        status = await engine.add_with_vector(
            collection=collection, label=entry["label"], description=entry["description"], vector=vector,
            decoded=decoded, sha256=sha, source_path=entry["path"] or None, added_by="import",
        )
        added += status == "added"
        updated += status == "updated"
    return ImportReport(added=added, updated=updated, without_file=without_file)


async def export_seed(engine: Engine, path: str | Path, *, collection: str = GLOBAL_COLLECTION) -> int:
    """Write ``collection`` as a seed pickle (vectors exactly as stored); returns the count."""
    records = await engine.list_images(collection)
    vectors = await engine.vectors_for([r.id for r in records])
    entries = [
        {"path": engine.path_of(r) or "", "embedding": vectors[r.id], "description": r.description, "label": r.label}
        for r in records
        if r.id in vectors
    ]
    write_seed_database(entries, path)
    return len(entries)
