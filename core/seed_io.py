"""Moving the seed notebook's pickled database in and out of the engine's gallery."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from core.engine import Engine
from core.errors import DimensionMismatchError, FileMissingError, ImageError
from core.galleries import GLOBAL_COLLECTION
from core.images import DecodedImage
from core.records import NewImage
from core.seed_format import read_seed_database, write_seed_database


@dataclass(frozen=True)
class ImportReport:
    added: int
    updated: int
    without_file: int


async def import_seed(engine: Engine, path: str | Path, *, collection: str = GLOBAL_COLLECTION) -> ImportReport:
    """Import a seed pickle; vectors are kept bit for bit, image files copied when present."""
    entries = read_seed_database(path)
    index = await engine.index()
    for n, entry in enumerate(entries):
        if entry["embedding"].shape[0] != index.dim:
            raise DimensionMismatchError(
                f"Entry {n} has {entry['embedding'].shape[0]}-dimensional vectors, but {engine.model_id} "
                f"makes {index.dim}-dimensional ones; import it with the model that made it "
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
        rec = await engine.store.find_by_sha256(collection, sha)
        if rec is not None:
            await engine.store.update_image(
                rec.id, label=entry["label"], description=entry["description"], vector=vector,
                model_id=engine.model_id,
            )
            index.add(collection, [rec.id], vector[None, :])
            updated += 1
            continue
        relative = engine.media.put(decoded.data, sha, decoded.extension) if decoded else None
        new = NewImage(
            collection=collection, label=entry["label"], description=entry["description"], sha256=sha,
            width=decoded.width if decoded else 0, height=decoded.height if decoded else 0, file=relative,
            source_path=entry["path"] or None, added_by="import",
        )
        image_id = await engine.store.insert_image(new, vector, engine.model_id)
        index.add(collection, [image_id], vector[None, :])
        added += 1
    return ImportReport(added=added, updated=updated, without_file=without_file)

async def export_seed(engine: Engine, path: str | Path, *, collection: str = GLOBAL_COLLECTION) -> int:
    """Write ``collection`` as a seed pickle (vectors exactly as stored); returns the count."""
    records = await engine.store.list_images(collection)
    vectors = await engine.store.vectors_for([r.id for r in records], engine.model_id)
    entries = [
        {"path": engine.path_of(r) or "", "embedding": vectors[r.id], "description": r.description, "label": r.label}
        for r in records
        if r.id in vectors
    ]
    write_seed_database(entries, path)
    return len(entries)
