"""Copying a gallery from one backend to another (SQLite to PostgreSQL, say), resumably.

Only the :class:`GalleryStorage` interface is used, so any pair of backends works. Each image is
copied with every model's vector; one the target already holds (same collection and bytes) is
skipped, but vectors it lacks are added, so a copy that stopped half way is finished by running it
again. Ids are the target's own; conversation state (result pages, rate limits) is not copied.
Repost fingerprints (sightings) are, each one the target lacks (same chat, message, hash and model).
Picture files are not touched: both galleries name them relative to the same media folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from core.records import ImageRecord, NewImage
from core.storage.base import GalleryStorage, Sighting


@dataclass(frozen=True)
class CopyReport:
    """What a copy did, and whether the target now holds what the source holds."""

    copied: int
    skipped: int  # already in the target
    vectors_added: int  # to images that were already there
    collections: dict[str, tuple[int, int]]  # name: (images in source, images in target)
    vectors: dict[str, tuple[int, int]]  # model id: (vectors in source, vectors in target)
    without_vector: list[int] = field(default_factory=list)  # source ids with no vector at all: not copied
    sightings_copied: int = 0
    sightings: dict[str, tuple[int, int]] = field(default_factory=dict)  # chat: (in source, in target)

    @property
    def matches(self) -> bool:
        return all(a == b for a, b in self.collections.values()) and all(a == b for a, b in self.vectors.values()) \
            and all(a == b for a, b in self.sightings.values())


def new_image(record: ImageRecord) -> NewImage:
    """Everything of a row that a new row in another gallery takes (not its id or creation time)."""
    return NewImage(
        collection=record.collection, label=record.label, description=record.description, sha256=record.sha256,
        width=record.width, height=record.height, file=record.file, source_path=record.source_path,
        added_by=record.added_by, caption=record.caption, colors=record.colors,
        color_families=record.color_families, source_size=record.source_size,
        source_mtime_ns=record.source_mtime_ns,
    )


async def copy_gallery(source: GalleryStorage, target: GalleryStorage, *,
                       progress: Callable[[int], None] | None = None, batch: int = 200) -> CopyReport:
    """Copy every image of ``source`` with its vectors into ``target`` (both open), oldest first.

    ``progress`` is called with the number of source images handled so far after each one. An
    error (or ``progress`` raising) stops the copy; what was copied stays, and running the copy
    again carries on from there.
    """
    models = sorted(await source.embedding_counts())
    images = await source.list_images()
    there = {(r.collection, r.sha256): r.id for r in await target.list_images()}
    copied = skipped = added = done = 0
    without_vector: list[int] = []
    for start in range(0, len(images), max(1, batch)):
        chunk = images[start:start + max(1, batch)]
        ids = [r.id for r in chunk]
        vectors = {model: await source.vectors_for(ids, model) for model in models}
        existing = [there[(r.collection, r.sha256)] for r in chunk if (r.collection, r.sha256) in there]
        have = {model: set(await target.vectors_for(existing, model)) for model in models} if existing else {}
        for record in chunk:
            mine = {model: vectors[model][record.id] for model in models if record.id in vectors[model]}
            target_id = there.get((record.collection, record.sha256))
            if target_id is None:
                if not mine:
                    without_vector.append(record.id)
                else:
                    first = next(iter(mine))
                    target_id, created = await target.insert_image(new_image(record), mine.pop(first), first)
                    there[(record.collection, record.sha256)] = target_id
                    copied += int(created)
                    skipped += int(not created)  # another process was first
                    for model, vector in mine.items():  # set_vector replaces: harmless if already there
                        await target.set_vector(target_id, vector, model)
            else:
                skipped += 1
                for model, vector in mine.items():
                    if target_id not in have.get(model, ()):
                        await target.set_vector(target_id, vector, model)
                        added += 1
            done += 1
            if progress is not None:
                progress(done)
    sightings_copied = await copy_sightings(source, target)
    source_counts, target_counts = await source.collection_counts(), await target.collection_counts()
    source_vectors, target_vectors = await source.embedding_counts(), await target.embedding_counts()
    source_seen, target_seen = await source.sighting_counts(), await target.sighting_counts()
    return CopyReport(
        copied=copied, skipped=skipped, vectors_added=added,
        collections={name: (source_counts.get(name, 0), target_counts.get(name, 0))
                     for name in sorted(source_counts.keys() | target_counts.keys())},
        vectors={model: (source_vectors.get(model, 0), target_vectors.get(model, 0))
                 for model in sorted(source_vectors.keys() | target_vectors.keys())},
        without_vector=without_vector,
        sightings_copied=sightings_copied,
        sightings={chat: (source_seen.get(chat, 0), target_seen.get(chat, 0))
                   for chat in sorted(source_seen.keys() | target_seen.keys())},
    )


async def copy_sightings(source: GalleryStorage, target: GalleryStorage) -> int:
    """Copy the repost fingerprints the target lacks, chat by chat; returns how many were copied."""
    copied = 0
    for chat in await source.sighting_counts():
        there = {_key(s) for s in await target.sightings(chat, None, -math.inf)}
        for sighting in reversed(await source.sightings(chat, None, -math.inf)):  # oldest first
            if _key(sighting) not in there:
                await target.add_sighting(sighting)
                there.add(_key(sighting))
                copied += 1
    return copied


def _key(sighting: Sighting) -> tuple[str, int, str]:
    return sighting.message_id, sighting.phash, sighting.model_id
