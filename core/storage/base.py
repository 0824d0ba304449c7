"""The storage seam: everything the engine needs from the place a gallery lives.

Modelled on httpx's transport base class: one small abstract interface, several backends
(``sqlite``: a file plus an in-memory vector index; ``postgres``: PostgreSQL with pgvector), and
the engine as the only caller. Every write is one transaction; the vector search runs inside
the backend, which keeps whatever index it has in step with its rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.records import ImageRecord, NewImage
from core.storage.state import StateUpdate

__all__ = ["GalleryStorage", "Neighbours", "Sighting", "StateUpdate"]
_INT64 = 1 << 63


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


@dataclass(frozen=True)
class Sighting:
    """The fingerprint of one image posted in a watched chat (repost alerts, core.chat.reposts): its
    vector and perceptual hash, who posted it where and when. The image itself is not kept."""

    chat: str  # the chat's collection name, e.g. "telegram:-100123"
    message_id: str
    author: str  # user key, e.g. "telegram:11"
    author_name: str
    posted_at: float  # unix seconds
    phash: int  # 64-bit perceptual hash, 0 <= phash < 2**64
    vector: np.ndarray = field(compare=False, repr=False)  # float32, stored bit for bit
    model_id: str = ""
    link: str | None = None  # the message's address, where the platform has one


def phash_to_int64(phash: int) -> int:
    """A 64-bit hash as the signed integer a database column holds (two's complement)."""
    if not 0 <= phash < 2 * _INT64:
        raise ValueError(f"a perceptual hash is 64 bits, not {phash}")
    return phash - 2 * _INT64 if phash >= _INT64 else phash


def phash_from_int64(value: int) -> int:
    return value + 2 * _INT64 if value < 0 else value


class GalleryStorage(ABC):
    """A gallery's rows, vectors and conversation state. Open with ``await open()``.

    Implementations map their driver's errors to the engine's: :class:`StoreError` (unusable,
    e.g. from a newer clipbot), :class:`StorageUnavailableError` (full, read-only, unreachable:
    try again later), :class:`NotFoundError`, :class:`DimensionMismatchError`.
    """

    #: Where the gallery lives, for operators' eyes (a path, or a URL without its password).
    location: str

    # -- lifecycle ------------------------------------------------------------------------------

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

    # -- writes (the backend's vector index follows each) ---------------------------------------

    @abstractmethod
    async def insert_image(self, image: NewImage, vector: np.ndarray, model_id: str) -> tuple[int, bool]:
        """Insert an image and its vector; returns ``(id, created)``.

        When the collection already holds these bytes (another process added them first),
        nothing is inserted and the existing id comes back with ``created`` False.
        """

    @abstractmethod
    async def update_image(self, image_id: int, *, label: str, description: str,
                           vector: np.ndarray | None = None, model_id: str = "") -> None:
        """Replace label and description (and the vector for ``model_id``, when given)."""

    @abstractmethod
    async def set_vector(self, image_id: int, vector: np.ndarray, model_id: str) -> None: ...

    @abstractmethod
    async def set_caption(self, image_id: int, caption: str) -> bool:
        """Store BLIP's caption of an image still waiting for one (caption ``NULL``); an empty
        description becomes the caption too, a non-empty one (a user's) is kept. Returns False,
        changing nothing, when the image is gone or already has a caption."""

    @abstractmethod
    async def set_source(self, image_id: int, path: str, size: int | None, mtime_ns: int | None) -> None: ...

    @abstractmethod
    async def replace_picture(self, image_id: int, image: NewImage, vector: np.ndarray, model_id: str) -> bool:
        """New content for an image (its file was edited), same id; other models' vectors dropped.

        Returns whether the old picture's file is now unused.
        """

    @abstractmethod
    async def delete_image(self, image_id: int) -> tuple[ImageRecord, bool]:
        """Delete an image; returns its record and whether its file is now unused."""

    @abstractmethod
    async def move_collection(self, old: str, new: str) -> tuple[int, list[int]]:
        """Move ``old``'s images into ``new``: ``(moved, dropped ids)`` (see the engine)."""

    # -- reads ------------------------------------------------------------------------------------

    @abstractmethod
    async def get_image(self, image_id: int) -> ImageRecord:
        """The record, or :class:`NotFoundError`."""

    @abstractmethod
    async def get_images(self, ids: Sequence[int]) -> dict[int, ImageRecord]: ...

    @abstractmethod
    async def find_by_sha256(self, collection: str, sha256: str) -> ImageRecord | None: ...

    @abstractmethod
    async def list_images(self, collection: str | None = None) -> list[ImageRecord]:
        """Oldest first; every collection when ``None``."""

    @abstractmethod
    async def indexed_files(self, collection: str) -> list[ImageRecord]:
        """The images of ``collection`` with a ``source_path``."""

    @abstractmethod
    async def awaiting_captions(self, collection: str | None = None) -> list[ImageRecord]:
        """Images waiting for a caption, oldest first: no caption yet (``NULL``; ``""`` means BLIP
        said nothing) and an empty description. Every collection when ``None``."""

    @abstractmethod
    async def collection_counts(self) -> dict[str, int]: ...

    @abstractmethod
    async def embedding_counts(self) -> dict[str, int]:
        """Vectors per model id."""

    @abstractmethod
    async def vectors_for(self, ids: Sequence[int], model_id: str) -> dict[int, np.ndarray]:
        """Stored vectors, as float32, of the given images."""

    @abstractmethod
    async def has_vector(self, image_id: int, model_id: str) -> bool: ...

    @abstractmethod
    async def referenced_files(self) -> set[str]: ...

    @abstractmethod
    async def file_in_use(self, relative: str) -> bool: ...

    @abstractmethod
    async def text_candidates(self, collections: Iterable[str], words: Sequence[str]) -> list[ImageRecord]:
        """Images whose label or description contains every (casefolded) string given: a
        prefilter; the engine checks whole words on the rows returned."""

    # -- vector search ------------------------------------------------------------------------

    @abstractmethod
    async def prepare_search(self, model_id: str, dim: int) -> None:
        """Check that stored vectors of ``model_id`` have ``dim`` dimensions
        (:class:`DimensionMismatchError` otherwise) and load what search needs."""

    @abstractmethod
    async def nearest(self, vector: np.ndarray, *, model_id: str, collections: Sequence[str], k: int,
                      color_families: Sequence[str] = (), only: Sequence[int] | None = None) -> Neighbours:
        """The ``k`` images of ``collections`` closest to ``vector`` (cosine), best first.

        ``color_families`` keeps images whose dominant colours include every family given;
        ``only`` restricts the search to those ids.
        """

    @abstractmethod
    async def count_vectors(self, model_id: str, collections: Sequence[str]) -> int:
        """How many images of ``collections`` have a vector of ``model_id``."""

    # -- conversation state (result pages, rate limits): shared by every process ---------------

    @abstractmethod
    async def get_state(self, kind: str, key: str) -> str | None:
        """A stored value, or None when absent or expired."""

    @abstractmethod
    async def put_state(self, kind: str, key: str, value: str, ttl_s: float | None) -> None: ...

    @abstractmethod
    async def update_state(self, kind: str, key: str, update: StateUpdate) -> str:
        """Read, change and write one value atomically (no other process interleaves); returns the new value."""

    @abstractmethod
    async def purge_state(self) -> int:
        """Delete expired values; returns how many."""

    # -- repost fingerprints (core.chat.reposts) -------------------------------------------------------

    @abstractmethod
    async def add_sighting(self, sighting: Sighting) -> None:
        """Record one posted image's fingerprint."""

    @abstractmethod
    async def sightings(self, chat: str, model_id: str | None, since: float) -> list[Sighting]:
        """The chat's sightings posted at ``since`` or later, newest first, vectors bit for bit;
        only ``model_id``'s (every model's when ``None``)."""

    @abstractmethod
    async def forget_sightings(self, chat: str, author: str) -> int:
        """Delete what ``author`` posted in ``chat``; returns how many."""

    @abstractmethod
    async def purge_sightings(self, before: float) -> int:
        """Delete sightings posted before ``before`` (unix seconds), in every chat; returns how many."""

    @abstractmethod
    async def count_sightings(self, chat: str | None = None) -> int:
        """How many sightings ``chat`` has (every chat's when ``None``)."""

    @abstractmethod
    async def sighting_counts(self) -> dict[str, int]:
        """Sightings per chat (for copies and stats)."""
