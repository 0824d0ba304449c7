"""The SQL of a PostgreSQL gallery: rows, conversation state, and the pool they go through.

:class:`core.storage.postgres.PostgresGallery` adds opening, the schema and vector search on top.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import numpy as np
import psycopg
import psycopg.errors
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from core.errors import NotFoundError, StoreError
from core.records import ImageRecord, NewImage, search_text
from core.storage.base import StateUpdate
from core.storage.postgres_schema import current_version, fault

Connection = psycopg.AsyncConnection[TupleRow]

_IMAGE_COLUMNS = (
    "id, collection, label, description, caption, sha256, width, height, added_by, created_at, file, source_path,"
    " colors, color_families, source_size, source_mtime_ns"
)
_PUT_VECTOR = (
    "INSERT INTO embeddings(image_id, model_id, dim, vector) VALUES (%s, %s, %s, %b)"
    " ON CONFLICT (image_id, model_id) DO UPDATE SET dim = EXCLUDED.dim, vector = EXCLUDED.vector"
)
_INSERT_IMAGE = """
WITH c AS (
    INSERT INTO collections(name) VALUES (%(collection)s) ON CONFLICT DO NOTHING
), i AS (
    INSERT INTO images(collection, label, description, caption, sha256, width, height, added_by, file,
                       source_path, search_text, colors, color_families, source_size, source_mtime_ns)
    VALUES (%(collection)s, %(label)s, %(description)s, %(caption)s, %(sha256)s, %(width)s, %(height)s,
            %(added_by)s, %(file)s, %(source_path)s, %(search_text)s, %(colors)s, %(color_families)s,
            %(source_size)s, %(source_mtime_ns)s)
    ON CONFLICT (collection, sha256) DO NOTHING
    RETURNING id
), e AS (
    INSERT INTO embeddings(image_id, model_id, dim, vector) SELECT id, %(model_id)s, %(dim)s, %(vector)b FROM i
)
SELECT id FROM i
"""
_VALUE_ALIVE = "(expires_at IS NULL OR expires_at > clock_timestamp())"
_EXPIRES = "clock_timestamp() + %s::float8 * interval '1 second'"


def _record(row: Sequence[Any]) -> ImageRecord:
    values = list(row)
    created = values[9]
    if isinstance(created, datetime):  # as SQLite keeps it: ISO 8601 in UTC, to the second
        values[9] = created.astimezone(timezone.utc).isoformat(timespec="seconds")
    return ImageRecord(*values)


def as_vector(vector: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)


class PostgresRows:
    """Every read and write but vector search, each through a pooled connection; each write one
    transaction. Driver errors become the engine's (see ``postgres_schema.fault``)."""

    location: str
    _secret: str
    _pool: AsyncConnectionPool[Connection] | None
    _used: weakref.WeakKeyDictionary[Connection, float]  # when each connection was last given back

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Connection]:
        """A pooled connection; driver errors become the engine's errors."""
        try:
            pool, conn = await self._getconn()
            try:
                yield conn
            finally:
                self._used[conn] = time.monotonic()
                await pool.putconn(conn)
        except psycopg.Error as exc:
            raise fault(exc, self.location, self._secret) from exc

    async def _getconn(self) -> tuple[AsyncConnectionPool[Connection], Connection]:
        pool = self._pool
        if pool is None:
            raise StoreError("The database is not open.")
        try:
            return pool, await pool.getconn()
        except PoolClosed:
            if self._pool is None or self._pool is pool:
                raise StoreError("The database is not open.") from None
            pool = self._pool  # replaced by a fresh one while we waited
        except PoolTimeout:
            # The pool's reconnection backs off exponentially (minutes, after a long outage): when
            # the server answers again, a fresh pool serves at once.
            pool = await self._revive(pool)
        return pool, await pool.getconn()

    async def _revive(self, pool: AsyncConnectionPool[Connection]) -> AsyncConnectionPool[Connection]:
        """The pool to use after ``pool`` found no connection in time; raises when the server is away."""
        raise NotImplementedError

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._conn() as conn, conn.transaction():
            yield conn

    async def _rows(self, query: Any, params: Any = None) -> list[TupleRow]:
        async with self._conn() as conn:
            return await (await conn.execute(query, params)).fetchall()

    async def schema_version(self) -> int:
        async with self._conn() as conn:
            return await current_version(conn)

    # -- writes ---------------------------------------------------------------------------------

    async def insert_image(self, image: NewImage, vector: np.ndarray, model_id: str) -> tuple[int, bool]:
        vec = as_vector(vector)
        params = {
            "collection": image.collection, "label": image.label, "description": image.description,
            "caption": image.caption, "sha256": image.sha256, "width": image.width, "height": image.height,
            "added_by": image.added_by, "file": image.file, "source_path": image.source_path,
            "search_text": search_text(image.label, image.description), "colors": image.colors,
            "color_families": image.color_families, "source_size": image.source_size,
            "source_mtime_ns": image.source_mtime_ns, "model_id": model_id, "dim": int(vec.size), "vector": vec,
        }
        async with self._conn() as conn:
            # One statement, so one transaction and one round trip: collection, image and vector.
            row = await (await conn.execute(_INSERT_IMAGE, params)).fetchone()
            if row is not None:
                return int(row[0]), True
            # These bytes were there already (perhaps another process added them a moment ago).
            found = await (await conn.execute(
                "SELECT id FROM images WHERE collection = %s AND sha256 = %s", (image.collection, image.sha256)
            )).fetchone()
        if found is None:  # deleted again in between: nothing to return but the truth
            raise NotFoundError(f"The picture {image.sha256[:12]} was removed from {image.collection} meanwhile.")
        return int(found[0]), False

    async def update_image(self, image_id: int, *, label: str, description: str,
                           vector: np.ndarray | None = None, model_id: str = "") -> None:
        async with self._transaction() as conn:
            cur = await conn.execute(
                "UPDATE images SET label = %s, description = %s, search_text = %s WHERE id = %s",
                (label, description, search_text(label, description), image_id),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"There is no image #{image_id}.")
            if vector is not None:
                await self._put_vector(conn, image_id, vector, model_id)

    async def set_vector(self, image_id: int, vector: np.ndarray, model_id: str) -> None:
        async with self._transaction() as conn:
            await self._put_vector(conn, image_id, vector, model_id)

    @staticmethod
    async def _put_vector(conn: Connection, image_id: int, vector: np.ndarray, model_id: str) -> None:
        vec = as_vector(vector)
        try:
            async with conn.transaction():
                await conn.execute(_PUT_VECTOR, (image_id, model_id, int(vec.size), vec))
        except psycopg.errors.ForeignKeyViolation:
            raise NotFoundError(f"There is no image #{image_id}.") from None

    async def set_caption(self, image_id: int, caption: str) -> bool:
        async with self._transaction() as conn:
            row = await (await conn.execute(
                "SELECT label, description FROM images WHERE id = %s AND caption IS NULL FOR UPDATE", (image_id,)
            )).fetchone()
            if row is None:
                return False
            label, description = str(row[0]), str(row[1]) or caption
            await conn.execute(
                "UPDATE images SET caption = %s, description = %s, search_text = %s WHERE id = %s",
                (caption, description, search_text(label, description), image_id),
            )
        return True

    async def set_source(self, image_id: int, path: str, size: int | None, mtime_ns: int | None) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                "UPDATE images SET source_path = %s, source_size = %s, source_mtime_ns = %s WHERE id = %s",
                (path, size, mtime_ns, image_id),
            )

    async def replace_picture(self, image_id: int, image: NewImage, vector: np.ndarray, model_id: str) -> bool:
        async with self._transaction() as conn:
            old = await self._locked(conn, image_id)
            await conn.execute(
                "UPDATE images SET label = %s, description = %s, caption = %s, sha256 = %s, width = %s, height = %s,"
                " file = %s, source_path = %s, source_size = %s, source_mtime_ns = %s, search_text = %s,"
                " colors = %s, color_families = %s WHERE id = %s",
                (image.label, image.description, image.caption, image.sha256, image.width, image.height, image.file,
                 image.source_path, image.source_size, image.source_mtime_ns,
                 search_text(image.label, image.description), image.colors, image.color_families, image_id),
            )
            await conn.execute("DELETE FROM embeddings WHERE image_id = %s", (image_id,))
            await self._put_vector(conn, image_id, vector, model_id)
            return old.file is not None and old.file != image.file and not await self._in_use(conn, old.file)

    async def delete_image(self, image_id: int) -> tuple[ImageRecord, bool]:
        async with self._transaction() as conn:
            record = await self._locked(conn, image_id)
            await conn.execute("DELETE FROM images WHERE id = %s", (image_id,))
            orphan = record.file is not None and not await self._in_use(conn, record.file)
        return record, orphan

    async def move_collection(self, old: str, new: str) -> tuple[int, list[int]]:
        if old == new:
            return 0, []
        async with self._transaction() as conn:
            await conn.execute("LOCK TABLE collections IN SHARE ROW EXCLUSIVE MODE")  # no insert races the move
            dropped = [int(r[0]) for r in await (await conn.execute(
                "SELECT o.id FROM images o JOIN images n ON n.sha256 = o.sha256 AND n.collection = %s"
                " WHERE o.collection = %s ORDER BY o.id", (new, old),
            )).fetchall()]
            if dropped:
                await conn.execute("DELETE FROM images WHERE id = ANY(%s::bigint[])", (dropped,))
            await conn.execute("INSERT INTO collections(name) VALUES (%s) ON CONFLICT DO NOTHING", (new,))
            moved = (await conn.execute("UPDATE images SET collection = %s WHERE collection = %s", (new, old))).rowcount
            await conn.execute("DELETE FROM collections WHERE name = %s", (old,))
            if not moved and not dropped:  # nothing was there: leave no empty gallery behind either
                await conn.execute(
                    "DELETE FROM collections WHERE name = %s AND NOT EXISTS"
                    " (SELECT 1 FROM images WHERE collection = %s)", (new, new),
                )
        return moved, dropped

    @staticmethod
    async def _locked(conn: Connection, image_id: int) -> ImageRecord:
        row = await (await conn.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id = %s FOR UPDATE", (image_id,)
        )).fetchone()
        if row is None:
            raise NotFoundError(f"There is no image #{image_id}.")
        return _record(row)

    @staticmethod
    async def _in_use(conn: Connection, relative: str) -> bool:
        return await (await conn.execute("SELECT 1 FROM images WHERE file = %s LIMIT 1", (relative,))).fetchone() \
            is not None

    # -- reads ------------------------------------------------------------------------------------

    async def get_image(self, image_id: int) -> ImageRecord:
        found = await self.get_images([image_id])
        if image_id not in found:
            raise NotFoundError(f"There is no image #{image_id}.")
        return found[image_id]

    async def get_images(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        if not ids:
            return {}
        rows = await self._rows(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id = ANY(%s::bigint[])",
                                ([int(i) for i in ids],))
        return {int(row[0]): _record(row) for row in rows}

    async def find_by_sha256(self, collection: str, sha256: str) -> ImageRecord | None:
        rows = await self._rows(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE collection = %s AND sha256 = %s",
                                (collection, sha256))
        return _record(rows[0]) if rows else None

    async def list_images(self, collection: str | None = None) -> list[ImageRecord]:
        if collection:
            rows = await self._rows(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE collection = %s ORDER BY id",
                                    (collection,))
        else:
            rows = await self._rows(f"SELECT {_IMAGE_COLUMNS} FROM images ORDER BY id")
        return [_record(row) for row in rows]

    async def indexed_files(self, collection: str) -> list[ImageRecord]:
        rows = await self._rows(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE collection = %s AND source_path IS NOT NULL ORDER BY id",
            (collection,),
        )
        return [_record(row) for row in rows]

    async def awaiting_captions(self, collection: str | None = None) -> list[ImageRecord]:
        query = f"SELECT {_IMAGE_COLUMNS} FROM images WHERE caption IS NULL AND description = ''"
        rows = await (self._rows(query + " AND collection = %s ORDER BY id", (collection,)) if collection
                      else self._rows(query + " ORDER BY id"))
        return [_record(row) for row in rows]

    async def collection_counts(self) -> dict[str, int]:
        rows = await self._rows(
            "SELECT c.name, count(i.id) FROM collections c LEFT JOIN images i ON i.collection = c.name"
            ' GROUP BY c.name ORDER BY c.name COLLATE "C"'
        )
        return {str(name): int(n) for name, n in rows}

    async def embedding_counts(self) -> dict[str, int]:
        rows = await self._rows(
            'SELECT model_id, count(*) FROM embeddings GROUP BY model_id ORDER BY model_id COLLATE "C"')
        return {str(model): int(n) for model, n in rows}

    async def vectors_for(self, ids: Sequence[int], model_id: str) -> dict[int, np.ndarray]:
        if not ids:
            return {}
        async with self._conn() as conn:
            cur = conn.cursor(binary=True)  # the binary format carries float32 as stored, bit for bit
            await cur.execute("SELECT image_id, vector FROM embeddings WHERE model_id = %s AND image_id = ANY(%s)",
                              (model_id, [int(i) for i in ids]))
            rows = await cur.fetchall()
        return {int(image_id): np.array(vec.to_numpy(), dtype=np.float32) for image_id, vec in rows}

    async def has_vector(self, image_id: int, model_id: str) -> bool:
        return bool(await self._rows("SELECT 1 FROM embeddings WHERE image_id = %s AND model_id = %s",
                                     (image_id, model_id)))

    async def referenced_files(self) -> set[str]:
        return {str(row[0]) for row in await self._rows("SELECT DISTINCT file FROM images WHERE file IS NOT NULL")}

    async def file_in_use(self, relative: str) -> bool:
        async with self._conn() as conn:
            return await self._in_use(conn, relative)

    async def text_candidates(self, collections: Iterable[str], words: Sequence[str]) -> list[ImageRecord]:
        names = list(dict.fromkeys(collections))
        if not names or not words:
            return []
        clauses = " AND ".join("position(%s in search_text) > 0" for _ in words)
        rows = await self._rows(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE collection = ANY(%s) AND {clauses} ORDER BY id",
            [names, *(w.casefold() for w in words)],
        )
        return [_record(row) for row in rows]

    # -- conversation state -----------------------------------------------------------------------

    async def get_state(self, kind: str, key: str) -> str | None:
        rows = await self._rows(f"SELECT value FROM state WHERE kind = %s AND key = %s AND {_VALUE_ALIVE}",
                                (kind, key))
        return str(rows[0][0]) if rows else None

    async def put_state(self, kind: str, key: str, value: str, ttl_s: float | None) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                f"INSERT INTO state(kind, key, value, expires_at) VALUES (%s, %s, %s, {_EXPIRES})"
                " ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at",
                (kind, key, value, ttl_s),
            )

    async def update_state(self, kind: str, key: str, update: StateUpdate) -> str:
        async with self._transaction() as conn:
            # An absent key gets an already expired row first, so that there is a row to lock:
            # a second updater waits on it here instead of inserting its own.
            await conn.execute(
                "INSERT INTO state(kind, key, value, expires_at) VALUES (%s, %s, '', '-infinity')"
                " ON CONFLICT (kind, key) DO NOTHING", (kind, key),
            )
            row = await (await conn.execute(
                f"SELECT value, {_VALUE_ALIVE} FROM state WHERE kind = %s AND key = %s FOR UPDATE", (kind, key)
            )).fetchone()
            value, ttl_s = update(str(row[0]) if row is not None and row[1] else None)
            await conn.execute(
                f"UPDATE state SET value = %s, expires_at = {_EXPIRES} WHERE kind = %s AND key = %s",
                (value, ttl_s, kind, key),
            )
        return value

    async def purge_state(self) -> int:
        async with self._transaction() as conn:
            cur = await conn.execute("DELETE FROM state WHERE expires_at <= clock_timestamp()")
            return int(cur.rowcount)
