"""A SQLite gallery's connection and what only SQLite does: aiosqlite, one connection that owns
every write; the shared statements (core.storage.sql_gallery) in SQLite's :data:`SQLITE` dialect.

:class:`core.storage.sqlite.SqliteGallery` adds the repost sightings and the in-memory vector
index on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import numpy as np

from core.errors import StoreError
from core.records import ImageRecord, NewImage, blob_to_vector, search_text, vector_to_blob
from core.storage import sql
from core.storage.faults import storage_fault
from core.storage.sql import Dialect, now_iso
from core.storage.sql_gallery import SqlGallery
from core.storage.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, statements
from core.storage.state import ConversationState, StateItem, StateUpdate

DB_FILENAME = "clipbot.db"
# Rows read per trip to aiosqlite's thread: a long answer (a busy chat's sightings) lets the
# connection's other requests (replies) have their turn between chunks, not after all of them.
FETCH_CHUNK = 500
_INSERT_IMAGE = (
    "INSERT INTO images(collection, label, description, caption, sha256, width, height, added_by, created_at, file,"
    " source_path, search_text, colors, color_families, source_size, source_mtime_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_LIVE_VALUE = "SELECT value FROM state WHERE kind = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)"
_PUT_STATE = "INSERT OR REPLACE INTO state(kind, key, value, expires_at) VALUES (?, ?, ?, ?)"
# Takes the key only where it is free or its value has expired: a live value stays.
_ADD_STATE = (
    "INSERT INTO state(kind, key, value, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT(kind, key) DO UPDATE"
    " SET value = excluded.value, expires_at = excluded.expires_at"
    " WHERE state.expires_at IS NOT NULL AND state.expires_at <= ?"
)


def _named_now(name: str) -> tuple[str, str]:
    return name, now_iso()


SQLITE = Dialect(
    mark="?", vector="?", time="?", posted_at="posted_at", collate="", for_update="",
    contains="instr({column}, ?) > 0", spread=True, chunk=500,  # under SQLite's bound-parameter limit
    # SQLite has no column default for created_at: the row gets the time from here, as ISO text.
    add_collection="INSERT OR IGNORE INTO collections(name, created_at) VALUES (?, ?)",
    collection_params=_named_now,
    lock_collections="",  # BEGIN IMMEDIATE has locked out every other writer already
    vector_in=vector_to_blob, vector_out=blob_to_vector,
)


def _row(image: NewImage, created_at: str) -> tuple[Any, ...]:
    """The parameters of :data:`_INSERT_IMAGE` for ``image``."""
    return (image.collection, image.label, image.description, image.caption, image.sha256, image.width, image.height,
            image.added_by, created_at, image.file, image.source_path, search_text(image.label, image.description),
            image.colors, image.color_families, image.source_size, image.source_mtime_ns)


class SqliteRows(SqlGallery[aiosqlite.Connection], ConversationState):
    """The images, vectors and conversation state in ``clipbot.db``; open with ``await rows.open()``
    or ``async with``."""

    dialect = SQLITE

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / DB_FILENAME
        self._db: aiosqlite.Connection | None = None
        # aiosqlite serialises statements, not transactions: this keeps each transaction whole.
        self._write_lock = asyncio.Lock()

    async def __aenter__(self) -> SqliteRows:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("The database is not open.")
        return self._db

    async def open(self) -> None:
        """Create the data directory and database if needed, and bring the schema up to date.

        Opening an open store does nothing; a failed open leaves nothing open.
        """
        if self._db is not None:
            return
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self._migrate()
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StoreError(f"Cannot open the database {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        version = await self.schema_version()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this clipbot understands "
                f"({SCHEMA_VERSION}); upgrade clipbot."
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            async with self._transaction() as db:
                for statement in statements(MIGRATIONS[target - 1]):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {target}")

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; a full, read-only or failing disk becomes :class:`StorageUnavailableError`."""
        async with self._write_lock:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                    await self.db.execute("COMMIT")
                except BaseException:
                    if self.db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):  # the error that got us here matters more
                            await self.db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                fault = storage_fault(exc, self.path)
                if fault is None:
                    raise
                raise fault from exc

    async def _fetch(self, query: str, params: Sequence[Any] = (), *, conn: aiosqlite.Connection | None = None,
                     vectors: bool = False) -> list[Sequence[Any]]:
        rows: list[Sequence[Any]] = []  # vectors are BLOBs: exact as they are
        async with (conn or self.db).execute(query, params) as cur:
            while chunk := await cur.fetchmany(FETCH_CHUNK):
                rows.extend(chunk)
        return rows

    async def _execute(self, conn: aiosqlite.Connection, query: str, params: Sequence[Any] = ()) -> int:
        return int((await conn.execute(query, params)).rowcount)

    async def _execute_many(self, conn: aiosqlite.Connection, query: str, rows: Sequence[Sequence[Any]]) -> int:
        return int((await conn.executemany(query, rows)).rowcount)  # sqlite3 sums the rows of every run

    # -- writes and reads only SQLite has ---------------------------------------------------------

    async def insert_image(self, image: NewImage, vector: np.ndarray, model_id: str) -> tuple[int, bool]:
        """Insert an image and its embedding in one transaction: ``(id, created)``; bytes the
        collection already holds (another process was first) give the existing id, not created."""
        async with self._transaction() as db:
            await db.execute(SQLITE.add_collection, SQLITE.collection_params(image.collection))
            cur = await db.execute(f"{_INSERT_IMAGE} ON CONFLICT(collection, sha256) DO NOTHING",
                                   _row(image, now_iso()))
            if cur.rowcount == 0:
                found = await self._fetch(SQLITE.sql(sql.FIND_ID), (image.collection, image.sha256), conn=db)
                return int(found[0][0]) if found else 0, False
            image_id = int(cur.lastrowid or 0)
            await self._put_vector(db, image_id, vector, model_id)
        return image_id, True

    async def insert_images(self, images: Sequence[NewImage], vectors: np.ndarray,
                            model_id: str) -> list[tuple[ImageRecord, bool]]:
        """All rows and vectors in one transaction (executemany): ``(record, created)`` per image."""
        if not images:
            return []
        rows = self._batch(images, vectors)
        try:
            async with self._transaction() as db:
                await self._check_dim(db, model_id, rows.shape[1])
                await db.executemany(SQLITE.add_collection,
                                     [SQLITE.collection_params(c) for c in dict.fromkeys(i.collection for i in images)])
                # BEGIN IMMEDIATE keeps every other writer out: what is not there now, no one adds meanwhile.
                before = await self._held(db, images)
                new = [n for n, image in enumerate(images) if (image.collection, image.sha256) not in before]
                now = now_iso()
                await db.executemany(_INSERT_IMAGE, [_row(images[n], now) for n in new])
                after = await self._held(db, [images[n] for n in new])
                await db.executemany(SQLITE.sql(sql.PUT_VECTOR), [
                    (after[images[n].collection, images[n].sha256].id, model_id, rows.shape[1], vector_to_blob(rows[n]))
                    for n in new])
        except sqlite3.IntegrityError as exc:  # a record the schema refuses (a NULL label, say): nothing stored
            raise StoreError(f"SQLite refused a request at {self.path}: {exc}") from exc
        return [(before[key], False) if key in before else (after[key], True)
                for key in ((image.collection, image.sha256) for image in images)]

    async def _put_vector(self, conn: aiosqlite.Connection, image_id: int, vector: np.ndarray, model_id: str) -> None:
        await conn.execute(SQLITE.sql(sql.PUT_VECTOR),
                           (image_id, model_id, int(np.asarray(vector).size), vector_to_blob(vector)))

    async def integrity_check(self) -> list[str]:
        """SQLite's integrity check: ``["ok"]``, or the problems it found."""
        return [str(row[0]) for row in await self._fetch("PRAGMA integrity_check")]

    async def load_vectors(self, model_id: str) -> AsyncIterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(collection, ids, vectors)`` for every collection, vectors of ``model_id``."""
        async with self.db.execute(
            "SELECT i.collection, e.image_id, e.vector FROM embeddings e JOIN images i ON i.id = e.image_id"
            " WHERE e.model_id = ? ORDER BY i.collection, e.image_id",
            (model_id,),
        ) as cur:
            rows = list(await cur.fetchall())
        start = 0
        while start < len(rows):
            collection = rows[start][0]
            end = start
            while end < len(rows) and rows[end][0] == collection:
                end += 1
            ids = np.fromiter((r[1] for r in rows[start:end]), dtype=np.int64, count=end - start)
            vectors = np.stack([blob_to_vector(r[2]) for r in rows[start:end]])
            yield collection, ids, vectors
            start = end

    async def vector_dim(self, model_id: str) -> int | None:
        """The dimension of the stored vectors of ``model_id`` (the largest, should they differ)."""
        rows = await self._fetch("SELECT MAX(dim) FROM embeddings WHERE model_id = ?", (model_id,))
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    async def data_version(self) -> int:
        """Changes whenever another connection (another process) commits to the database."""
        rows = await self._fetch("PRAGMA data_version")
        return int(rows[0][0]) if rows else 0

    async def ids_with_colors(self, collections: Iterable[str], families: Sequence[str]) -> np.ndarray:
        """Ids of images in ``collections`` whose dominant colours include every family given."""
        names = list(dict.fromkeys(collections))
        if not names:
            return np.zeros(0, dtype=np.int64)
        where, args = SQLITE.member("collection", names)
        clauses = "".join(f" AND {SQLITE.has_text('color_families')}" for _ in families)
        rows = await self._fetch(f"SELECT id FROM images WHERE {where}{clauses}",
                                 [*args, *(f" {f} " for f in families)])
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    # -- conversation state: times are this machine's clock, in unix seconds ----------------------

    async def get_state(self, kind: str, key: str) -> str | None:
        rows = await self._fetch(_LIVE_VALUE, (kind, key, time.time()))
        return str(rows[0][0]) if rows else None

    async def put_state(self, kind: str, key: str, value: str, ttl_s: float | None) -> None:
        await self._write(_PUT_STATE, (kind, key, value, None if ttl_s is None else time.time() + ttl_s))

    async def update_state(self, kind: str, key: str, update: StateUpdate) -> str:
        # BEGIN IMMEDIATE takes the write lock first: no other process interleaves its own update.
        async with self._transaction() as db:
            rows = await self._fetch(_LIVE_VALUE, (kind, key, time.time()), conn=db)
            value, ttl_s = update(str(rows[0][0]) if rows else None)
            await db.execute(_PUT_STATE, (kind, key, value, None if ttl_s is None else time.time() + ttl_s))
        return value

    async def purge_state(self) -> int:
        return await self._write("DELETE FROM state WHERE expires_at IS NOT NULL AND expires_at <= ?", (time.time(),))

    async def state_items(self, kind: str) -> list[StateItem]:
        now = time.time()
        rows = await self._fetch("SELECT key, value, expires_at FROM state WHERE kind = ?"
                                 " AND (expires_at IS NULL OR expires_at > ?) ORDER BY key", (kind, now))
        return [StateItem(str(key), str(value), None if expires is None else float(expires) - now)
                for key, value, expires in rows]

    async def add_state(self, kind: str, items: Sequence[StateItem]) -> int:
        now = time.time()
        async with self._transaction() as db:
            return sum([await self._execute(db, _ADD_STATE, (kind, key, value, None if ttl_s is None else now + ttl_s,
                                                             now)) for key, value, ttl_s in items])
