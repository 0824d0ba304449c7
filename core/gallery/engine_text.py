"""The text in pictures (OCR) for :class:`core.gallery.engine.Engine`: read on a thread of its own.

A mixin of the engine, as :mod:`core.gallery.engine_pictures` is. The reader (core.models.ocr)
loads its models once, on first use, and runs on one dedicated thread: never on the event loop,
and never on the decode threads that feed CLIP, so a text pass beside a busy chat leaves both
their threads. The text pass, ``/add`` and ``/read`` go through these methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from core.errors import TextReadingOffError
from core.media.images import DecodedImage
from core.models.ocr import TextLine, TextReader
from core.records import ImageRecord, PictureText
from core.search.ocr_text import fold
from core.storage import GalleryStorage

__all__ = ["EngineText", "picture_text", "yield_to_chats"]
log = logging.getLogger("core.gallery.engine")
OFF = "Reading the text in pictures is turned off here (CLIPBOT_OCR=none)."


READER_NICENESS = 10


def yield_to_chats() -> None:
    """Run the calling thread, and the threads it starts, at a lower CPU priority (Linux).

    Reading a picture's text costs about 0.3 s of CPU, ten times a chat answer: on a busy
    2-core box, new pictures read at full priority took the cores from everyone's searches
    (bench/soak.py). At niceness 10 the reader still gets every idle cycle, and onnxruntime's
    threads, started on this thread when the models load, inherit it. Elsewhere a no-op.
    """
    if not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError):  # a container may forbid it: the reader runs as before
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, max(os.getpriority(os.PRIO_PROCESS, thread), READER_NICENESS))


def picture_text(lines: Sequence[TextLine], model_id: str) -> PictureText:
    """What is stored of a picture's text: its lines, and the folded form searches match."""
    kept = tuple((line.text, round(float(line.confidence), 3)) for line in lines)
    return PictureText(lines=kept, folded=fold("".join(text for text, _ in kept)), model_id=model_id)


class EngineText:
    """Reading and storing the text in pictures (see the module)."""

    reader: TextReader | None
    _gallery: GalleryStorage
    _reader_pool: ThreadPoolExecutor | None = None
    _reading: set[asyncio.Task[None]]  # reads of new pictures that outlived their time limit

    async def decode(self, source: bytes | str | Path) -> DecodedImage:
        raise NotImplementedError  # the engine's

    async def read_text(self, images: Sequence[Image.Image]) -> list[PictureText]:
        """The text in each picture, on the reader's thread (:class:`TextReadingOffError` when off,
        :class:`ModelLoadError` when its models cannot load)."""
        reader = self.reader
        if reader is None:
            raise TextReadingOffError(OFF)
        if self._reader_pool is None:
            self._reader_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clipbot-ocr",
                                                   initializer=yield_to_chats)
        lines = await asyncio.get_running_loop().run_in_executor(
            self._reader_pool, lambda: [reader.read(image) for image in images])
        return [picture_text(found, reader.model_id) for found in lines]

    async def read_picture(self, source: bytes | str | Path) -> PictureText:
        """The text in one picture sent to the chat (``/read``)."""
        if self.reader is None:
            raise TextReadingOffError(OFF)
        [text] = await self.read_text([(await self.decode(source)).image])
        return text

    async def awaiting_text(self, collection: str | None = None) -> list[ImageRecord]:
        """The images with a stored picture not read yet, oldest first."""
        return await self._gallery.awaiting_text(collection)

    async def set_texts(self, texts: Sequence[tuple[int, PictureText]]) -> int:
        """Store the text read in images not read before; returns how many were stored."""
        return await self._gallery.set_texts(texts)

    async def texts_for(self, ids: Sequence[int]) -> dict[int, PictureText]:
        """The stored text of these images (those read; an image without text has no lines)."""
        return await self._gallery.texts_for(ids)

    async def read_new(self, pictures: Sequence[tuple[int, Image.Image]], limit_s: float | None) -> None:
        """Read and store the text of pictures just added from a chat, waiting at most ``limit_s``:
        what is not read by then is stored when it is (while the engine is open), else the next
        text pass reads it. Never raises: the pictures are added either way."""
        if self.reader is None or not pictures:
            return
        task = asyncio.ensure_future(self._read_and_store(pictures))
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)
        await asyncio.wait([task], timeout=limit_s)

    async def _read_and_store(self, pictures: Sequence[tuple[int, Image.Image]]) -> None:
        try:
            texts = await self.read_text([image for _, image in pictures])
            await self.set_texts([(image_id, text) for (image_id, _), text in zip(pictures, texts, strict=True)])
        except asyncio.CancelledError:
            raise
        except Exception:  # the pictures wait for the text pass instead
            log.warning("could not read the text of a new picture; `clipbot enrich` will", exc_info=True)

    async def close_reader(self) -> None:
        """Stop reading: drop reads still under way (their pictures wait for the text pass) and
        stop the reader's thread after the picture it is reading."""
        tasks, self._reading = list(self._reading), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pool, self._reader_pool = self._reader_pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
