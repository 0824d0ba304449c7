"""A PostgreSQL gallery's HNSW indexes: one per (model, dimension), built CONCURRENTLY by one
process at a time, and set aside during a bulk load.

Why a bulk load drops the index: pgvector adds each inserted vector to the graph, which brings
inserts down to 100-170 rows/s at 512 dimensions; loading first and building the index after is
pgvector's advice (100k rows on 2 cores: 119 rows/s live; 8,400 rows/s loaded, then 150 s to
build). Meanwhile every search stays correct: a graph walk first checks that the index is there
and valid (one catalog lookup, evaluated once per query) and, finding none, returns nothing, which
sends the search to the exact scan that serves a filter that leaves too few rows
(core.storage.postgres). Slower, though: about a second per search at 100k rows.

Several loads may run at once, from several processes: each holds a shared session lock of its
index's while it loads; the last one out (the one that gets the lock exclusively) builds the index
again. A process that prepares search during a load builds nothing (the load's last process
will), and its searches walk the graph again once the index is back. A load that died (its
connection closed, releasing its lock) left no index: the next process to prepare search builds it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import sql

from core.errors import DimensionMismatchError
from core.storage.postgres_rows import Connection, PostgresRows
from core.storage.postgres_schema import BULK_LOCKS, INDEX_LOCK

log = logging.getLogger(__name__)
# A load this small goes into the live index: dropping it would cost a rebuild of every row
# there for little gain (and searches of other processes would scan meanwhile).
BULK_MIN_ROWS = 2_000
# ...and neither does a load that adds less than a quarter of the vectors already indexed. At 512
# dimensions on 2 cores (bench.postgres, 100k rows): a row into a live index costs about 8 ms, into
# a table without one 0.12 ms, and the rebuild about 1.5 ms per row there; dropping pays from
# about a fifth on.
BULK_MIN_SHARE = 0.25
_LOADING = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND classid = %s::int8::oid AND objid = hashtext(%s)::oid)"
)


async def take_lock(conn: Connection, query: str, *args: object) -> None:
    """Take a session advisory lock by polling ``query`` (a ``pg_try_advisory_lock*`` call).

    Polled, not waited for: a statement waiting on the lock would hold a snapshot that a
    concurrent index build (the holder's) waits for in turn: a deadlock.
    """
    while True:
        row = await (await conn.execute(query, args)).fetchone()
        if row is not None and row[0]:
            return
        await asyncio.sleep(0.1)


async def index_state(conn: Connection, name: str) -> bool | None:
    """True: the index is there and valid; False: there but invalid (being built, or a build
    died); None: absent."""
    row = await (await conn.execute(
        "SELECT x.indisvalid FROM pg_index x WHERE x.indexrelid = to_regclass(%s)", (name,)
    )).fetchone()
    return None if row is None else bool(row[0])


class PostgresIndexes(PostgresRows):
    """``prepare_search`` and ``bulk_load``: the HNSW index of each model and dimension."""

    halfvec: bool  # pgvector >= 0.7: indexes hold half-precision copies
    _maintenance_work_mem: str
    _dims: dict[str, int]  # model: the dimension its searches use
    # (model, dim) whose searches walk the graph first; each walk checks that the index is there.
    _indexed: set[tuple[str, int]]

    def index_name(self, model_id: str, dim: int) -> str:
        digest = hashlib.sha256(model_id.encode()).hexdigest()[:16]
        return f"embeddings_hnsw_{'h' if self.halfvec else 'v'}{dim}_{digest}"

    def _cast(self, dim: int) -> tuple[str, str]:
        """The cast that gives the column an indexable type of ``dim`` dimensions, and its opclass."""
        if self.halfvec:
            return f"::halfvec({int(dim)})", "halfvec_cosine_ops"
        return f"::vector({int(dim)})", "vector_cosine_ops"

    def index_ready(self, model_id: str, dim: int) -> sql.Composed:
        """A condition true while the index of ``model_id`` is there and valid: a graph walk's
        guard (no column in it, so the planner tests it once, before the walk)."""
        return sql.SQL("EXISTS (SELECT 1 FROM pg_index x WHERE x.indexrelid = to_regclass({}) AND x.indisvalid)"
                       ).format(sql.Literal(self.index_name(model_id, dim)))

    async def prepare_search(self, model_id: str, dim: int) -> None:
        other = await self._rows("SELECT dim FROM embeddings WHERE model_id = %s AND dim <> %s LIMIT 1",
                                 (model_id, dim))
        if other:
            raise DimensionMismatchError(
                f"The database holds {other[0][0]}-dimensional vectors under model {model_id!r}, which makes "
                f"{dim}-dimensional ones: run `clipbot reindex --all` to encode the images again."
            )
        self._dims[model_id] = dim
        if (model_id, dim) in self._indexed:
            return
        name = self.index_name(model_id, dim)
        async with self._conn() as conn:
            if not await index_state(conn, name) and not await self._loading(conn, name):
                # A session lock (CONCURRENTLY cannot run in a transaction): one builder at a time;
                # writes go on meanwhile.
                await take_lock(conn, "SELECT pg_try_advisory_lock(%s)", INDEX_LOCK)
                try:
                    if not await self._loading(conn, name):  # a load may have begun meanwhile
                        await self._build(conn, model_id, dim)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (INDEX_LOCK,))
            # else a bulk load set the index aside, and its last process builds it again.
        self._indexed.add((model_id, dim))

    async def _build(self, conn: Connection, model_id: str, dim: int) -> None:
        """Build the index unless it is there and valid; ``conn``'s session holds :data:`INDEX_LOCK`.
        A build that died left an invalid index: dropped and built again."""
        name = self.index_name(model_id, dim)
        state = await index_state(conn, name)
        if state:
            return
        if state is False:
            await conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))
        cast, opclass = self._cast(dim)
        try:
            await conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(self._maintenance_work_mem)))
            await conn.execute(sql.SQL(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON embeddings USING hnsw ((vector{cast}) {opclass})"
                " WHERE model_id = {model} AND dim = {dim}"
            ).format(name=sql.Identifier(name), cast=sql.SQL(cast), opclass=sql.SQL(opclass),
                     model=sql.Literal(model_id), dim=sql.Literal(int(dim))))
            log.info("built the HNSW index %s for %s (%d dimensions)", name, model_id, dim)
            # Rows were probably just loaded (a copy, a first index): plans need their numbers.
            await conn.execute("ANALYZE images")
            await conn.execute("ANALYZE embeddings")
        finally:
            await conn.execute("RESET maintenance_work_mem")

    @staticmethod
    async def _loading(conn: Connection, name: str) -> bool:
        """Whether a bulk load of index ``name`` goes on (in any process, this one included)."""
        row = await (await conn.execute(_LOADING, (BULK_LOCKS, name))).fetchone()
        return bool(row and row[0])

    @asynccontextmanager
    async def bulk_load(self, model_id: str, dim: int, rows: int) -> AsyncIterator[None]:
        """A load of about ``rows`` vectors of ``model_id`` without its HNSW index, when that pays
        (at least :data:`BULK_MIN_ROWS`, and :data:`BULK_MIN_SHARE` of the vectors there); the
        index is built again (CONCURRENTLY) when the last load of it ends, however it ends."""
        name = self.index_name(model_id, dim)
        async with self._conn() as conn:  # held to the end: its session holds the load's lock
            await take_lock(conn, "SELECT pg_try_advisory_lock_shared(%s, hashtext(%s))", BULK_LOCKS, name)
            try:
                if await self._worth_dropping(conn, model_id, dim, rows):
                    await take_lock(conn, "SELECT pg_try_advisory_lock(%s)", INDEX_LOCK)  # no build meanwhile
                    try:
                        if await index_state(conn, name) is not None:
                            await conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                                sql.Identifier(name)))
                            log.info("bulk load of %d rows: dropped the HNSW index %s until it ends", rows, name)
                    finally:
                        await conn.execute("SELECT pg_advisory_unlock(%s)", (INDEX_LOCK,))
                    self._indexed.discard((model_id, dim))  # straight to the exact search meanwhile
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock_shared(%s, hashtext(%s))", (BULK_LOCKS, name))
                await self._after_load(conn, model_id, dim)

    async def _worth_dropping(self, conn: Connection, model_id: str, dim: int, rows: int) -> bool:
        if rows < BULK_MIN_ROWS:
            return False
        row = await (await conn.execute("SELECT count(*) FROM embeddings WHERE model_id = %s AND dim = %s",
                                        (model_id, dim))).fetchone()
        return rows >= BULK_MIN_SHARE * (int(row[0]) if row else 0)

    async def _after_load(self, conn: Connection, model_id: str, dim: int) -> None:
        """The last load of an index out builds it (if it is not there: dropped, or never built)."""
        name = self.index_name(model_id, dim)
        row = await (await conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (BULK_LOCKS, name))
                     ).fetchone()
        if not (row and row[0]):
            return  # another load of it goes on: its last process builds it
        try:  # holding the lock exclusively: a load that begins now waits for the index, then drops it
            await take_lock(conn, "SELECT pg_try_advisory_lock(%s)", INDEX_LOCK)
            try:
                await self._build(conn, model_id, dim)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (INDEX_LOCK,))
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (BULK_LOCKS, name))
        self._indexed.add((model_id, dim))
