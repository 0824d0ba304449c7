"""A PostgreSQL gallery's pool and what only PostgreSQL does: pooled connections, the one-statement
insert, conversation state on the server's clock; the shared statements (core.storage.sql_gallery)
in PostgreSQL's :data:`POSTGRES` dialect.

:class:`core.storage.postgres.PostgresGallery` adds opening, the schema, the repost sightings and
vector search on top.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import psycopg
import psycopg.errors
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from core.errors import NotFoundError, StoreError
from core.records import ImageRecord, NewImage, search_text
from core.storage import sql
from core.storage.base import Neighbours
from core.storage.postgres_schema import BATCH_LOCKS, current_version, fault
from core.storage.sql import IMAGE_COLUMNS, Dialect, record
from core.storage.sql_gallery import SqlGallery
from core.storage.state import ConversationState, StateItem, StateUpdate

Connection = psycopg.AsyncConnection[TupleRow]

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
# A batch goes by binary COPY into a temporary table of the connection's (emptied at each commit),
# then into the gallery by one statement: images in the batch's order (so ids follow it), each one
# created with its vector; bytes another transaction holds already are skipped (after it commits).
# The fastest way measured, at 512 dimensions without an index: COPY 9,300 rows/s against 5,700 for
# executemany of insert_image's statement (bench.postgres); one statement of arrays (unnest) was
# slower than COPY too (5,200 against 6,700 in a run of its own).
_BATCH_COLUMNS = ("collection, label, description, caption, sha256, width, height, added_by, file, source_path,"
                  " search_text, colors, color_families, source_size, source_mtime_ns")
_BATCH_TABLE = """
DO $$ BEGIN
    IF to_regclass('pg_temp.clipbot_batch') IS NULL THEN
        CREATE TEMP TABLE clipbot_batch (collection text, label text, description text, caption text, sha256 text,
            width int4, height int4, added_by text, file text, source_path text, search_text text, colors text,
            color_families text, source_size int8, source_mtime_ns int8, vector vector, n int8) ON COMMIT DELETE ROWS;
    END IF;
