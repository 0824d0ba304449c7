"""The caption pass: BLIP's captions for stored images still waiting for one, in batches.

Indexing never waits for BLIP (its autoregressive decoding is several times slower than CLIP):
``clipbot index`` stores images uncaptioned and searchable, then runs this pass, and
``clipbot caption`` runs it alone. An image waits for a caption while it has none (``caption``
NULL; ``""`` means BLIP said nothing and is not retried) and its description is empty: a
description someone gave is never replaced. Each caption becomes the image's description too,
which marks it as automatic (description == caption). Every batch is written as soon as it is
captioned, so an interrupted pass loses at most one batch, and the next pass does the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.errors import ClipbotError, FileMissingError
from core.gallery.engine import Engine
from core.media.images import DecodedImage
from core.records import ImageRecord

__all__ = ["CAPTION_BATCH", "CaptionSummary", "caption_pending"]
# Images per generate() call: batch 8 against batch 1 on BLIP-base, CPU (bench/captions.py, README "Captions").
CAPTION_BATCH = 8


@dataclass
class CaptionSummary:
    captioned: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (#id, reason): retried by the next pass


async def caption_pending(
    engine: Engine,
    *,
    collection: str | None = None,
    records: Sequence[ImageRecord] | None = None,
    batch_size: int = CAPTION_BATCH,
    progress: Callable[[int], None] | None = None,
) -> CaptionSummary:
    """Caption ``records`` (default: every image of ``collection`` waiting for a caption, see
    :meth:`Engine.awaiting_captions`), ``batch_size`` images per ``generate`` call.

    The next batch is decoded on the decode threads while BLIP captions the current one.
    Raises :class:`CaptionsOffError` when captioning is off and :class:`ModelLoadError` when
    BLIP cannot load; the batches written before stay written.
    """
    summary = CaptionSummary()
    todo = list(await engine.awaiting_captions(collection) if records is None else records)
    size = max(1, batch_size)
    batches = [todo[i:i + size] for i in range(0, len(todo), size)]
    if not batches:
        return summary
    pending = asyncio.ensure_future(_decode_all(engine, batches[0]))
    try:
        for n, batch in enumerate(batches):
            decoded = await pending
            if n + 1 < len(batches):
                pending = asyncio.ensure_future(_decode_all(engine, batches[n + 1]))
            ready = [(r, d) for r, d in zip(batch, decoded, strict=True) if isinstance(d, DecodedImage)]
            summary.skipped += [(f"#{r.id}", str(d)) for r, d in zip(batch, decoded, strict=True)
                                if isinstance(d, ClipbotError)]
            if ready:
                captions = await engine.caption_images([d.image for _, d in ready])
                for (record, _), caption in zip(ready, captions, strict=True):
                    # False: deleted, or captioned by another process meanwhile; nothing to count.
                    summary.captioned += await engine.set_caption(record.id, caption)
            if progress:
                progress(len(batch))
    finally:
        pending.cancel()
    return summary


async def _decode_all(engine: Engine, records: Sequence[ImageRecord]) -> list[DecodedImage | ClipbotError]:
    return list(await asyncio.gather(*(_decode(engine, r) for r in records)))


async def _decode(engine: Engine, record: ImageRecord) -> DecodedImage | ClipbotError:
    path = engine.path_of(record)
    if path is None:
        return FileMissingError("no stored picture (imported without its file)")
    try:
        return await engine.decode(path)
    except ClipbotError as exc:
        return exc
