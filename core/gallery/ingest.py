"""Bulk indexing for operators: walk folders, decode ahead while the model encodes, store.

Re-indexing a folder is a sync, as rclip does it: files whose path, size and mtime are unchanged
are not decoded again, a file edited in place replaces its old entry (same id, label and
description), and with ``prune`` the entries whose file is gone are removed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import ClipbotError, FileMissingError, InputError
from core.gallery.batch_decode import decode_files
from core.gallery.engine import Engine
from core.gallery.sources import Collected, IngestItem, under
from core.media.images import DecodedImage
from core.records import ImageRecord, SourceFile

__all__ = ["IngestItem", "IngestSummary", "ingest", "prune", "reindex", "reindex_targets"]


@dataclass
class IngestSummary:
    added: int = 0
    changed: int = 0  # edited in place, moved, relabelled, or re-encoded by reindex
    unchanged: int = 0
    pruned: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


@dataclass(frozen=True)
class _Pending:
    """A file that must be decoded: new, or changed since its entry was made (``record``)."""

    item: IngestItem
    source: SourceFile
    record: ImageRecord | None


async def ingest(
    engine: Engine,
    items: Iterable[IngestItem],
    *,
    collection: str,
    batch_size: int | None = None,
    added_by: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Index ``items`` into ``collection``, skipping files unchanged since they were indexed.

    The next batch is decoded on the decode threads while the current one is encoded on the
    inference thread, so neither waits on the other. A bad file is skipped with its reason.
    Only files that need decoding load the model: re-indexing an unchanged folder does not.
    ``batch_size`` None: the encoder's choice for its device (:meth:`Engine.index_batch_size`).
    Images are searchable once stored; BLIP never runs here: new images without a description
    are stored uncaptioned, for :func:`core.gallery.caption_pass.caption_pending` to caption afterwards.
    """
    summary = IngestSummary()
    items = list(items)
    known = {r.source_path: r for r in await engine.indexed_files(collection)}
    sources = await asyncio.to_thread(lambda: [_stat(item) for item in items])
    todo: list[_Pending] = []
    for item, source in zip(items, sources, strict=True):
        if isinstance(source, ClipbotError):
            summary.skipped.append((str(item.path), str(source)))
        elif (record := known.get(source.path)) is not None and _same_file(record, source):
            await _keep(engine, record, item, summary)
        else:
            todo.append(_Pending(item, source, record))
            continue
        if progress:
            progress(1)
    if not todo:
        return summary
    size = max(1, batch_size or await engine.index_batch_size())
    side = await engine.index_side()
    batches = [todo[i:i + size] for i in range(0, len(todo), size)]
    async with engine.bulk_load(len(todo)):
        await _pipeline(engine, batches, side, collection, added_by, summary, progress)
    return summary


async def _pipeline(engine: Engine, batches: list[list[_Pending]], side: int, collection: str,
                    added_by: str | None, summary: IngestSummary, progress: Callable[[int], None] | None) -> None:
    """Read batch n+1 on the decode threads while the model encodes batch n and batch n-1 is stored."""
    seen: dict[str, str] = {}
    reading = asyncio.ensure_future(_read(engine, batches[0], side))
    storing: asyncio.Task[None] | None = None
    try:
        for n, batch in enumerate(batches):
            decoded = await reading
            if n + 1 < len(batches):
                reading = asyncio.ensure_future(_read(engine, batches[n + 1], side))
            good: list[tuple[_Pending, DecodedImage, np.ndarray]] = []
            for job, result in zip(batch, decoded, strict=True):
                if isinstance(result, ClipbotError):
                    summary.skipped.append((str(job.item.path), str(result)))
                elif result[0].sha256 in seen:
                    summary.skipped.append((str(job.item.path), f"same picture as {seen[result[0].sha256]}"))
                else:
                    seen[result[0].sha256] = str(job.item.path)
                    good.append((job, *result))
            # Three stages: the model encodes batch n as soon as it is read, while batch n+1 is read
            # and batch n-1 stored; at most those three batches are in flight.
            encoding = asyncio.ensure_future(engine.encode_pixels(_stacked([p for _, _, p in good]))) \
                if good else None
            if storing is not None:
                await storing
            vectors = await encoding if encoding is not None else np.zeros((0, 1), np.float32)
            storing = asyncio.ensure_future(_store(engine, [(*g, v) for g, v in zip(good, vectors, strict=True)],
                                                   len(batch), collection, added_by, summary, progress))
        if storing is not None:
            await storing
    finally:
        reading.cancel()
        if storing is not None and not storing.done():
            storing.cancel()