END $$
"""
_BATCH_TYPES = ["text", "text", "text", "text", "text", "int4", "int4", "text", "text", "text", "text", "text", "text",
                "int8", "int8", "vector", "int8"]
_INSERT_BATCH = f"""
WITH i AS (
    INSERT INTO images({_BATCH_COLUMNS}) SELECT {_BATCH_COLUMNS} FROM clipbot_batch ORDER BY n
    ON CONFLICT (collection, sha256) DO NOTHING
    RETURNING {IMAGE_COLUMNS}
), e AS (
    INSERT INTO embeddings(image_id, model_id, dim, vector)
    SELECT i.id, %s, %s, b.vector FROM i JOIN clipbot_batch b ON b.collection = i.collection AND b.sha256 = i.sha256
)
SELECT * FROM i
"""
# Batches into the same collection take turns: two that hold the same new pictures in different
# orders would otherwise each wait for the other's rows (a deadlock).
_BATCH_LOCKS = f"SELECT pg_advisory_xact_lock({BATCH_LOCKS}, hashtext(c)) FROM unnest(%s::text[]) AS c ORDER BY c"
_VALUE_ALIVE = "(expires_at IS NULL OR expires_at > clock_timestamp())"
_EXPIRES = "clock_timestamp() + %s::float8 * interval '1 second'"
_UPSERT_STATE = (
    f"INSERT INTO state(kind, key, value, expires_at) VALUES (%s, %s, %s, {_EXPIRES})"
    " ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
)


def as_vector(vector: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)


def neighbours(rows: Sequence[Sequence[Any]]) -> Neighbours:
    """Search results, ``(image id, score)`` rows, as hits: best first, ties by id (an HNSW walk
    returns rows in the order of the index's distances, half-precision ones on pgvector 0.7+)."""
    ordered = sorted(rows, key=lambda r: (-float(r[1]), int(r[0])))
    ids = np.fromiter((int(r[0]) for r in ordered), dtype=np.int64, count=len(ordered))
    scores = np.nan_to_num(np.fromiter((float(r[1]) for r in ordered), dtype=np.float32, count=len(ordered)))
    return Neighbours(ids, scores)


def _from_vector(stored: Any) -> np.ndarray:
    return np.array(stored.to_numpy(), dtype=np.float32)


POSTGRES = Dialect(
    mark="%s", vector="%b", time="to_timestamp(%s::float8)", posted_at="extract(epoch FROM posted_at)::float8",
    collate=' COLLATE "C"',  # as SQLite orders text, whatever the database's locale
    for_update=" FOR UPDATE", contains="position(? in {column}) > 0", spread=False, chunk=None,
    add_collection="INSERT INTO collections(name) VALUES (%s) ON CONFLICT DO NOTHING",
    collection_params=lambda name: (name,),
    lock_collections="LOCK TABLE collections IN SHARE ROW EXCLUSIVE MODE",
    vector_in=as_vector, vector_out=_from_vector,
)


class PostgresRows(SqlGallery[Connection], ConversationState):
    """Every read and write but vector search, each through a pooled connection; each write one
    transaction. Driver errors become the engine's (see ``postgres_schema.fault``)."""

    dialect = POSTGRES

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

    async def _fetch(self, query: str, params: Sequence[Any] = (), *, conn: Connection | None = None,
                     vectors: bool = False) -> list[Sequence[Any]]:
        if conn is None:
            async with self._conn() as own:
                return await self._fetch(query, params, conn=own, vectors=vectors)
        # The binary format carries float32 as stored, bit for bit (text would round them).
        cur = conn.cursor(binary=True) if vectors else conn.cursor()
        await cur.execute(query, params or None)
        return list(await cur.fetchall())

    async def _execute(self, conn: Connection, query: str, params: Sequence[Any] = ()) -> int:
        return int((await conn.execute(query, params or None)).rowcount)

    async def _execute_many(self, conn: Connection, query: str, rows: Sequence[Sequence[Any]]) -> int:
        cur = conn.cursor()
        await cur.executemany(query, rows)  # pipelined: one round trip for all of them
        return int(cur.rowcount)  # psycopg sums the rows of every run

    async def _write(self, query: str, params: Sequence[Any] = ()) -> int:
        async with self._conn() as conn:  # autocommit: one statement is one transaction, one round trip
            return await self._execute(conn, query, params)

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
            found = await (await conn.execute(POSTGRES.sql(sql.FIND_ID), (image.collection, image.sha256))).fetchone()
        if found is None:  # deleted again in between: nothing to return but the truth
            raise NotFoundError(f"The picture {image.sha256[:12]} was removed from {image.collection} meanwhile.")
        return int(found[0]), False

    async def insert_images(self, images: Sequence[NewImage], vectors: np.ndarray,
                            model_id: str) -> list[tuple[ImageRecord, bool]]:
        """All rows and vectors in one transaction, by one COPY and one statement: ``(record, created)``
        per image, in input order."""
        if not images:
            return []
        rows = self._batch(images, vectors)
        names = sorted({image.collection for image in images})
        async with self._transaction() as conn:
            await self._check_dim(conn, model_id, rows.shape[1])
            await conn.execute(_BATCH_LOCKS, (names,))
            await conn.execute("INSERT INTO collections(name) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                               (names,))
            await conn.execute(_BATCH_TABLE)
            async with conn.cursor().copy("COPY clipbot_batch FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_BATCH_TYPES)
                for n, (i, vector) in enumerate(zip(images, rows, strict=True)):
                    await copy.write_row((i.collection, i.label, i.description, i.caption, i.sha256, i.width, i.height,
                                          i.added_by, i.file, i.source_path, search_text(i.label, i.description),
                                          i.colors, i.color_families, i.source_size, i.source_mtime_ns, vector, n))
            inserted = await (await conn.execute(_INSERT_BATCH, (model_id, int(rows.shape[1])))).fetchall()
            created = {(held.collection, held.sha256): held for held in map(record, inserted)}
            # The others were there (another process may have added them a moment ago, committed by now).
            before = await self._held(conn, [i for i in images if (i.collection, i.sha256) not in created])
            out = []
            for key in ((image.collection, image.sha256) for image in images):
                if key in created:
                    out.append((created[key], True))
                elif key in before:
                    out.append((before[key], False))
                else:  # deleted again in between: the batch fails whole, as it would have stored nothing
                    raise NotFoundError(f"The picture {key[1][:12]} was removed from {key[0]} meanwhile.")
        return out

    async def _put_vector(self, conn: Connection, image_id: int, vector: np.ndarray, model_id: str) -> None:
        vec = as_vector(vector)
        try:
            async with conn.transaction():
                await conn.execute(POSTGRES.sql(sql.PUT_VECTOR), (image_id, model_id, int(vec.size), vec))
        except psycopg.errors.ForeignKeyViolation:
            raise NotFoundError(f"There is no image #{image_id}.") from None

    # -- conversation state -----------------------------------------------------------------------

    async def get_state(self, kind: str, key: str) -> str | None:
        rows = await self._rows(f"SELECT value FROM state WHERE kind = %s AND key = %s AND {_VALUE_ALIVE}",
                                (kind, key))
        return str(rows[0][0]) if rows else None

    async def put_state(self, kind: str, key: str, value: str, ttl_s: float | None) -> None:
        async with self._transaction() as conn:
            await conn.execute(_UPSERT_STATE, (kind, key, value, ttl_s))

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

    async def state_items(self, kind: str) -> list[StateItem]:
        rows = await self._rows(
            "SELECT key, value, extract(epoch FROM expires_at - clock_timestamp())::float8 FROM state"
            f' WHERE kind = %s AND {_VALUE_ALIVE} ORDER BY key COLLATE "C"', (kind,))
        return [StateItem(str(key), str(value), None if left is None else float(left)) for key, value, left in rows]

    async def add_state(self, kind: str, items: Sequence[StateItem]) -> int:
        async with self._transaction() as conn:
            # Only a free key or an expired value is taken (a NULL expiry never compares true).
            return sum([await self._execute(conn, f"{_UPSERT_STATE} WHERE state.expires_at <= clock_timestamp()",
                                            (kind, key, value, ttl_s)) for key, value, ttl_s in items])
