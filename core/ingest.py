"""Bulk indexing for operators: walk folders, decode ahead while the model encodes, store."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.engine import Engine
from core.errors import ClipbotError, FileMissingError, InputError
from core.images import DecodedImage, is_image_filename
from core.records import ImageRecord


@dataclass(frozen=True)
class IngestItem:
    """One file to index, with the label and description it should get (None keeps the old one)."""

    path: Path
    label: str | None = None
    description: str | None = None


@dataclass
class IngestSummary:
    added: int = 0
    updated: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def read_labels_csv(path: Path) -> dict[Path, tuple[str, str]]:
    """Read a ``path,label,description`` CSV; relative paths are relative to the CSV's folder."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "path" not in reader.fieldnames or "label" not in reader.fieldnames:
                raise InputError(f"{path} needs a header row with the columns path,label,description.")
            rows = list(reader)
    except FileNotFoundError:
        raise FileMissingError(f"No such file: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"Cannot read {path}: {exc}") from None
    out: dict[Path, tuple[str, str]] = {}
    for row in rows:
        if not (row.get("path") or "").strip():
            continue
        target = Path(row["path"].strip())
        if not target.is_absolute():
            target = path.parent / target
        out[target.resolve()] = ((row.get("label") or "").strip(), (row.get("description") or "").strip())
    return out


def collect_items(
    paths: Sequence[Path],
    *,
    label: str | None = None,
    description: str | None = None,
    labels_from_folders: bool = False,
    labels_csv: Path | None = None,
) -> tuple[list[IngestItem], list[tuple[str, str]]]:
    """Expand files and folders into items; returns ``(items, skipped)``.

    Label precedence: the CSV row, then the parent folder's name, then ``label``.
    """
    csv_rows = read_labels_csv(labels_csv) if labels_csv else {}
    skipped: list[tuple[str, str]] = []
    files: list[Path] = []
    for root in paths or list(csv_rows):
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
                    continue
                if is_image_filename(p):
                    files.append(p)
                else:
                    skipped.append((str(p), "not an image file"))
        elif root.is_file():
            files.append(root)
        else:  # a mistyped argument is an error, not a skip: nothing is indexed
            raise FileMissingError(f"No such file or folder: {root}")
    items, seen = [], set()
    for f in files:
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        item_label, item_description = label, description
        if labels_from_folders:
            item_label = f.resolve().parent.name
        if key in csv_rows:
            item_label, item_description = csv_rows[key][0], csv_rows[key][1] or description
        items.append(IngestItem(f, item_label, item_description))
    return items, skipped


async def ingest(
    engine: Engine,
    items: Iterable[IngestItem],
    *,
    collection: str,
    batch_size: int = 16,
    added_by: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Index ``items`` into ``collection``.

    The next batch is decoded on the decode threads while the current one is encoded on the
    inference thread, so neither waits on the other. A bad file is skipped with its reason.
    """
    summary = IngestSummary()
    batches = _batches(list(items), max(1, batch_size))
    seen: dict[str, str] = {}
    if not batches:
        return summary
    pending = [asyncio.ensure_future(_decode(engine, it)) for it in batches[0]]
    storing: asyncio.Task[None] | None = None
    for n, batch in enumerate(batches):
        decoded = await asyncio.gather(*pending)
        pending = [asyncio.ensure_future(_decode(engine, it)) for it in batches[n + 1]] if n + 1 < len(batches) else []
        good: list[tuple[IngestItem, DecodedImage, np.ndarray]] = []
        for item, result in zip(batch, decoded, strict=True):
            if isinstance(result, ClipbotError):
                summary.skipped.append((str(item.path), str(result)))
            elif result[0].sha256 in seen:
                summary.skipped.append((str(item.path), f"same picture as {seen[result[0].sha256]}"))
            else:
                seen[result[0].sha256] = str(item.path)
                good.append((item, *result))
        # Batch n is encoded while batch n-1 is still being stored; at most those two are in flight.
        if storing is not None:
            await storing
        storing = asyncio.ensure_future(_store(engine, good, len(batch), collection, added_by, summary, progress))
    if storing is not None:
        await storing
    return summary


async def _store(engine: Engine, good: list[tuple[IngestItem, DecodedImage, np.ndarray]], batch_size: int,
                 collection: str, added_by: str | None, summary: IngestSummary,
                 progress: Callable[[int], None] | None) -> None:
    if good:
        results = await engine.add_decoded(
            [d for _, d, _ in good], collection=collection, labels=[i.label for i, _, _ in good],
            descriptions=[i.description for i, _, _ in good], added_by=added_by,
            source_paths=[str(i.path.resolve()) for i, _, _ in good], pixels=np.stack([p for _, _, p in good]),
        )
        for r in results:
            if r.status == "added":
                summary.added += 1
            else:
                summary.updated += 1
    if progress:
        progress(batch_size)


async def _decode(engine: Engine, item: IngestItem) -> tuple[DecodedImage, np.ndarray] | ClipbotError:
    """Decode and preprocess one file on the decode threads, while the model encodes other batches."""
    try:
        if item.label is not None:
            engine.text_limits.label(item.label)
        if item.description is not None:
            engine.text_limits.description(item.description)
        decoded = await engine.decode(item.path)
        return decoded, (await engine.prepare([decoded]))[0]
    except ClipbotError as exc:
        return exc


def _batches(items: list[IngestItem], size: int) -> list[list[IngestItem]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


async def reindex_targets(engine: Engine, *, collection: str | None = None,
                          everything: bool = False) -> list[ImageRecord]:
    """The stored images :func:`reindex` would encode: those without a vector for the configured
    model (after a change of CLIPBOT_CLIP_MODEL), or all of them with ``everything``."""
    records = await engine.store.list_images(collection)
    if everything:
        return records
    have = await engine.store.vectors_for([r.id for r in records], engine.model_id)
    return [r for r in records if r.id not in have]


async def reindex(
    engine: Engine,
    records: Sequence[ImageRecord],
    *,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Encode ``records`` again with the configured model (see :func:`reindex_targets`).

    Works from the stored copies in ``data/media``, so images added from chats are covered too.
    """
    summary = IngestSummary()
    index = await engine.index()
    for start in range(0, len(records), max(1, batch_size)):
        batch = records[start:start + batch_size]
        decoded = await asyncio.gather(*(_decode_record(engine, r) for r in batch))
        ready = [(r, d) for r, d in zip(batch, decoded, strict=True) if not isinstance(d, ClipbotError)]
        summary.skipped += [
            (f"#{r.id}", str(d)) for r, d in zip(batch, decoded, strict=True) if isinstance(d, ClipbotError)
        ]
        if ready:
            vectors = await engine.runner.encode_pixels(np.stack([pixels for _, (_, pixels) in ready]))
            for (record, _), vector in zip(ready, vectors, strict=True):
                await engine.store.set_vector(record.id, vector, engine.model_id)
                index.add(record.collection, [record.id], vector[None, :])
                summary.updated += 1
        if progress:
            progress(len(batch))
    return summary


async def _decode_record(engine: Engine, record: ImageRecord) -> tuple[DecodedImage, np.ndarray] | ClipbotError:
    path = engine.path_of(record)
    if path is None:
        return FileMissingError("no stored picture (imported without its file)")
    return await _decode(engine, IngestItem(Path(path)))
