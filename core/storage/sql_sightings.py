"""The repost sightings as both SQL backends keep them (SQLite's schema version 5, PostgreSQL's 2).

Times are given and returned as unix seconds, whatever the column holds (SQLite a REAL,
PostgreSQL a ``timestamptz`` to the microsecond); vectors come back bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.storage import sql
from core.storage.sightings import RepostSightings, Sighting, phash_from_int64, phash_to_int64
from core.storage.sql import C, SqlStore


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
        query, params = self.dialect.sql(sql.SIGHTINGS_SINCE), [chat, float(since)]
        if model_id is not None:
            query, params = query + self.dialect.sql(" AND model_id = ?"), [*params, model_id]
        rows = await self._fetch(query + " ORDER BY posted_at DESC, id DESC", params, vectors=True)
        return [self._sighting(row) for row in rows]

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
