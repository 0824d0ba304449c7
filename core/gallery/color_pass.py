"""The colour pass: each stored image's dominant colours and colour families, for ``color:`` filters.

Colours are a vectorised K-Means over a batch of small thumbnails (core.media.palette), a
fraction of a millisecond an image, so the pass is cheap; it still runs after indexing rather
than inside it, because inside it would take the decode threads' time from feeding the model
(docs/performance.md, "Ingest"). An image waits for its colours while it has none stored (``[]``:
every picture has at least one colour once computed). Until then a ``color:`` filter does not
match it; ``clipbot stats`` counts the images still waiting, and ``clipbot enrich`` runs the pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.gallery.engine import Engine
from core.gallery.enrichment import Enrichment
from core.gallery.intake import stored_colors
from core.media.images import DecodedImage
from core.media.palette import dominant_colors_batch
from core.records import ImageRecord

__all__ = ["COLOR_BATCH", "Colors"]
# Thumbnails clustered together: large enough that numpy's per-call cost is spread thin.
COLOR_BATCH = 64
# The palette samples at most 64 pixels a side; a JPEG decoded at 1/8 scale still has that.
COLOR_SIDE = 64


class Colors(Enrichment):
    """The dominant colours of each image still without them (see the module)."""

    name = "colors"
    verb = "Colours"
    batch_size = COLOR_BATCH
    side = COLOR_SIDE

    def done_phrase(self, count: int) -> str:
        return f"Found the colours of {count} image(s)"

    async def waiting(self, engine: Engine, collection: str | None) -> list[ImageRecord]:
        return await engine.awaiting_colors(collection)

    async def enrich(self, engine: Engine, batch: Sequence[tuple[ImageRecord, DecodedImage]]) -> int:
        palettes = await engine.blocking(dominant_colors_batch, [d.image for _, d in batch], engine.color_count)
        return await engine.set_colors([(record.id, *stored_colors(colors))
                                        for (record, _), colors in zip(batch, palettes, strict=True)])
