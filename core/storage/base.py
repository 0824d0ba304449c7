"""The storage seam: everything the engine needs from the place a gallery lives, in small parts.

Modelled on httpx's transport base class and aiogram's storage base: small abstract interfaces,
several backends (``sqlite``: a file plus an in-memory vector index; ``postgres``: PostgreSQL with
pgvector), and the engine as the only caller. A gallery's database holds four things, each its
own base class so that a newcomer reads one at a time:

* the gallery: :class:`ImageRecords` (the image rows), :class:`ImageFiles` (the files they point
  at) and :class:`ImageVectors` (each model's vectors and the nearest-neighbour search over them);
* the conversation state: :class:`core.storage.state.ConversationState`;
* the repost sightings: :class:`core.storage.sightings.RepostSightings`;
* the text read in pictures (OCR) and the search over it: :class:`core.storage.texts.ImageTexts`.

:class:`GalleryStorage` is all of them in one database, opened and closed as one: what each
backend provides and what code outside core.storage names. Every write is one transaction; the
vector search runs inside the backend, which keeps whatever index it has in step with its rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import numpy as np

from core.errors import NotFoundError
from core.records import ImageRecord, NewImage
from core.storage.sightings import RepostSightings, Sighting
from core.storage.state import ConversationState, StateUpdate
from core.storage.texts import ImageTexts

__all__ = [
    "GalleryStorage",
    "ImageFiles",
    "ImageRecords",
    "ImageTexts",
    "ImageVectors",
    "Neighbours",
    "Sighting",
    "StateUpdate",
    "query_rows",
]


@dataclass(frozen=True)
class Neighbours:
    """Search hits, best first: image ids and their cosine similarities."""

    ids: np.ndarray  # int64
    scores: np.ndarray  # float32

    @classmethod
    def empty(cls) -> Neighbours:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.ids)


def query_rows(vectors: np.ndarray) -> np.ndarray:
    """What :meth:`ImageVectors.nearest_many` takes, as float32: a matrix of one query per row."""
    rows = np.asarray(vectors, dtype=np.float32)
    if rows.ndim != 2:
        raise ValueError(f"nearest_many takes one query vector per row, not an array of shape {rows.shape}")
    return rows


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


class ImageRecords(ABC):
    """The image rows of every collection: what each picture is called and where it belongs.

    Implementations map their driver's errors to the engine's: :class:`StoreError` (unusable),
    :class:`StorageUnavailableError` (full, read-only, unreachable: try again later),
    :class:`NotFoundError`.
    """

    # -- writes (a backend's vector index follows each) -----------------------------------------

    @abstractmethod
    async def insert_image(self, image: NewImage, vector: np.ndarray, model_id: str) -> tuple[int, bool]:
        """Insert an image and its vector; returns ``(id, created)``.

        When the collection already holds these bytes (another process added them first),
        nothing is inserted and the existing id comes back with ``created`` False.
        """

    @abstractmethod
    async def insert_images(self, images: Sequence[NewImage], vectors: np.ndarray,
                            model_id: str) -> list[tuple[ImageRecord, bool]]:
        """:meth:`insert_image` for many images in one transaction: all of them or, on any error,
        none. ``vectors`` holds one row per image. Returns ``(record, created)`` per image, in
        input order; bytes the collection already holds give the existing record, not created.

        :class:`ValueError` when two images share a collection and hash or the rows do not match
        the images; :class:`DimensionMismatchError` when the gallery's vectors of ``model_id``
        have another dimension.
        """

    @abstractmethod
    async def set_colors(self, updates: Sequence[tuple[int, str, str]]) -> int:
        """Store ``(image id, colours JSON, colour families)`` for images whose colours were not
        computed yet (``colors = '[]'``), in one transaction; returns how many rows changed.

        Computed colours have at least one entry: ``'[]'`` is a :class:`ValueError`.
        """

    @abstractmethod
    async def update_image(self, image_id: int, *, label: str, description: str,
                           vector: np.ndarray | None = None, model_id: str = "") -> None:
        """Replace label and description (and the vector for ``model_id``, when given)."""

    @abstractmethod
    async def set_caption(self, image_id: int, caption: str) -> bool:
        """Store BLIP's caption of an image still waiting for one (caption ``NULL``); an empty
        description becomes the caption too, a non-empty one (a user's) is kept. Returns False,
        changing nothing, when the image is gone or already has a caption."""

    @abstractmethod
    async def replace_picture(self, image_id: int, image: NewImage, vector: np.ndarray, model_id: str) -> bool:
        """New content for an image (its file was edited), same id; other models' vectors dropped,
        and the text read in the old picture (:class:`ImageTexts`), so the new one is read again.

        Returns whether the old picture's file is now unused.
        """

    @abstractmethod
    async def delete_image(self, image_id: int) -> tuple[ImageRecord, bool]:
        """Delete an image; returns its record and whether its file is now unused."""

    @abstractmethod
    async def move_collection(self, old: str, new: str) -> tuple[int, list[int]]:
        """Move ``old``'s images into ``new``: ``(moved, dropped ids)`` (see the engine)."""

    # -- reads ----------------------------------------------------------------------------------

    async def get_image(self, image_id: int) -> ImageRecord:
        """The record, or :class:`NotFoundError`."""
        found = await self.get_images([image_id])
        if image_id not in found:
            raise NotFoundError(f"There is no image #{image_id}.")
        return found[image_id]

    @abstractmethod
    async def get_images(self, ids: Sequence[int]) -> dict[int, ImageRecord]: ...

    @abstractmethod
    async def find_by_sha256(self, collection: str, sha256: str) -> ImageRecord | None: ...

    @abstractmethod
    async def find_many_by_sha256(self, collection: str, sha256s: Sequence[str],
                                  model_id: str) -> dict[str, tuple[ImageRecord, bool]]:
        """In one query: for each hash ``collection`` holds, its record and whether it has a
        vector of ``model_id``; hashes it does not hold are not in the answer."""

    @abstractmethod
    async def list_images(self, collection: str | None = None) -> list[ImageRecord]:
        """Oldest first; every collection when ``None``."""

    @abstractmethod
    async def awaiting_captions(self, collection: str | None = None) -> list[ImageRecord]:
        """Images waiting for a caption, oldest first: no caption yet (``NULL``; ``""`` means BLIP
        said nothing) and an empty description. Every collection when ``None``."""

    @abstractmethod
    async def awaiting_colors(self, collection: str | None = None) -> list[ImageRecord]:
        """Images with a stored file whose colours were not computed yet (``colors = '[]'``),
        oldest first. Every collection when ``None``."""

    @abstractmethod
    async def collection_counts(self) -> dict[str, int]: ...

    @abstractmethod
    async def image_ids(self, collections: Sequence[str]) -> list[int]:
        """The ids of every image of ``collections``, ascending: what a sample is drawn from,
        without reading whole rows (calibration at 50,000 images)."""

    @abstractmethod
    async def text_candidates(self, collections: Iterable[str], words: Sequence[str]) -> list[ImageRecord]:
        """Images whose label or description contains every (casefolded) string given: a
        prefilter; the engine checks whole words on the rows returned."""


class ImageFiles(ABC):
    """Which files the image rows point at: the source a picture was indexed from (a folder on
    disk) and the stored picture in the media folder, which two rows may share."""

    @abstractmethod
    async def set_source(self, image_id: int, path: str, size: int | None, mtime_ns: int | None) -> None: ...

    @abstractmethod
    async def indexed_files(self, collection: str) -> list[ImageRecord]:
        """The images of ``collection`` with a ``source_path``."""

    @abstractmethod
    async def referenced_files(self) -> set[str]: ...

    @abstractmethod
    async def file_in_use(self, relative: str) -> bool: ...


class ImageVectors(ABC):
    """Each image's vector per model, and the nearest-neighbour search over them.

    A backend raises :class:`DimensionMismatchError` where vectors and a model disagree.
    """

    @abstractmethod
    async def set_vector(self, image_id: int, vector: np.ndarray, model_id: str) -> None: ...

    @abstractmethod
    async def vectors_for(self, ids: Sequence[int], model_id: str) -> dict[int, np.ndarray]:
        """Stored vectors, as float32, of the given images."""

    @abstractmethod
    async def has_vector(self, image_id: int, model_id: str) -> bool: ...

    @abstractmethod
    async def embedding_counts(self) -> dict[str, int]:
        """Vectors per model id."""

    @abstractmethod
    async def prepare_search(self, model_id: str, dim: int) -> None:
        """Check that stored vectors of ``model_id`` have ``dim`` dimensions
        (:class:`DimensionMismatchError` otherwise) and load what search needs."""

    def bulk_load(self, model_id: str, dim: int, rows: int) -> AbstractAsyncContextManager[None]:
        """Wraps a load of about ``rows`` new vectors of ``model_id`` (``dim`` dimensions):
        ``async with gallery.bulk_load(model, dim, rows): ...insert_images...``.

        A backend whose search index makes each insert slow sets it aside for a large load and
        builds it again after (PostgreSQL's HNSW index); searches stay correct meanwhile, if
        slower. Here: nothing (an in-memory index takes rows as fast as they come).
        """
        return _nothing()

    @abstractmethod
    async def nearest(self, vector: np.ndarray, *, model_id: str, collections: Sequence[str], k: int,
                      color_families: Sequence[str] = (), only: Sequence[int] | None = None) -> Neighbours:
        """The ``k`` images of ``collections`` closest to ``vector`` (cosine), best first.

        ``color_families`` keeps images whose dominant colours include every family given;
        ``only`` restricts the search to those ids.
        """

    @abstractmethod
    async def nearest_many(self, vectors: np.ndarray, *, model_id: str, collections: Sequence[str],
                           k: int) -> list[Neighbours]:
        """:meth:`nearest` for each row of ``vectors`` (a matrix, one query per row), in one pass
        over the gallery: a matrix product in memory, one round trip to a server. Each row gets
        what :meth:`nearest` gives it: the same ids in the same order, ties too, and the same
        scores up to float rounding (where a backend's batched sums round differently, two rows
        that close may trade places). For many queries at once: calibration's sample.
        """

    @abstractmethod
    async def count_vectors(self, model_id: str, collections: Sequence[str]) -> int:
        """How many images of ``collections`` have a vector of ``model_id``."""


class GalleryStorage(ImageRecords, ImageFiles, ImageVectors, ConversationState, RepostSightings, ImageTexts):
    """A gallery's database: images, vectors, conversation state, repost sightings and the text
    in pictures, opened and closed as one. Open with ``await open()``.

    Implementations map their driver's errors to the engine's: :class:`StoreError` (unusable,
    e.g. from a newer clipbot), :class:`StorageUnavailableError` (full, read-only, unreachable:
    try again later), :class:`NotFoundError`, :class:`DimensionMismatchError`.
    """

    #: Where the gallery lives, for operators' eyes (a path, or a URL without its password).
    location: str

    @abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema; idempotent; a failed open leaves nothing open."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; safe to call twice or after a failed open."""

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    async def integrity_check(self) -> list[str]:
        """``["ok"]``, or the problems found."""
