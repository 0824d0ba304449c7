"""The engine's view of the gallery's records: reading them, relabelling, counts, the model check,
maintenance. A mixin of :class:`core.gallery.engine.Engine`, which owns the storage and media folder."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import ModelChangedError
from core.gallery.files import MediaStore
from core.gallery.maintenance import HealthReport, SweepReport, check_health, sweep
from core.models.inference import Encoding
from core.records import ImageRecord, SourceFile
from core.storage import GalleryStorage
from core.storage.base import Sighting
from core.text import TextLimits

log = logging.getLogger(__name__)
SIGHTING_RETENTION_S = 90 * 86400.0  # repost fingerprints older than this are purged by the sweep


@dataclass(frozen=True)
class StorageInfo:
    database: str
    schema_version: int
    media_dir: str


class GalleryRecords:
    """Record access of :class:`core.gallery.engine.Engine` (see there)."""

    _gallery: GalleryStorage
    _media: MediaStore
    _runner: Encoding
    text_limits: TextLimits
    #: How long repost fingerprints are kept: the sweep purges older ones (set by the engine's constructor).
    sighting_retention_s: float

    @property
    def model_id(self) -> str:
        raise NotImplementedError

    async def get_image(self, image_id: int) -> ImageRecord:
        """One image's record; :class:`NotFoundError` when there is none."""
        return await self._gallery.get_image(image_id)

    async def list_images(self, collection: str | None = None) -> list[ImageRecord]:
        """The images of ``collection`` (every collection when ``None``), oldest first."""
        return await self._gallery.list_images(collection)

    async def indexed_files(self, collection: str) -> list[ImageRecord]:
        """The images of ``collection`` indexed from a file, with that file's size and mtime then."""
        return await self._gallery.indexed_files(collection)

    async def find_picture(self, collection: str, sha256: str) -> ImageRecord | None:
        """The image of ``collection`` with these exact bytes, if any."""
        return await self._gallery.find_by_sha256(collection, sha256)

    async def find_pictures(self, collection: str, sha256s: Sequence[str]) -> dict[str, ImageRecord]:
        """:meth:`find_picture` for many hashes in one query; hashes not held are left out."""
        found = await self._gallery.find_many_by_sha256(collection, sha256s, self.model_id)
        return {sha: record for sha, (record, _) in found.items()}

    @contextlib.asynccontextmanager
    async def bulk_load(self, rows: int) -> AsyncIterator[None]:
        """Wrap a load of about ``rows`` new images (``clipbot index``): a backend whose search
        index slows each insert (PostgreSQL's HNSW) may set it aside and build it after."""
        dim = await self._runner.load()
        async with self._gallery.bulk_load(self.model_id, dim, rows):
            yield

    async def awaiting_colors(self, collection: str | None = None) -> list[ImageRecord]:
        """The images with a stored picture whose colours are not computed yet, oldest first."""
        return await self._gallery.awaiting_colors(collection)

    async def set_colors(self, updates: Sequence[tuple[int, str, str]]) -> int:
        """Store ``(image id, colours JSON, families)`` of images still without colours; returns
        how many were stored (one deleted, or coloured by another process, is not)."""
        return await self._gallery.set_colors(updates)

    async def vectors_for(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The configured model's stored vectors of these images, bit for bit."""
        return await self._gallery.vectors_for(ids, self.model_id)

    async def relabel(self, image_id: int, *, label: str, description: str) -> None:
        """Set an image's label and description (limits checked first: nothing changes if refused)."""
        label, description = self.text_limits.label(label), self.text_limits.description(description)
        await self._gallery.update_image(image_id, label=label, description=description)

    async def record_source(self, image_id: int, source: SourceFile) -> None:
        """Note where an image's file now is and its size and mtime (unchanged content, touched file)."""
        await self._gallery.set_source(image_id, source.path, source.size, source.mtime_ns)

    async def collection_counts(self) -> dict[str, int]:
        """How many images each collection holds."""
        return await self._gallery.collection_counts()

    async def vector_counts(self) -> dict[str, int]:
        """How many vectors each model id has made (a changed model shows up as a second id)."""
        return await self._gallery.embedding_counts()

    async def check_model(self) -> int:
        """How many images have no vector of the configured model.

        Raises :class:`ModelChangedError` when the gallery holds vectors of other models only
        (the model setting was changed): every search would come back empty, which must not look
        like an empty gallery.
        """
        vectors = await self._gallery.embedding_counts()
        total = sum((await self._gallery.collection_counts()).values())
        current = vectors.get(self.model_id, 0)
        others = {model: n for model, n in vectors.items() if model != self.model_id}
        if current == 0 and others:
            old = max(others, key=others.__getitem__)
            raise ModelChangedError(
                f"The gallery was indexed with the model {old!r}, but the model setting now says "
                f"{self.model_id!r}: run `clipbot reindex` to encode its {total} image(s) with it, "
                f"or set CLIPBOT_CLIP_MODEL back."
            )
        return max(0, total - current)

    async def storage(self) -> StorageInfo:
        """Where the gallery lives: what `clipbot stats` and `doctor` show operators."""
        return StorageInfo(self._gallery.location, await self._gallery.schema_version(),
                           str(self._media.root.resolve()))

    def picture_file(self, relative: str) -> str:
        """The absolute path of a stored picture (a record's ``file``)."""
        return str(self._media.absolute(relative))

    def path_of(self, record: ImageRecord) -> str | None:
        """Where the image's picture lies: the stored copy, else where it was imported from."""
        return str(self._media.absolute(record.file)) if record.file else record.source_path

    async def move_collection(self, old: str, new: str) -> int:
        """Move every image of ``old`` into ``new`` (a chat whose id changed); returns how many moved.

        One transaction; moving an empty or already moved collection does nothing, so a second
        notice of the same move is harmless. A picture ``new`` already holds keeps its row there.
        """
        moved, _ = await self._gallery.move_collection(old, new)
        return moved

    async def sweep(self) -> SweepReport:
        """Remove temporary files left by killed writes, pictures no image uses (see core.gallery.maintenance),
        expired conversation state and repost fingerprints older than ``sighting_retention_s``."""
        purged = await self._gallery.purge_state()
        if purged:
            log.info("purged %d expired result page(s) and rate-limit bucket(s)", purged)
        expired = await self._gallery.purge_sightings(time.time() - self.sighting_retention_s)
        if expired:
            log.info("purged %d repost fingerprint(s) older than %g days", expired, self.sighting_retention_s / 86400)
        return await sweep(self._gallery, self._media)

    # -- repost fingerprints (core.chat.reposts) -------------------------------------------------------

    @property
    def encoder_busy(self) -> bool:
        """Whether foreground encoding requests are waiting or running (the micro-batcher's; a plain
        runner, which has no queue, never says so): background work waits while this holds."""
        return bool(getattr(self._runner, "busy", False))

    async def add_sighting(self, sighting: Sighting) -> None:
        """Record the fingerprint of an image posted in a watched chat."""
        await self._gallery.add_sighting(sighting)

    async def sightings(self, chat: str, *, since: float) -> list[Sighting]:
        """The chat's fingerprints made by the configured model, posted at ``since`` or later, newest first."""
        return await self._gallery.sightings(chat, self.model_id, since)

    async def matching_sightings(self, chat: str, *, since: float, phashes: Sequence[int], vectors: np.ndarray,
                                 hash_distance: int, threshold: float, message_id: str) -> list[Sighting]:
        """The chat's fingerprints (the configured model's, posted at ``since`` or later, newest first) that
        may match these query frames, and those of ``message_id`` with one of ``phashes``: found by the
        database, not read whole (see :meth:`core.storage.sightings.RepostSightings.matching_sightings`)."""
        return await self._gallery.matching_sightings(
            chat, self.model_id, since, phashes=phashes, vectors=vectors, hash_distance=hash_distance,
            threshold=threshold, message_id=message_id)

    async def forget_sightings(self, chat: str, author: str) -> int:
        """Delete the fingerprints of what ``author`` posted in ``chat``; returns how many."""
        return await self._gallery.forget_sightings(chat, author)

    async def purge_sightings(self, before: float) -> int:
        """Delete fingerprints posted before ``before`` (unix seconds) in every chat; returns how many."""
        return await self._gallery.purge_sightings(before)

    async def count_sightings(self, chat: str | None = None) -> int:
        """How many fingerprints ``chat`` holds (every chat's when ``None``)."""
        return await self._gallery.count_sightings(chat)

    async def check_health(self) -> HealthReport:
        """The database's integrity, pictures gone missing, and a sweep: what `clipbot doctor` shows."""
        return await check_health(self._gallery, self._media)