def _stat(item: IngestItem) -> SourceFile | ClipbotError:
    try:
        return SourceFile.of(item.path)
    except FileNotFoundError:
        return FileMissingError(f"No such file: {item.path}")
    except OSError as exc:
        return FileMissingError(f"Cannot read {item.path}: {exc.strerror or exc}")


def _same_file(record: ImageRecord, source: SourceFile) -> bool:
    return record.source_size == source.size and record.source_mtime_ns == source.mtime_ns


async def _keep(engine: Engine, record: ImageRecord, item: IngestItem, summary: IngestSummary) -> None:
    """An unchanged file: nothing to decode, but a new label or description given this time is applied."""
    try:
        # Compared as stored (cleaned): a folder named "My  Photos" is not a new label every run.
        label = record.label if item.label is None else engine.text_limits.label(item.label)
        description = (record.description if item.description is None
                       else engine.text_limits.description(item.description))
        if (label, description) == (record.label, record.description):
            summary.unchanged += 1
            return
        await engine.relabel(record.id, label=label, description=description)
    except InputError as exc:
        summary.skipped.append((str(item.path), str(exc)))
        return
    summary.changed += 1


async def _store(engine: Engine, good: list[tuple[_Pending, DecodedImage, np.ndarray, np.ndarray]],
                 batch_size: int, collection: str, added_by: str | None, summary: IngestSummary,
                 progress: Callable[[int], None] | None) -> None:
    """Store a batch already encoded (``good``: the job, the picture, its model inputs and vector)."""
    fresh: list[tuple[_Pending, DecodedImage, np.ndarray]] = []
    held = await engine.find_pictures(collection, [decoded.sha256 for _, decoded, _, _ in good])
    for job, decoded, pixels, vector in good:
        record = job.record
        if record is not None and decoded.sha256 == record.sha256:  # touched, not edited
            await engine.record_source(record.id, job.source)
            await _keep(engine, record, job.item, summary)
            continue
        other = held.get(decoded.sha256)
        if record is not None:
            if other is None:  # edited in place: the entry keeps its id, label and description
                await engine.replace_picture(record, decoded, source=job.source, pixels=pixels,
                                             label=job.item.label, description=job.item.description,
                                             defer_enrichment=True)
                summary.changed += 1
                continue
            await engine.remove(record.id)  # edited into a copy of another entry: that one stays
            summary.changed += 1
        if other is not None and other.source_path and other.source_path != job.source.path \
                and await asyncio.to_thread(os.path.exists, other.source_path):
            if record is None:
                summary.skipped.append((str(job.item.path), f"same picture as {other.source_path} (#{other.id})"))
            continue
        fresh.append((job, decoded, vector))
    if fresh:
        results = await engine.add_decoded(
            [d for _, d, _ in fresh], collection=collection, labels=[j.item.label for j, _, _ in fresh],
            descriptions=[j.item.description for j, _, _ in fresh], added_by=added_by,
            sources=[j.source for j, _, _ in fresh], vectors=np.stack([v for _, _, v in fresh]),
            defer_enrichment=True,
        )
        for (job, _, _), r in zip(fresh, results, strict=True):
            if job.record is None:  # a replaced entry was counted above
                summary.added += r.status == "added"
                summary.changed += r.status == "updated"
    if progress:
        progress(batch_size)


def _stacked(rows: Sequence[np.ndarray]) -> np.ndarray:
    """The model inputs of ``rows`` as one array. They are usually a whole batch's rows in order,
    views of the array :func:`_read` made: that array is used as it is, since a copy of a batch
    (600 KB an image) cost the event loop's thread a fifth of its time."""
    base = rows[0].base if rows else None
    if isinstance(base, np.ndarray) and len(base) == len(rows) and base.shape[1:] == rows[0].shape:
        start, step = base.__array_interface__["data"][0], base.strides[0]
        if all(r.base is base and r.__array_interface__["data"][0] == start + i * step for i, r in enumerate(rows)):
            return base
    return np.stack(rows)


