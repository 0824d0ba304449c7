"""The SQL of a PostgreSQL gallery's repost fingerprints (``sightings``, schema version 2).

:class:`core.storage.postgres.PostgresGallery` is built on this, which is built on
:class:`core.storage.postgres_rows.PostgresRows`: pooled connections, each write one statement
(so one transaction), driver errors mapped to the engine's. Times are ``timestamptz`` (to the
microsecond), given and returned as unix seconds; vectors are pgvector ``vector`` read in the
binary format, so they come back bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.storage.base import Sighting, phash_from_int64, phash_to_int64
from core.storage.postgres_rows import PostgresRows, as_vector

_COLUMNS = ("chat, message_id, author, author_name, extract(epoch FROM posted_at)::float8, phash, vector, model_id,"
            " link")


def _sighting(row: Sequence[Any]) -> Sighting:
    chat, message_id, author, author_name, posted_at, phash, vector, model_id, link = row
    return Sighting(chat=str(chat), message_id=str(message_id), author=str(author), author_name=str(author_name),
                    posted_at=float(posted_at), phash=phash_from_int64(int(phash)),
                    vector=np.array(vector.to_numpy(), dtype=np.float32), model_id=str(model_id),
                    link=None if link is None else str(link))


class PostgresSightings(PostgresRows):
    """Rows, state, and the fingerprints of images posted in watched chats."""

    async def add_sighting(self, sighting: Sighting) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO sightings(chat, message_id, author, author_name, posted_at, phash, vector, model_id, link)"
                " VALUES (%s, %s, %s, %s, to_timestamp(%s::float8), %s, %b, %s, %s)",
                (sighting.chat, sighting.message_id, sighting.author, sighting.author_name, float(sighting.posted_at),
                 phash_to_int64(sighting.phash), as_vector(sighting.vector), sighting.model_id, sighting.link),
            )

    async def sightings(self, chat: str, model_id: str | None, since: float) -> list[Sighting]:
        model = " AND model_id = %(model)s" if model_id is not None else ""
        async with self._conn() as conn:
            cur = conn.cursor(binary=True)  # the binary format carries float32 as stored, bit for bit
            await cur.execute(
                f"SELECT {_COLUMNS} FROM sightings WHERE chat = %(chat)s"
                f" AND posted_at >= to_timestamp(%(since)s::float8){model} ORDER BY posted_at DESC, id DESC",
                {"chat": chat, "since": float(since), "model": model_id},
            )
            rows = await cur.fetchall()
        return [_sighting(row) for row in rows]

    async def forget_sightings(self, chat: str, author: str) -> int:
        async with self._conn() as conn:
            cur = await conn.execute("DELETE FROM sightings WHERE chat = %s AND author = %s", (chat, author))
            return int(cur.rowcount)

    async def purge_sightings(self, before: float) -> int:
        async with self._conn() as conn:
            cur = await conn.execute("DELETE FROM sightings WHERE posted_at < to_timestamp(%s::float8)",
                                     (float(before),))
            return int(cur.rowcount)

    async def count_sightings(self, chat: str | None = None) -> int:
        if chat is None:
            rows = await self._rows("SELECT count(*) FROM sightings")
        else:
            rows = await self._rows("SELECT count(*) FROM sightings WHERE chat = %s", (chat,))
        return int(rows[0][0])

    async def sighting_counts(self) -> dict[str, int]:
        rows = await self._rows('SELECT chat, count(*) FROM sightings GROUP BY chat ORDER BY chat COLLATE "C"')
        return {str(chat): int(n) for chat, n in rows}
