"""The text pass: the words in each stored picture (OCR), for ``/find`` and ``/read``.

PP-OCRv4 reads a picture in about 0.3 s of CPU (docs/performance.md, "Text in pictures"), far
slower than CLIP, so ``clipbot index`` never waits for it: the images are searchable by meaning
first, and this pass reads them afterwards, a batch at a time, each batch stored as soon as it is
read. An image waits while it has no text row; a picture without text stores an empty one, so it
is not read again. ``--no-text`` skips the pass and ``clipbot enrich`` runs it alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.gallery.engine import Engine
from core.gallery.enrichment import Enrichment
from core.media.images import DecodedImage
from core.records import ImageRecord

__all__ = ["TEXT_BATCH", "TextInPictures"]
# Pictures per hop to the reader's thread: each is read alone, so this only bounds lost work.
TEXT_BATCH = 8
# The reader shrinks pictures to 2000 pixels on the long side; a JPEG decoded with its shorter
# side at 1000 loses none of the small print it could read.
TEXT_SIDE = 1000


class TextInPictures(Enrichment):
    """The text in each picture not read yet (see the module)."""

    name = "text"
    verb = "Reading text"
    batch_size = TEXT_BATCH
    side = TEXT_SIDE

    def done_phrase(self, count: int) -> str:
        return f"Read the text in {count} image(s)"

    def unavailable(self, engine: Engine) -> str | None:
        return "reading text is turned off (CLIPBOT_OCR=none)" if engine.reader is None else None

    async def waiting(self, engine: Engine, collection: str | None) -> list[ImageRecord]:
        return await engine.awaiting_text(collection)

    async def enrich(self, engine: Engine, batch: Sequence[tuple[ImageRecord, DecodedImage]]) -> int:
        texts = await engine.read_text([d.image for _, d in batch])
        return await engine.set_texts([(record.id, text) for (record, _), text in zip(batch, texts, strict=True)])
