"""Writing pictures into a gallery: encode, store the file, caption, colour, row; remove again.

The engine's writing half. Pictures are stored once per content (the media folder) and shared
by every row with those bytes, so deciding a file is unused and deleting it never interleaves
with a new row taking it up (``files_lock``), and a failed add leaves no file behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image

from core.errors import ClipbotError
from core.gallery.files import MediaStore
from core.media.colors import DominantColor, color_families
from core.media.images import DecodedImage
from core.media.palette import dominant_colors_batch
from core.models.inference import Encoding
from core.records import ImageRecord, NewImage, SourceFile
from core.storage import GalleryStorage
from core.text import TextLimits

log = logging.getLogger(__name__)
AddStatus = Literal["added", "updated"]
T = TypeVar("T")
Blocking = Callable[..., Awaitable[Any]]
Captions = Callable[[Sequence[Image.Image]], Awaitable[list[str | None]]]


@dataclass(frozen=True)
class AddResult:
    """The outcome of adding one image."""

    record: ImageRecord
    status: AddStatus


def stored_colors(colors: Sequence[DominantColor]) -> tuple[str, str]:
    """Colours as a row stores them: the JSON list, and the families as " red  blue " (each word
    padded, so a filter finds a family with a plain substring test)."""
    return json.dumps([c.to_dict() for c in colors]), "".join(f" {f} " for f in color_families(colors))


class Intake:
    """Adds, replaces and removes images; built and called by the engine only."""

    def __init__(self, *, gallery: GalleryStorage, media: MediaStore, runner: Encoding, blocking: Blocking,
                 captions: Captions, color_count: int, text_limits: TextLimits) -> None:
        self._gallery = gallery
        self._media = media
        self._runner = runner
        self._blocking = blocking
        self._captions = captions
        self._color_count = color_count
        self._text_limits = text_limits
        self._files_lock = asyncio.Lock()
        self._late: set[asyncio.Task[None]] = set()  # captions that outlived their time limit

    @property
    def model_id(self) -> str:
        return self._runner.model_id

    async def add_decoded(self, images: Sequence[DecodedImage], *, collection: str,
                          labels: Sequence[str | None], descriptions: Sequence[str | None],
                          added_by: str | None, sources: Sequence[SourceFile | None] | None,
                          pixels: np.ndarray | None,
                          prepare: Callable[[Sequence[DecodedImage]], Awaitable[np.ndarray]],
                          vectors: np.ndarray | None = None,
                          defer_enrichment: bool = False, caption_limit_s: float | None = None) -> list[AddResult]:
        if len({d.sha256 for d in images}) != len(images):
            raise ValueError("add_decoded() takes distinct images; drop repeated files first")
        # Checked before any work: a refused label costs no encoding and stores nothing.
        labels = [None if text is None else self._text_limits.label(text) for text in labels]
        descriptions = [None if text is None else self._text_limits.description(text) for text in descriptions]
        origins = sources or [None] * len(images)
        # One query for the whole batch: which pictures the collection holds, and with a vector or not.
        held = await self._gallery.find_many_by_sha256(collection, [d.sha256 for d in images], self.model_id)
        existing = [held[d.sha256][0] if d.sha256 in held else None for d in images]
        need = [i for i, d in enumerate(images) if d.sha256 not in held or not held[d.sha256][1]]
        fresh = [i for i, rec in enumerate(existing) if rec is None]

        async def encode_needed() -> np.ndarray | None:
            if not need:
                return None
            if vectors is not None:  # encoded already (ingest): need is sorted, all of them is the whole array
                return vectors if len(need) == len(vectors) else vectors[need]
            if pixels is None:
                inputs = await prepare([images[i] for i in need])
            else:  # need is sorted: all of them means the whole array, without a copy
                inputs = pixels if len(need) == len(pixels) else pixels[need]
            return await self._runner.encode_pixels(inputs)

        # The new images' files (and colours, unless a pass makes them later) are made on the decode
        # threads while the model encodes.
        files_and_colors = self._blocking(self._files_and_colors, [images[i] for i in fresh], not defer_enrichment)
        vectors, made = await asyncio.gather(encode_needed(), files_and_colors, return_exceptions=True)
        if isinstance(vectors, BaseException) or isinstance(made, BaseException):
            await self.forget_unused_files([images[i] for i in fresh])
            raise vectors if isinstance(vectors, BaseException) else made
        vector_of = {i: vectors[n] for n, i in enumerate(need)} if vectors is not None else {}
        colors_of = dict(zip(fresh, made, strict=True))
        # New images without a description get BLIP's caption as their description (see the engine).
        uncaptioned = [] if defer_enrichment else [
            i for i, rec in enumerate(existing) if rec is None and not descriptions[i]
        ]
        captions: dict[int, str | None] = {}
        late: asyncio.Task[list[str | None]] | None = None
        if uncaptioned:
            captioning = asyncio.ensure_future(self._captions([images[i].image for i in uncaptioned]))
            try:
                await asyncio.wait([captioning], timeout=caption_limit_s)
            except asyncio.CancelledError:
                captioning.cancel()
                raise
            if captioning.done():
                captions = dict(zip(uncaptioned, captioning.result(), strict=True))
            else:  # stored uncaptioned now; the caption is written when it comes
                late = captioning
        results: dict[int, AddResult] = {}
        try:
            for i, rec in enumerate(existing):
                if rec is not None:
                    results[i] = await self._update(rec, vector_of.get(i), label=labels[i],
                                                    description=descriptions[i], source=origins[i])
            rows = [self._new_row(images[i], colors_of[i], collection=collection, label=labels[i],
                                  description=descriptions[i], caption=captions.get(i), source=origins[i],
                                  added_by=added_by) for i in fresh]
            if rows:
                async with self._files_lock:
                    # Written again if a delete took one since it was made (a no-op when it is there).
                    await self._blocking(self._media.put_many,
                                         [(images[i].data, images[i].sha256, images[i].extension) for i in fresh])
                    stored = await self._gallery.insert_images(rows, np.stack([vector_of[i] for i in fresh]),
                                                               self.model_id)
                for i, (record, created) in zip(fresh, stored, strict=True):
                    # Not created: another process added the same picture a moment ago; it is updated.
                    results[i] = AddResult(record, "added") if created else await self._update(
                        record, vector_of[i], label=labels[i], description=descriptions[i], source=origins[i])
        except BaseException:
            # A row that failed (a full disk, say) must not leave its new file behind.
            await self.forget_unused_files([images[i] for i in fresh])
            if late is not None:
                late.cancel()
            raise
        ordered = [results[i] for i in range(len(images))]
        if late is not None:
            # Only rows made here: a picture another process added meanwhile keeps its own caption.
            waiting = [ordered[i].record.id if ordered[i].status == "added" else None for i in uncaptioned]
            task = asyncio.ensure_future(self._store_late(late, waiting))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
        return ordered

    async def _store_late(self, captioning: asyncio.Task[list[str | None]], image_ids: list[int | None]) -> None:
        try:
            captions = await captioning
            for image_id, caption in zip(image_ids, captions, strict=True):
                if image_id is not None and caption is not None:
                    await self._gallery.set_caption(image_id, caption)
        except asyncio.CancelledError:
            raise
        except Exception:  # the images stay uncaptioned: a later caption pass writes them
            log.warning("could not store a late caption; `clipbot caption` will", exc_info=True)

    async def drop_late_captions(self) -> None:
        """Stop waiting for late captions (the engine closes); their images wait for a caption pass."""
        tasks, self._late = list(self._late), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def _new_row(decoded: DecodedImage, colors: list[DominantColor] | None, *, collection: str, label: str | None,
                 description: str | None, caption: str | None, source: SourceFile | None,
                 added_by: str | None) -> NewImage:
        """A new image's row; ``colors`` None: not computed yet (the colour pass makes them)."""
        colors_text, families = stored_colors(colors) if colors is not None else ("[]", "")
        return NewImage(
            collection=collection, label=label or "", description=description or caption or "", caption=caption,
            sha256=decoded.sha256, width=decoded.width, height=decoded.height,
            file=MediaStore.relative_path(decoded.sha256, decoded.extension),
            source_path=source.path if source else None, source_size=source.size if source else None,
            source_mtime_ns=source.mtime_ns if source else None, added_by=added_by,
            colors=colors_text, color_families=families,
        )

    async def _update(self, rec: ImageRecord, vec: np.ndarray | None, *, label: str | None,
                      description: str | None, source: SourceFile | None) -> AddResult:
        await self._gallery.update_image(
            rec.id, label=rec.label if label is None else label,
            description=rec.description if description is None else description,
            vector=vec, model_id=self.model_id,
        )
        if source is not None and source.path != rec.source_path:
            await self._gallery.set_source(rec.id, source.path, source.size, source.mtime_ns)
        return AddResult(await self._gallery.get_image(rec.id), "updated")

    async def replace_picture(self, record: ImageRecord, decoded: DecodedImage, *, source: SourceFile,
                              pixels: np.ndarray, label: str | None, description: str | None,
                              captioning: bool, defer: bool = False) -> AddResult:
        label = record.label if label is None else self._text_limits.label(label)
        description = record.description if description is None else self._text_limits.description(description)
        made = await asyncio.gather(
            self._runner.encode_pixels(pixels), self._blocking(self._files_and_colors, [decoded], not defer),
            return_exceptions=True,
        )
        try:
            for outcome in made:
                if isinstance(outcome, BaseException):
                    raise outcome
            vectors, [colors] = made
            caption = record.caption
            if captioning and record.description == (record.caption or ""):
                if defer:  # the new picture waits for a caption pass, unless given a description now
                    caption, description = None, "" if description == record.description else description
                else:
                    [caption] = await self._captions([decoded.image])
                    description = caption or description
            new = replace(self._new_row(decoded, colors, collection=record.collection, label=label,
                                        description=description, caption=caption, source=source,
                                        added_by=record.added_by), description=description)
            async with self._files_lock:
                await self._blocking(self._media.put, decoded.data, decoded.sha256, decoded.extension)
                orphan = await self._gallery.replace_picture(record.id, new, vectors[0], self.model_id)
                if orphan and record.file:
                    self._media.delete(record.file)
        except BaseException:
            await self.forget_unused_files([decoded])
            raise
        return AddResult(await self._gallery.get_image(record.id), "updated")

    async def add_with_vector(self, *, collection: str, label: str, description: str, vector: np.ndarray,
                              decoded: DecodedImage | None, sha256: str, source_path: str | None,
                              added_by: str) -> AddStatus:
        """Store a vector made elsewhere (the seed notebook's pickle), with its picture when there is one."""
        rec = await self._gallery.find_by_sha256(collection, sha256)
        if rec is not None:
            await self._gallery.update_image(rec.id, label=label, description=description, vector=vector,
                                             model_id=self.model_id)
            return "updated"
        async with self._files_lock:
            relative = (await self._blocking(self._media.put, decoded.data, sha256, decoded.extension)
                        if decoded else None)
            new = NewImage(
                collection=collection, label=label, description=description, sha256=sha256,
                width=decoded.width if decoded else 0, height=decoded.height if decoded else 0, file=relative,
                source_path=source_path, added_by=added_by,
            )
            _, created = await self._gallery.insert_image(new, vector, self.model_id)
        return "added" if created else "updated"

    async def remove(self, image_id: int) -> ImageRecord:
        async with self._files_lock:
            record, orphan = await self._gallery.delete_image(image_id)
            if orphan and record.file:
                self._media.delete(record.file)
        return record

    def _files_and_colors(self, images: Sequence[DecodedImage], colors: bool) -> list[list[DominantColor] | None]:
        """Write the pictures' files (one sync for all) and, with ``colors``, their colours."""
        self._media.put_many([(d.data, d.sha256, d.extension) for d in images])
        if not colors:
            return [None] * len(images)
        return list(dominant_colors_batch([d.image for d in images], self._color_count))

    async def forget_unused_files(self, images: Sequence[DecodedImage]) -> None:
        """After a failed add, remove the files it wrote that no image row uses.

        Best effort: when even that check fails, the file stays for the next sweep to find.
        """
        for decoded in images:
            relative = self._media.relative_path(decoded.sha256, decoded.extension)
            try:
                async with self._files_lock:
                    if not await self._gallery.file_in_use(relative):
                        self._media.delete(relative)
            except (ClipbotError, OSError):
                log.warning("could not remove %s after a failed add; the next sweep will", relative, exc_info=True)
