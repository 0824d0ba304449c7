"""The server backend: PostgreSQL with pgvector; vectors are searched inside the database.

Vectors live in one ``vector`` column without a fixed dimension, so they come back exactly as
stored (float32) whatever model made them. Search uses one partial HNSW index per (model,
dimension), built by :meth:`PostgresGallery.prepare_search` on an expression that gives the
column that dimension (``vector::vector(512)``, or ``vector::halfvec(512)`` on pgvector 0.7+: half
the index size, while the column stays exact); queries repeat the expression and the predicate, so
the planner uses the index (``enable_sort`` is off for that query, so stale statistics cannot
turn it into a full scan). HNSW filters after it walks the graph (``hnsw.ef_search`` candidates,
200 by default: recall@10 0.996 on CLIP-like data at 100k): when the collection, colour or
``only`` filters leave fewer than ``k`` hits, the search runs again exactly, over the rows that
pass the filters (few, when the walk came back short). Short ``only`` lists and large ``k`` go
straight to the exact search. A walk first checks that the index is there and valid, and comes
back empty (so: exact) while it is not, e.g. during a bulk load (core.storage.postgres_index).

Several processes may serve the same database at once: every write is one transaction, state
updates lock their row, and a lost server is reconnected to by the pool when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from core.errors import DimensionMismatchError, StoreError
from core.storage.base import GalleryStorage, Neighbours, query_rows
from core.storage.postgres_index import PostgresIndexes
from core.storage.postgres_rows import Connection, as_vector, neighbours
from core.storage.postgres_schema import (
    SCHEMA_VERSION,
    extension_version,
    mask_password,
    migrate,
    open_error,
    password_of,
)
from core.storage.sql_sightings import PgvectorSightings
from core.storage.sql_texts import GramTexts

__all__ = ["SCHEMA_VERSION", "PostgresGallery"]
log = logging.getLogger(__name__)
# hnsw.ef_search's ceiling in pgvector; above k = EF_MAX / 4 the search is exact.
EF_MAX = 1000
# A pooled connection idle longer than this is checked before use (a round trip).
CHECK_AFTER_IDLE_S = 1.0
# An ``only`` list this short is searched exactly: a few primary-key lookups beat a graph walk.
EXACT_ONLY = 1000


class PostgresGallery(PostgresIndexes, PgvectorSightings[Connection], GramTexts[Connection], GalleryStorage):
    """A gallery in a PostgreSQL database with pgvector; ``url`` is a libpq URL or conninfo string.

    ``ef_search``: how many candidates HNSW keeps per query at least (``hnsw.ef_search``; the
    per-query value is the larger of it and ``4 * k``). ``maintenance_work_mem``: given to index
    builds, which are much faster when the graph fits.
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 5.0,
                 ef_search: int = 200, maintenance_work_mem: str = "512MB",
                 synchronous_commit: bool = False) -> None:
        self._url = url.strip()
        self.location = mask_password(self._url)
        self._secret = password_of(self._url)
        self._min_size = min_size
        self._max_size = max(max_size, min_size)
        self._timeout = timeout
        self.ef_search = ef_search
        self._maintenance_work_mem = maintenance_work_mem
        self._synchronous_commit = synchronous_commit
        self._pool: AsyncConnectionPool[Connection] | None = None
        self.halfvec = False  # pgvector >= 0.7: indexes hold half-precision copies
        self._revive_lock = asyncio.Lock()
        self._used = weakref.WeakKeyDictionary()
        self._dims: dict[str, int] = {}
        self._indexed: set[tuple[str, int]] = set()

    async def __aenter__(self) -> PostgresGallery:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=max(1, round(self._timeout)))
        except psycopg.Error as exc:
            raise open_error(exc, self.location, self._secret) from None
        try:
            async with conn:
                await migrate(conn, self.location)
                self.halfvec = (await extension_version(conn) or (0,)) >= (0, 7)
        except psycopg.Error as exc:
            raise open_error(exc, self.location, self._secret) from None
        pool = self._new_pool()
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except psycopg.Error as exc:
            await pool.close()
            raise open_error(exc, self.location, self._secret) from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    def _new_pool(self) -> AsyncConnectionPool[Connection]:
        return AsyncConnectionPool(
            self._url, min_size=self._min_size, max_size=self._max_size, open=False, timeout=self._timeout,
            kwargs={"autocommit": True, "connect_timeout": max(1, round(self._timeout))},
            configure=self._configure, check=self._check, name="clipbot",
            reconnect_timeout=max(30.0, 6 * self._timeout),
        )

    async def _revive(self, pool: AsyncConnectionPool[Connection]) -> AsyncConnectionPool[Connection]:
        async with self._revive_lock:
            current = self._pool
            if current is None:
                raise StoreError("The database is not open.")
            if current is not pool:  # another request revived it meanwhile
                return current
            # Is the server there? If not, its refusal is the reason the caller reports.
            probe = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=max(1, round(self._timeout)))
            await probe.close()
            fresh = self._new_pool()
            try:
                await fresh.open(wait=True, timeout=self._timeout)
            except BaseException:
                await fresh.close()
                raise
            self._pool = fresh
            log.warning("PostgreSQL at %s is reachable again: new connections made", self.location)
        await pool.close(timeout=1.0)  # its waiting requests move to the fresh pool
        return fresh

    async def _check(self, conn: Connection) -> None:
        """Before a connection is handed out: one that rested a while is asked whether it still
        works (a restarted server left it dead); one given back a moment ago is not, which spares
        a round trip per request (a fifth of an insert's time)."""
        if time.monotonic() - self._used.get(conn, 0.0) > CHECK_AFTER_IDLE_S:
            await AsyncConnectionPool.check_connection(conn)

    async def _configure(self, conn: Connection) -> None:
        await register_vector_async(conn)
        if not self._synchronous_commit:
            # What SQLite's WAL with synchronous=NORMAL promises: a crash of the machine may lose
            # the last commits, never corrupt; fsync per insert would halve ingest.
            await conn.execute("SET synchronous_commit = off")

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._dims.clear()
        self._indexed.clear()
        if pool is not None:
            await pool.close()

    async def integrity_check(self) -> list[str]:
        """``["ok"]``, or what is wrong: a schema other than ours, vectors whose length disagrees
        with their ``dim``, indexes left invalid by an interrupted build."""
        problems = []
        version = await self.schema_version()
        if version != SCHEMA_VERSION:
            problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
        [(bad,)] = await self._rows("SELECT count(*) FROM embeddings WHERE vector_dims(vector) <> dim")
        if bad:
            problems.append(f"{bad} vector(s) whose length is not their recorded dimension")
        for (name,) in await self._rows(
            "SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid"
            " WHERE x.indrelid IN ('collections'::regclass, 'images'::regclass, 'embeddings'::regclass,"
            " 'state'::regclass, 'sightings'::regclass, 'image_texts'::regclass) AND NOT x.indisvalid"
        ):
            problems.append(f"index {name} is invalid (an interrupted build; the next search rebuilds it)")
        return problems or ["ok"]

    # -- vector search ------------------------------------------------------------------------

    async def _dim(self, model_id: str) -> int | None:
        dim = self._dims.get(model_id)
        if dim is None:
            rows = await self._rows("SELECT max(dim) FROM embeddings WHERE model_id = %s", (model_id,))
            if rows and rows[0][0] is not None:
                dim = self._dims[model_id] = int(rows[0][0])
        return dim

    def search_query(self, model_id: str, dim: int, query: np.ndarray, collections: Sequence[str], k: int,
                     color_families: Sequence[str] = (), only: Sequence[int] | None = None, *, exact: bool,
                     many: bool = False) -> tuple[sql.Composed, dict[str, Any]]:
        """The SQL of :meth:`nearest`: ordered by the index's expression (the planner walks the
        HNSW graph, filtering what it meets), or (``exact``) the rows that pass the filters first,
        then the distance of each of them: a scan, exact, as fast as the filters are selective.

        ``many``: ``query`` holds one vector per row (:meth:`nearest_many`), sent as one array;
        the same search runs for each (a lateral join) and every result row starts with the
        number of its query, 1 for the first.
        """
        d = sql.SQL(str(int(dim)))
        key, value = ("qs", [as_vector(row) for row in query]) if many else ("q", as_vector(query))
        params: dict[str, Any] = {key: value, "names": list(collections), "k": int(k)}
        filters: list[sql.Composable] = [sql.SQL("i.collection = ANY(%(names)s)")]
        for n, family in enumerate(color_families):
            params[f"f{n}"] = f" {family} "
            filters.append(sql.SQL(f"position(%(f{n})s in i.color_families) > 0"))
        if only is not None:
            params["only"] = [int(i) for i in only]
            filters.append(sql.SQL("i.id = ANY(%(only)s::bigint[])"))
        fields = {"d": d, "model": sql.Literal(model_id), "where": sql.SQL(" AND ").join(filters),
                  "q": sql.SQL("q.v::vector({d})" if many else "%(q)b::vector({d})").format(d=d)}
        cte: sql.Composable = sql.SQL("")
        if exact:
            # MATERIALIZED: the filters run first. Otherwise the planner, taking a colour filter
            # to pass a third of the rows, computes every distance to stop after k survivors.
            cte = sql.SQL("WITH i AS MATERIALIZED (SELECT i.id FROM images i WHERE {where}) ").format(**fields)
            search = sql.SQL(
                "SELECT e.image_id, 1 - (e.vector::vector({d}) <=> {q}) AS score"
                " FROM i JOIN embeddings e ON e.image_id = i.id AND e.model_id = {model} AND e.dim = {d}"
                " ORDER BY score DESC, e.image_id LIMIT %(k)s"
            ).format(**fields)
        else:
            cast, _ = self._cast(dim)
            search = sql.SQL(
                "SELECT e.image_id, 1 - (e.vector::vector({d}) <=> {q}) AS score"
                " FROM embeddings e JOIN images i ON i.id = e.image_id"
                " WHERE e.model_id = {model} AND e.dim = {d} AND {where} AND {ready}"
                " ORDER BY e.vector{cast} <=> {q}{cast} LIMIT %(k)s"
            ).format(cast=sql.SQL(cast), ready=self.index_ready(model_id, dim), **fields)
        if many:
            search = sql.SQL(
                "SELECT q.n, h.image_id, h.score FROM unnest(%(qs)b::vector[]) WITH ORDINALITY AS q(v, n)"
                " CROSS JOIN LATERAL ({}) h"
            ).format(search)
        return cte + search, params

    def _walks(self, model_id: str, dim: int, k: int, only: Sequence[int] | None = None) -> bool:
        """Whether a search walks the HNSW graph first (else it is exact from the start)."""
        return ((model_id, dim) in self._indexed and max(self.ef_search, 4 * k) <= EF_MAX
                and (only is None or len(only) > EXACT_ONLY))

    async def _walk(self, conn: Connection, k: int, query: sql.Composed, params: dict[str, Any]) -> list[TupleRow]:
        """The rows of an HNSW ``query``, in a transaction of its own with its settings: the five
        statements go in one pipeline, one round trip (psycopg's transaction blocks sync at
        BEGIN and at COMMIT, which would make three)."""
        try:  # (a libpq before 14 has no pipelines: five round trips there)
            async with conn.pipeline() if psycopg.AsyncPipeline.is_supported() else contextlib.nullcontext():
                await conn.execute("BEGIN")
                await conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(
                    sql.Literal(max(self.ef_search, 4 * k))))
                # The graph walk, not a sort of every row: stale statistics (a bulk load not yet
                # analysed) must not turn a 5 ms search into a full scan.
                await conn.execute("SET LOCAL enable_sort = off")
                cursor = await conn.execute(query, params)
                await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()  # a failed statement left the transaction open (aborted)
            raise
        return await cursor.fetchall()

    async def nearest(self, vector: np.ndarray, *, model_id: str, collections: Sequence[str], k: int,
                      color_families: Sequence[str] = (), only: Sequence[int] | None = None) -> Neighbours:
        names = list(dict.fromkeys(collections))
        if k <= 0 or not names or (only is not None and len(only) == 0):
            return Neighbours.empty()
        q = as_vector(vector)
        dim = await self._dim(model_id)
        if dim is None:
            return Neighbours.empty()
        if q.size != dim:
            raise DimensionMismatchError(f"The query vector has dimension {q.size}, the index {dim}.")
        async with self._conn() as conn:
            rows: list[TupleRow] = []
            if self._walks(model_id, dim, k, only):
                query, params = self.search_query(model_id, dim, q, names, k, color_families, only, exact=False)
                rows = await self._walk(conn, k, query, params)
            if len(rows) < k:  # no index, or its walk found too few rows that pass the filters: scan
                query, params = self.search_query(model_id, dim, q, names, k, color_families, only, exact=True)
                rows = await (await conn.execute(query, params)).fetchall()
        return neighbours(rows)

    async def nearest_many(self, vectors: np.ndarray, *, model_id: str, collections: Sequence[str],
                           k: int) -> list[Neighbours]:
        """:meth:`nearest` for each row of ``vectors``: one statement for all of them, walking
        the graph as :meth:`nearest` does (one round trip); the queries whose walk came back
        short are then scanned exactly, together, in a second."""
        queries = query_rows(vectors)
        names = list(dict.fromkeys(collections))
        dim = await self._dim(model_id) if k > 0 and names and len(queries) else None
        if dim is None:
            return [Neighbours.empty() for _ in range(len(queries))]
        if queries.shape[1] != dim:
            raise DimensionMismatchError(f"The query vector has dimension {queries.shape[1]}, the index {dim}.")
        found: list[list[tuple[int, float]]] = [[] for _ in range(len(queries))]
        async with self._conn() as conn:
            if self._walks(model_id, dim, k):
                query, params = self.search_query(model_id, dim, queries, names, k, exact=False, many=True)
                for n, image_id, score in await self._walk(conn, k, query, params):
                    found[n - 1].append((image_id, score))
            short = [n for n, rows in enumerate(found) if len(rows) < k]
            if short:  # no index, or walks that found too few rows: those queries scan
                query, params = self.search_query(model_id, dim, queries[short], names, k, exact=True, many=True)
                scanned = await (await conn.execute(query, params)).fetchall()
                for n in short:
                    found[n].clear()
                for m, image_id, score in scanned:
                    found[short[m - 1]].append((image_id, score))
        return [neighbours(rows) for rows in found]

    async def count_vectors(self, model_id: str, collections: Sequence[str]) -> int:
        names = list(dict.fromkeys(collections))
        if not names:
            return 0
        [(n,)] = await self._rows(
            "SELECT count(*) FROM embeddings e JOIN images i ON i.id = e.image_id"
            " WHERE e.model_id = %s AND i.collection = ANY(%s)", (model_id, names),
        )
        return int(n)