async def prune(engine: Engine, collected: Collected, collection: str) -> int:
    """Remove the entries of ``collection`` indexed from under the walked folders (or from roots
    that are gone) whose file is no longer among those found; returns how many."""
    roots = [*collected.folders, *collected.missing]
    stale = [
        r for r in await engine.indexed_files(collection)
        if r.source_path and under(r.source_path, roots) and r.source_path not in collected.seen
    ]
    for record in stale:
        await engine.remove(record.id)
    return len(stale)


async def missing_roots_without_entries(engine: Engine, collected: Collected, collection: str) -> list[Path]:
    """Roots that are gone and that no entry came from: mistyped, so nothing should happen."""
    sources = [r.source_path for r in await engine.indexed_files(collection) if r.source_path]
    return [root for root in collected.missing if not any(under(s, [root]) for s in sources)]


async def _read(engine: Engine, batch: Sequence[_Pending], side: int
                ) -> list[tuple[DecodedImage, np.ndarray] | ClipbotError]:
    """Decode and preprocess a batch on the decode threads, while the model encodes the one before."""
    out: list[tuple[DecodedImage, np.ndarray] | ClipbotError] = []
    refused: dict[int, ClipbotError] = {}
    for n, job in enumerate(batch):
        try:
            if job.item.label is not None:
                engine.text_limits.label(job.item.label)
            if job.item.description is not None:
                engine.text_limits.description(job.item.description)
        except ClipbotError as exc:  # refused before any decoding
            refused[n] = exc
    wanted = [n for n in range(len(batch)) if n not in refused]
    decoded = await decode_files(engine, [batch[n].item.path for n in wanted], side=side)
    images = dict(zip(wanted, decoded, strict=True))
    ready = [d for d in decoded if isinstance(d, DecodedImage)]
    pixels = await engine.prepare(ready) if ready else np.zeros(0)
    rows = iter(range(len(ready)))
    for n in range(len(batch)):
        result = refused.get(n) or images[n]
        out.append(result if isinstance(result, ClipbotError) else (result, pixels[next(rows)]))
    return out


async def _decode(engine: Engine, item: IngestItem) -> tuple[DecodedImage, np.ndarray] | ClipbotError:
    """Decode and preprocess one stored picture (reindex)."""
    try:
        decoded = await engine.decode(item.path)
        return decoded, (await engine.prepare([decoded]))[0]
    except ClipbotError as exc:
        return exc


async def reindex_targets(engine: Engine, *, collection: str | None = None,
                          everything: bool = False) -> list[ImageRecord]:
    """The stored images :func:`reindex` would encode: those without a vector for the configured
    model (after a change of CLIPBOT_CLIP_MODEL), or all of them with ``everything``."""
    records = await engine.list_images(collection)
    if everything:
        return records
    have = await engine.vectors_for([r.id for r in records])
    return [r for r in records if r.id not in have]


async def reindex(
    engine: Engine,
    records: Sequence[ImageRecord],
    *,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Encode ``records`` again with the configured model (see :func:`reindex_targets`).

    Works from the stored copies in the media folder, so images added from chats are covered too.
    """
    summary = IngestSummary()
    size = max(1, batch_size or (await engine.index_batch_size() if records else 16))
    for start in range(0, len(records), size):
        batch = records[start:start + size]
        decoded = await asyncio.gather(*(_decode_record(engine, r) for r in batch))
        ready = [(r, d) for r, d in zip(batch, decoded, strict=True) if not isinstance(d, ClipbotError)]
        summary.skipped += [
            (f"#{r.id}", str(d)) for r, d in zip(batch, decoded, strict=True) if isinstance(d, ClipbotError)
        ]
        if ready:
            vectors = await engine.encode_pixels(np.stack([pixels for _, (_, pixels) in ready]))
            for (record, _), vector in zip(ready, vectors, strict=True):
                await engine.store_vector(record.id, vector)
                summary.changed += 1
        if progress:
            progress(len(batch))
    return summary


async def _decode_record(engine: Engine, record: ImageRecord) -> tuple[DecodedImage, np.ndarray] | ClipbotError:
    path = engine.path_of(record)
    if path is None:
        return FileMissingError("no stored picture (imported without its file)")
    return await _decode(engine, IngestItem(Path(path)))
