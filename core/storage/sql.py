"""The SQL both backends speak, written once: statements with ``?`` for each parameter, and a
:class:`Dialect` per backend that says how it writes the little that differs.

A statement is a template: ``?`` is an ordinary parameter, and ``{vector}``, ``{time}``,
``{posted_at}``, ``{collate}`` and ``{for_update}`` are the dialect's spellings of a vector
parameter, a time given as unix seconds, the sightings' time read back as unix seconds, byte-wise
text order, and row locks in a write. What differs more than that (SQLite's in-memory search,
PostgreSQL's one-statement insert, conversation state and its clocks) stays in each backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from core.records import ImageRecord

IMAGE_COLUMNS = (
    "id, collection, label, description, caption, sha256, width, height, added_by, created_at, file, source_path,"
    " colors, color_families, source_size, source_mtime_ns"
)
SELECT_IMAGES = f"SELECT {IMAGE_COLUMNS} FROM images"
SIGHTING_COLUMNS = "chat, message_id, author, author_name, posted_at, phash, vector, model_id, link"

# -- the images -----------------------------------------------------------------------------------
ALL_IMAGES = f"{SELECT_IMAGES} ORDER BY id"
IMAGES_OF = f"{SELECT_IMAGES} WHERE collection = ? ORDER BY id"
INDEXED_FILES = f"{SELECT_IMAGES} WHERE collection = ? AND source_path IS NOT NULL ORDER BY id"
AWAITING_CAPTIONS = f"{SELECT_IMAGES} WHERE caption IS NULL AND description = ''"
FIND_ID = "SELECT id FROM images WHERE collection = ? AND sha256 = ?"
# Records of one collection and whether each has a vector of a model; a condition on sha256 follows.
FIND_MANY = (
    f"SELECT {IMAGE_COLUMNS}, EXISTS (SELECT 1 FROM embeddings e WHERE e.image_id = images.id AND e.model_id = ?)"
    " FROM images WHERE collection = ? AND "
)
# Colours not computed yet: computed ones always name at least one colour.
AWAITING_COLORS = f"{SELECT_IMAGES} WHERE file IS NOT NULL AND colors = '[]'"
SET_COLORS = "UPDATE images SET colors = ?, color_families = ? WHERE id = ? AND colors = '[]'"
FIND_IMAGE = f"{SELECT_IMAGES} WHERE collection = ? AND sha256 = ?"
LOCK_IMAGE = f"{SELECT_IMAGES} WHERE id = ?{{for_update}}"
SET_TEXT = "UPDATE images SET label = ?, description = ?, search_text = ? WHERE id = ?"
CAPTION_WANTED = "SELECT label, description FROM images WHERE id = ? AND caption IS NULL{for_update}"
SET_CAPTION = "UPDATE images SET caption = ?, description = ?, search_text = ? WHERE id = ?"
SET_SOURCE = "UPDATE images SET source_path = ?, source_size = ?, source_mtime_ns = ? WHERE id = ?"
REPLACE_PICTURE = (
    "UPDATE images SET label = ?, description = ?, caption = ?, sha256 = ?, width = ?, height = ?,"
    " file = ?, source_path = ?, source_size = ?, source_mtime_ns = ?, search_text = ?, colors = ?,"
    " color_families = ? WHERE id = ?"
)
DELETE_IMAGE = "DELETE FROM images WHERE id = ?"
# The text read in a picture that was replaced: the new one is to be read (core.storage.sql_texts).
DROP_TEXT = "DELETE FROM image_texts WHERE image_id = ?"
FILE_IN_USE = "SELECT 1 FROM images WHERE file = ? LIMIT 1"
REFERENCED_FILES = "SELECT DISTINCT file FROM images WHERE file IS NOT NULL"
# Pictures both collections hold: the old collection's copies go, the new one's rows stay.
DUPLICATES = (
    "SELECT o.id FROM images o JOIN images n ON n.sha256 = o.sha256 AND n.collection = ?"
    " WHERE o.collection = ? ORDER BY o.id"
)
MOVE_IMAGES = "UPDATE images SET collection = ? WHERE collection = ?"
DROP_COLLECTION = "DELETE FROM collections WHERE name = ?"
DROP_IF_EMPTY = "DELETE FROM collections WHERE name = ? AND NOT EXISTS (SELECT 1 FROM images WHERE collection = ?)"
COLLECTION_COUNTS = (
    "SELECT c.name, count(i.id) FROM collections c LEFT JOIN images i ON i.collection = c.name"
    " GROUP BY c.name ORDER BY c.name{collate}"
)

# -- the vectors ----------------------------------------------------------------------------------
PUT_VECTOR = (
    "INSERT INTO embeddings(image_id, model_id, dim, vector) VALUES (?, ?, ?, {vector})"
    " ON CONFLICT (image_id, model_id) DO UPDATE SET dim = excluded.dim, vector = excluded.vector"
)
DROP_VECTORS = "DELETE FROM embeddings WHERE image_id = ?"
VECTORS_OF = "SELECT image_id, vector FROM embeddings WHERE model_id = ?"
HAS_VECTOR = "SELECT 1 FROM embeddings WHERE image_id = ? AND model_id = ?"
# One stored vector's dimension: a model's vectors share theirs (prepare_search checks them all).
SOME_DIM = "SELECT dim FROM embeddings WHERE model_id = ? LIMIT 1"
EMBEDDING_COUNTS = "SELECT model_id, count(*) FROM embeddings GROUP BY model_id ORDER BY model_id{collate}"

# -- the repost sightings -------------------------------------------------------------------------
ADD_SIGHTING = f"INSERT INTO sightings({SIGHTING_COLUMNS}) VALUES (?, ?, ?, ?, {{time}}, ?, {{vector}}, ?, ?)"
SIGHTINGS_SINCE = (
    "SELECT chat, message_id, author, author_name, {posted_at}, phash, vector, model_id, link"
    " FROM sightings WHERE chat = ? AND posted_at >= {time}"
)
FORGET_SIGHTINGS = "DELETE FROM sightings WHERE chat = ? AND author = ?"
PURGE_SIGHTINGS = "DELETE FROM sightings WHERE posted_at < {time}"
SIGHTING_COUNTS = "SELECT chat, count(*) FROM sightings GROUP BY chat ORDER BY chat{collate}"

# -- the schema -----------------------------------------------------------------------------------
# SQLite's version 5, PostgreSQL's version 2, in each one's column types (see sqlite_schema and
# postgres_schema): fingerprints of images posted in chats that watch for reposts; no image is kept.
SIGHTINGS_TABLE = """
    CREATE TABLE sightings (
        id {serial},
        chat {text} NOT NULL,
        message_id {text} NOT NULL,
        author {text} NOT NULL,
        author_name {text} NOT NULL DEFAULT '',
        posted_at {time} NOT NULL,
        phash {integer} NOT NULL,
        model_id {text} NOT NULL,
        vector {vector} NOT NULL,
        link {text}
    );
    CREATE INDEX sightings_by_chat ON sightings(chat, posted_at);
    CREATE INDEX sightings_by_time ON sightings(posted_at);
    """


@dataclass(frozen=True)
class Dialect:
    """How one backend writes the shared statements (:meth:`sql`), lists and vectors."""

    mark: str  # an ordinary parameter
    vector: str  # a vector parameter
    time: str  # a unix-seconds parameter, as the column stores times
    posted_at: str  # the sightings' posted_at, read back as unix seconds
    collate: str  # text ordered byte by byte (SQLite's default; PostgreSQL's follows the locale)
    for_update: str  # locks the rows a write transaction reads (SQLite locks the whole file already)
    contains: str  # ``{column}`` holds the parameter as a substring
    # A list parameter: one mark per value, at most ``chunk`` values a statement (SQLite), or
    # one array of any length (PostgreSQL, chunk None).
    spread: bool
    chunk: int | None
    # Adds a collection unless it exists, with the parameters it takes for a name.
    add_collection: str
    collection_params: Callable[[str], tuple[Any, ...]]
    # Taken before a move, so that no insert races it ("" where the write transaction does that).
    lock_collections: str
    vector_in: Callable[[np.ndarray], Any]  # a vector as the driver sends it
    vector_out: Callable[[Any], np.ndarray]  # a stored vector as float32, bit for bit
    _rendered: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def sql(self, template: str) -> str:
        """``template`` in this dialect (rendered once, then remembered)."""
        text = self._rendered.get(template)
        if text is None:
            text = self._rendered[template] = template.replace("?", self.mark).format(
                vector=self.vector, time=self.time, posted_at=self.posted_at, collate=self.collate,
                for_update=self.for_update, column="{column}")
        return text

    def member(self, column: str, values: Sequence[Any], *, ints: bool = False) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: the condition and its parameters."""
        if self.spread:
            return f"{column} IN ({','.join([self.mark] * len(values))})", list(values)
        return f"{column} = ANY({self.mark}{'::bigint[]' if ints else ''})", [list(values)]

    def has_text(self, column: str) -> str:
        """``column`` contains the (one) parameter."""
        return self.sql(self.contains).format(column=column)

    def chunks(self, values: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """``values`` in as few lists as statements may take; none when there are none."""
        step = self.chunk or max(len(values), 1)
        for start in range(0, len(values), step):
            yield values[start:start + step]


def now_iso() -> str:
    """Now, as SQLite's rows keep times: ISO 8601 in UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record(row: Sequence[Any]) -> ImageRecord:
    """An image row (:data:`IMAGE_COLUMNS`) as a record; a timestamp becomes SQLite's text."""
    values = list(row)
    created = values[9]
    if isinstance(created, datetime):
        values[9] = created.astimezone(timezone.utc).isoformat(timespec="seconds")
    return ImageRecord(*values)


C = TypeVar("C")


class SqlStore(ABC, Generic[C]):
    """What the shared statements need of a backend: its :class:`Dialect`, write transactions
    and reads, on connections of type ``C`` (whatever the driver's ``execute`` is called on)."""

    dialect: ClassVar[Dialect]

    @abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[C]:
        """One write transaction: its connection; storage faults become the engine's errors."""

    @abstractmethod
    async def _fetch(self, query: str, params: Sequence[Any] = (), *, conn: C | None = None,
                     vectors: bool = False) -> list[Sequence[Any]]:
        """The rows ``query`` returns, read on ``conn`` (inside its transaction) or on a connection
        of its own; ``vectors``: the rows carry vectors, to be read bit for bit."""

    @abstractmethod
    async def _execute(self, conn: C, query: str, params: Sequence[Any] = ()) -> int:
        """Run a write on ``conn`` (inside its transaction); returns how many rows it changed."""

    @abstractmethod
    async def _execute_many(self, conn: C, query: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run a write once per parameter row on ``conn`` (inside its transaction), in as few
        round trips as the driver can; returns how many rows they changed in all."""

    async def _write(self, query: str, params: Sequence[Any] = ()) -> int:
        """One statement as a transaction of its own; returns how many rows it changed."""
        async with self._transaction() as conn:
            return await self._execute(conn, query, params)
