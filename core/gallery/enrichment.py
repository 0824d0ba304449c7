"""Enrichment passes: what is computed for each stored image after its vector, in batches.

``clipbot index`` stores vectors first, so a folder is searchable as soon as it is read; every
enrichment then runs as a pass of its own over the images still waiting for it (captions, colours,
the text in pictures), each with its progress bar, and ``clipbot enrich`` runs them alone. A pass
writes each batch as soon as it is made, so an interrupted pass loses at most one batch and the
next one does the rest: an image waits while its value is unset, and a stored "nothing" (an empty
caption) is never made again. Chat ``/add`` makes the same values inline instead (the engine's
``add_decoded``), bounded by time.

An :class:`Enrichment` says which images wait for it, what size it decodes them to, and how it
makes and stores a batch; :func:`run_enrichment` is the one loop that drives any of them.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ClipbotError, FileMissingError
from core.gallery.batch_decode import decode_files
from core.gallery.engine import DECODE_SIDE, Engine
from core.media.images import DecodedImage
from core.records import ImageRecord

__all__ = ["Enrichment", "EnrichmentSummary", "run_enrichment"]


@dataclass
class EnrichmentSummary:
    """What a pass did: images it stored a value for, and those it skipped (retried next time)."""

    name: str
    done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (#id, reason)


class Enrichment(ABC):
    """One per-image enrichment, run as a pass over the images waiting for it."""

    #: What operators call it: ``--no-<name>`` skips it, ``clipbot enrich --only <name>`` runs it.
    name: str
    #: The progress bar's label ("Captioning").
    verb: str
    #: Images made per call: the model's batch, or what keeps the decode threads busy.
    batch_size: int = 32
    #: The shorter side the pass needs, in pixels: large JPEGs are decoded at a reduced scale.
    side: int = DECODE_SIDE

    def done_phrase(self, count: int) -> str:
        """What the pass did, for the CLI ("Captioned 3 image(s)")."""
        return f"{self.verb}: {count} image(s)"

    def unavailable(self, engine: Engine) -> str | None:
        """Why this pass cannot run with this engine (captions are off, say); None when it can."""
        return None

    @abstractmethod
    async def waiting(self, engine: Engine, collection: str | None) -> list[ImageRecord]:
        """The images of ``collection`` (every collection when None) still waiting, oldest first."""

    @abstractmethod
    async def enrich(self, engine: Engine, batch: Sequence[tuple[ImageRecord, DecodedImage]]) -> int:
        """Make and store the values of one batch; returns how many were stored (an image deleted
        or done by another process meanwhile is not counted)."""


async def run_enrichment(
    engine: Engine,
    enrichment: Enrichment,
    *,
    collection: str | None = None,
    records: Sequence[ImageRecord] | None = None,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> EnrichmentSummary:
    """Run ``enrichment`` over ``records`` (default: every image of ``collection`` waiting for it).

    The next batch is decoded on the decode threads while the current one is made. A picture
    that cannot be read is skipped with its reason and stays waiting. Errors of the pass itself
    (a model that cannot load) propagate; the batches written before stay written.
    """
    summary = EnrichmentSummary(enrichment.name)
    todo = list(await enrichment.waiting(engine, collection) if records is None else records)
    size = max(1, batch_size or enrichment.batch_size)
    batches = [todo[i:i + size] for i in range(0, len(todo), size)]
    if not batches:
        return summary
    pending = asyncio.ensure_future(_decode(engine, batches[0], enrichment.side))
    try:
        for n, batch in enumerate(batches):
            decoded = await pending
            if n + 1 < len(batches):
                pending = asyncio.ensure_future(_decode(engine, batches[n + 1], enrichment.side))
            ready = [(r, d) for r, d in zip(batch, decoded, strict=True) if isinstance(d, DecodedImage)]
            summary.skipped += [(f"#{r.id}", str(d)) for r, d in zip(batch, decoded, strict=True)
                                if isinstance(d, ClipbotError)]
            if ready:
                summary.done += await enrichment.enrich(engine, ready)
            if progress:
                progress(len(batch))
    finally:
        pending.cancel()
    return summary


async def _decode(engine: Engine, records: Sequence[ImageRecord], side: int) -> list[DecodedImage | ClipbotError]:
    paths = {r.id: engine.path_of(r) for r in records}
    found = [r for r in records if paths[r.id] is not None]
    decoded = dict(zip((r.id for r in found),
                       await decode_files(engine, [Path(str(paths[r.id])) for r in found], side=side), strict=True))
    return [decoded.get(r.id) or FileMissingError("no stored picture (imported without its file)") for r in records]
