"""Copying a gallery from one backend to another (SQLite to PostgreSQL, say), resumably.

Only the :class:`GalleryStorage` interface is used, so any pair of backends works. Each image is
copied with every model's vector, in batches (one transaction each) inside a bulk load of the
target (PostgreSQL builds its search index after the rows, not row by row); one the target
already holds (same collection and bytes) is skipped, but vectors it lacks are added, so a copy
that stopped half way is finished by running it again. Ids are the target's own. Repost
fingerprints (sightings) are copied, each one the target lacks (same chat, message, hash and
model). The text read in pictures (OCR) goes with its image, re-keyed to the target's id, where
the target has none for it yet. Conversation state is copied kind by kind as the caller says
(:class:`StateKind`: this wing cannot know what the chat keeps): a carried kind's live values the
target lacks, re-keyed where a key names an image; the kinds left behind are counted. Picture files are not touched:
both galleries name them relative to the same media folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import numpy as np

from core.records import ImageRecord, NewImage
from core.storage.base import GalleryStorage, Sighting
from core.storage.state import StateItem

# A carried kind's key in the target, from its key in the source and the source -> target ids of
# the images the target holds; None leaves the value behind (it names an image not copied).
Rekey = Callable[[str, Mapping[int, int]], str | None]
STATE_BATCH = 500  # values stored per transaction


@dataclass(frozen=True)
class StateKind:
    """One kind of conversation state, as a copy treats it.

    Carried: its live values are copied with the lifetime they have left, never over a live value
    the target holds under the same key; ``rekey`` translates keys that name an image. Not
    carried (values that point at the source's ids, or expire soon anyway): only counted. A kind
    the caller does not name is neither copied nor counted.
    """

    kind: str
    name: str  # as operators read it: "chat switches"
    carry: bool = True
    rekey: Rekey | None = None


@dataclass(frozen=True)
class StateCopied:
    """What a copy did with one carried kind of conversation state."""

    copied: int = 0
    kept: int = 0  # the target held a live value under the key already: that one stays
    orphaned: int = 0  # their image was not copied: left behind


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
    texts_copied: int = 0  # texts read in pictures (OCR)
    texts: tuple[int, int] = (0, 0)  # (source texts, of those the target holds for the same images)
    state: dict[str, StateCopied] = field(default_factory=dict)  # carried kinds, by name
    left_behind: dict[str, int] = field(default_factory=dict)  # kinds not carried, by name: live values in source

    @property
    def matches(self) -> bool:
        return all(a == b for a, b in self.collections.values()) and all(a == b for a, b in self.vectors.values()) \
            and all(a == b for a, b in self.sightings.values()) and self.texts[0] == self.texts[1]


def new_image(record: ImageRecord) -> NewImage:
    """Everything of a row that a new row in another gallery takes (not its id or creation time)."""
    return NewImage(
        collection=record.collection, label=record.label, description=record.description, sha256=record.sha256,
        width=record.width, height=record.height, file=record.file, source_path=record.source_path,
        added_by=record.added_by, caption=record.caption, colors=record.colors,
        color_families=record.color_families, source_size=record.source_size,
        source_mtime_ns=record.source_mtime_ns,
    )


async def copy_gallery(source: GalleryStorage, target: GalleryStorage, *, state: Sequence[StateKind] = (),
                       progress: Callable[[int], None] | None = None, batch: int = 500) -> CopyReport:
    """Copy every image of ``source`` with its vectors into ``target`` (both open), oldest first,
    then the repost sightings and the conversation state ``state`` names (see :func:`copy_state`).

    Images go in ``batch`` at a time (one :meth:`insert_images` per model that a new image's
    first vector is of), inside the target's :meth:`bulk_load` of each model. ``progress`` is
    called with the number of source images handled so far, for each image of a batch once the
    batch is stored. An error (or ``progress`` raising) stops the copy; what was stored stays,
    and running the copy again carries on from there.
    """
    counts, there_counts = await source.embedding_counts(), await target.embedding_counts()
    models = sorted(counts)
    images = await source.list_images()
    there = {(r.collection, r.sha256): r.id for r in await target.list_images()}
    copied = skipped = added = done = 0
    without_vector: list[int] = []
    async with AsyncExitStack() as loads:
        loading: set[str] = set()
        for start in range(0, len(images), max(1, batch)):
            chunk = images[start:start + max(1, batch)]
            ids = [r.id for r in chunk]
            vectors = {model: await source.vectors_for(ids, model) for model in models}
            for model, found in vectors.items():  # a model's load begins with its first vector (its dimension)
                if found and model not in loading:
                    loading.add(model)
                    dim = len(next(iter(found.values())))
                    await loads.enter_async_context(
                        target.bulk_load(model, dim, max(0, counts[model] - there_counts.get(model, 0))))
            existing = [there[(r.collection, r.sha256)] for r in chunk if (r.collection, r.sha256) in there]
            have = {model: set(await target.vectors_for(existing, model)) for model in models} if existing else {}
            new: dict[str, list[ImageRecord]] = {}  # by the first model each has a vector of
            for record in chunk:
                mine = [model for model in models if record.id in vectors[model]]
                target_id = there.get((record.collection, record.sha256))
                if target_id is not None:
                    skipped += 1
                    for model in mine:
                        if target_id not in have.get(model, ()):
                            await target.set_vector(target_id, vectors[model][record.id], model)
                            added += 1
                elif mine:
                    new.setdefault(mine[0], []).append(record)
                else:
                    without_vector.append(record.id)
            for model, records in new.items():
                stored = await target.insert_images([new_image(r) for r in records],
                                                    np.stack([vectors[model][r.id] for r in records]), model)
                for record, (held, created) in zip(records, stored, strict=True):
                    there[(record.collection, record.sha256)] = held.id
                    copied += int(created)
                    skipped += int(not created)  # another process was first
                    for other in models:  # set_vector replaces: harmless if already there
                        if other != model and record.id in vectors[other]:
                            await target.set_vector(held.id, vectors[other][record.id], other)
            for _ in chunk:
                done += 1
                if progress is not None:
                    progress(done)
    sightings_copied = await copy_sightings(source, target)
    # Every source image the target now holds, copied or there before, under the target's id.
    moved = {r.id: there[(r.collection, r.sha256)] for r in images if (r.collection, r.sha256) in there}
    texts_copied, texts = await copy_texts(source, target, moved, batch=max(1, batch))
    carried, left_behind = await copy_state(source, target, state, moved)
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
        sightings_copied=sightings_copied, texts_copied=texts_copied, texts=texts,
        sightings={chat: (source_seen.get(chat, 0), target_seen.get(chat, 0))
                   for chat in sorted(source_seen.keys() | target_seen.keys())},
        state=carried, left_behind=left_behind,
    )


async def copy_texts(source: GalleryStorage, target: GalleryStorage, ids: Mapping[int, int], *,
                     batch: int = 500) -> tuple[int, tuple[int, int]]:
    """Copy the texts read in the source's pictures to the target's copies of those images (``ids``:
    source id -> target id), a batch per transaction; a text the target holds already is kept.

    Returns how many were copied, and ``(source texts, how many of their images have a text in the
    target)``: equal when every text arrived.
    """
    copied = found = held = 0
    mine = sorted(ids)
    for start in range(0, len(mine), batch):
        texts = await source.texts_for(mine[start:start + batch])
        there = set(await target.texts_for([ids[i] for i in texts]))
        copied += await target.set_texts([(ids[i], text) for i, text in texts.items() if ids[i] not in there])
        found += len(texts)
        held += len(set(await target.texts_for([ids[i] for i in texts])))
    return copied, (found, held)


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


async def copy_state(source: GalleryStorage, target: GalleryStorage, kinds: Sequence[StateKind],
                     ids: Mapping[int, int]) -> tuple[dict[str, StateCopied], dict[str, int]]:
    """Copy the live values of the carried ``kinds`` that the target lacks, re-keyed where they
    name an image (``ids``: source id -> target id); count those of the others.

    Returns what was done per carried kind and the live values left behind per other kind, both
    by name. A value the target holds already is kept, so running the copy again stores nothing twice.
    """
    carried: dict[str, StateCopied] = {}
    left_behind: dict[str, int] = {}
    for kind in kinds:
        items = await source.state_items(kind.kind)
        if not kind.carry:
            left_behind[kind.name] = left_behind.get(kind.name, 0) + len(items)
            continue
        moved: list[StateItem] = []
        for item in items:
            key = item.key if kind.rekey is None else kind.rekey(item.key, ids)
            if key is not None:
                moved.append(item._replace(key=key))
        copied = 0
        for start in range(0, len(moved), STATE_BATCH):
            copied += await target.add_state(kind.kind, moved[start:start + STATE_BATCH])
        carried[kind.name] = StateCopied(copied=copied, kept=len(moved) - copied, orphaned=len(items) - len(moved))
    return carried, left_behind


def _key(sighting: Sighting) -> tuple[str, int, str]:
    return sighting.message_id, sighting.phash, sighting.model_id
