"""The caption pass: BLIP's captions for stored images still waiting for one, in batches.

Indexing never waits for BLIP (its autoregressive decoding is several times slower than CLIP):
``clipbot index`` stores images uncaptioned and searchable, then runs this pass, and
``clipbot caption`` (or ``clipbot enrich``) runs it alone. An image waits for a caption while it
has none (``caption`` NULL; ``""`` means BLIP said nothing and is not retried) and its description
is empty: a description someone gave is never replaced. Each caption becomes the image's
description too, which marks it as automatic (description == caption).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from core.gallery.engine import Engine
from core.gallery.enrichment import Enrichment, EnrichmentSummary, run_enrichment
from core.media.images import DecodedImage
from core.records import ImageRecord

__all__ = ["CAPTION_BATCH", "CAPTION_SIDE", "Captions", "caption_pending"]
# Images per generate() call: batch 8 against batch 1 on BLIP-base, CPU (bench/captions.py, README "Captions").
CAPTION_BATCH = 8
# BLIP-base looks at 384x384.
CAPTION_SIDE = 384


class Captions(Enrichment):
    """BLIP's caption of each image waiting for one (see the module)."""

    name = "captions"
    verb = "Captioning"
    batch_size = CAPTION_BATCH
    side = CAPTION_SIDE

    def done_phrase(self, count: int) -> str:
        return f"Captioned {count} image(s)"

    def unavailable(self, engine: Engine) -> str | None:
        return "captions are turned off (CLIPBOT_CAPTION_MODEL=none)" if engine.captioner is None else None

    async def waiting(self, engine: Engine, collection: str | None) -> list[ImageRecord]:
        return await engine.awaiting_captions(collection)

    async def enrich(self, engine: Engine, batch: Sequence[tuple[ImageRecord, DecodedImage]]) -> int:
        captions = await engine.caption_images([d.image for _, d in batch])
        # False: deleted, or captioned by another process meanwhile; nothing to count.
        return sum([await engine.set_caption(record.id, caption)
                    for (record, _), caption in zip(batch, captions, strict=True)])


async def caption_pending(
    engine: Engine,
    *,
    collection: str | None = None,
    records: Sequence[ImageRecord] | None = None,
    batch_size: int = CAPTION_BATCH,
    progress: Callable[[int], None] | None = None,
) -> EnrichmentSummary:
    """Caption ``records`` (default: every image of ``collection`` waiting for a caption, see
    :meth:`Engine.awaiting_captions`), ``batch_size`` images per ``generate`` call.

    Raises :class:`CaptionsOffError` when captioning is off and :class:`ModelLoadError` when
    BLIP cannot load; the batches written before stay written.
    """
    return await run_enrichment(engine, Captions(), collection=collection, records=records,
                                batch_size=batch_size, progress=progress)
