"""The repost sightings as both SQL backends keep them (SQLite's schema version 5, PostgreSQL's 2).

Times are given and returned as unix seconds, whatever the column holds (SQLite a REAL,
PostgreSQL a ``timestamptz`` to the microsecond); vectors come back bit for bit.

A repost check's candidates (:meth:`matching_sightings`): here by reading the chat's window and
testing it in numpy, which suits a small chat; :class:`PgvectorSightings` tests in the server
(pgvector's cosine distance, the hashes' ``bit_count``), and SQLite keeps a busy chat's
fingerprints in memory (core.storage.sqlite_sightings).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.storage import sql
from core.storage.sightings import (
    MATCH_SLACK,
    RepostSightings,
    Sighting,
    may_match,
    phash_from_int64,
    phash_to_int64,
)
from core.storage.sql import C, SqlStore

_ORDER = " ORDER BY posted_at DESC, id DESC"  # newest first; of one moment, the last added first


class SqlSightings(SqlStore[C], RepostSightings):
    """:class:`RepostSightings` in the backend's :attr:`dialect`; each write one statement."""

    def _sighting(self, row: Sequence[Any]) -> Sighting:
        chat, message_id, author, author_name, posted_at, phash, vector, model_id, link = row
        return Sighting(chat=str(chat), message_id=str(message_id), author=str(author),
                        author_name=str(author_name), posted_at=float(posted_at),
                        phash=phash_from_int64(int(phash)), vector=self.dialect.vector_out(vector),
                        model_id=str(model_id), link=None if link is None else str(link))

    async def add_sighting(self, sighting: Sighting) -> None:
        await self._write(self.dialect.sql(sql.ADD_SIGHTING), (
            sighting.chat, sighting.message_id, sighting.author, sighting.author_name, float(sighting.posted_at),
            phash_to_int64(sighting.phash), self.dialect.vector_in(sighting.vector), sighting.model_id,
            sighting.link))

    async def sightings(self, chat: str, model_id: str | None, since: float) -> list[Sighting]:
        query, params = self._window(chat, model_id, since)
        rows = await self._fetch(query + _ORDER, params, vectors=True)
        return [self._sighting(row) for row in rows]

    def _window(self, chat: str, model_id: str | None, since: float) -> tuple[str, list[Any]]:
        """The query of a chat's sightings since ``since`` (of ``model_id``), unordered, and its parameters."""
        query, params = self.dialect.sql(sql.SIGHTINGS_SINCE), [chat, float(since)]
        if model_id is not None:
            query, params = query + self.dialect.sql(" AND model_id = ?"), [*params, model_id]
        return query, params

    async def matching_sightings(self, chat: str, model_id: str | None, since: float, *, phashes: Sequence[int],
                                 vectors: np.ndarray, hash_distance: int, threshold: float,
                                 message_id: str | None = None) -> list[Sighting]:
        return may_match(await self.sightings(chat, model_id, since), phashes=phashes, vectors=vectors,
                         hash_distance=hash_distance, threshold=threshold, message_id=message_id)

    async def forget_sightings(self, chat: str, author: str) -> int:
        return await self._write(self.dialect.sql(sql.FORGET_SIGHTINGS), (chat, author))

    async def purge_sightings(self, before: float) -> int:
        return await self._write(self.dialect.sql(sql.PURGE_SIGHTINGS), (float(before),))

    async def count_sightings(self, chat: str | None = None) -> int:
        if chat is None:
            rows = await self._fetch("SELECT count(*) FROM sightings")
        else:
            rows = await self._fetch(self.dialect.sql("SELECT count(*) FROM sightings WHERE chat = ?"), (chat,))
        return int(rows[0][0]) if rows else 0

    async def sighting_counts(self) -> dict[str, int]:
        rows = await self._fetch(self.dialect.sql(sql.SIGHTING_COUNTS))
        return {str(chat): int(n) for chat, n in rows}


class PgvectorSightings(SqlSightings[C]):
    """PostgreSQL's :meth:`matching_sightings`: one statement that tests the chat's window in the
    server, so only the candidates travel. Exact: a sequential pass over the chat's rows of the
    window (the ``sightings_by_chat`` index finds them), each query frame's cosine by pgvector's
    ``<=>`` and its hash distance by ``bit_count``; no vector index (a threshold wants every match,
    the earliest named, which an approximate nearest-neighbour walk would not promise)."""

    async def matching_sightings(self, chat: str, model_id: str | None, since: float, *, phashes: Sequence[int],
                                 vectors: np.ndarray, hash_distance: int, threshold: float,
                                 message_id: str | None = None) -> list[Sighting]:
        query, params = self._window(chat, model_id, since)
        tests: list[str] = []
        hashes = [phash_to_int64(int(p)) for p in phashes]
        if hash_distance >= 0:
            for value in hashes:
                tests.append("bit_count((phash # %s::int8)::bit(64)) <= %s")
                params += [value, int(hash_distance)]
        rows = np.asarray(vectors, dtype=np.float32)
        rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
        if threshold <= 1 + MATCH_SLACK and rows.size:
            for row in rows:
                # <=> of vectors of other sizes is an error, and a WHERE clause's order is the
                # planner's: CASE makes the size test come first. A zero vector's distance is NaN,
                # which no bound passes (as its cosine 0 passes no sensible threshold).
                tests.append("CASE WHEN vector_dims(vector) = %s THEN vector <=> %b END <= %s")
                params += [int(row.size), self.dialect.vector_in(row), 1.0 - float(threshold) + MATCH_SLACK]
        if message_id is not None and hashes:
            tests.append("(message_id = %s AND phash = ANY(%s::int8[]))")
            params += [message_id, hashes]
        if not tests:
            return []
        found = await self._fetch(f"{query} AND ({' OR '.join(tests)}){_ORDER}", params, vectors=True)
        return [self._sighting(row) for row in found]
