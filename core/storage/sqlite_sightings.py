"""The SQL of a SQLite gallery's repost fingerprints (``sightings``, schema version 5).

:class:`core.storage.sqlite.SqliteGallery` is built on this, which is built on
:class:`core.storage.sqlite_rows.SqliteRows`: each write one transaction through its connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.records import blob_to_vector, vector_to_blob
from core.storage.base import Sighting, phash_from_int64, phash_to_int64
from core.storage.sqlite_rows import SqliteRows
from core.storage.sqlite_schema import SIGHTING_COLUMNS

FETCH_CHUNK = 500


def _sighting(row: Sequence[Any]) -> Sighting:
    chat, message_id, author, author_name, posted_at, phash, blob, model_id, link = row
    return Sighting(chat=str(chat), message_id=str(message_id), author=str(author), author_name=str(author_name),
                    posted_at=float(posted_at), phash=phash_from_int64(int(phash)), vector=blob_to_vector(blob),
                    model_id=str(model_id), link=None if link is None else str(link))


class SqliteSightings(SqliteRows):
    """Rows, state, and the fingerprints of images posted in watched chats."""

    async def add_sighting(self, sighting: Sighting) -> None:
        async with self._transaction() as db:
            await db.execute(
                f"INSERT INTO sightings({SIGHTING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sighting.chat, sighting.message_id, sighting.author, sighting.author_name, float(sighting.posted_at),
                 phash_to_int64(sighting.phash), vector_to_blob(sighting.vector), sighting.model_id, sighting.link),
            )

    async def sightings(self, chat: str, model_id: str | None, since: float) -> list[Sighting]:
        model, args = ("AND model_id = ?", (model_id,)) if model_id is not None else ("", ())
        out: list[Sighting] = []
        async with self.db.execute(
            f"SELECT {SIGHTING_COLUMNS} FROM sightings WHERE chat = ? AND posted_at >= ? {model}"
            " ORDER BY posted_at DESC, id DESC", (chat, float(since), *args),
        ) as cur:
            # In chunks: a busy chat holds thousands, and the connection's other requests (replies)
            # get their turn between chunks instead of after all of them.
            while rows := await cur.fetchmany(FETCH_CHUNK):
                out.extend(_sighting(row) for row in rows)
        return out

    async def forget_sightings(self, chat: str, author: str) -> int:
        async with self._transaction() as db:
            cur = await db.execute("DELETE FROM sightings WHERE chat = ? AND author = ?", (chat, author))
            return int(cur.rowcount)

    async def purge_sightings(self, before: float) -> int:
        async with self._transaction() as db:
            cur = await db.execute("DELETE FROM sightings WHERE posted_at < ?", (float(before),))
            return int(cur.rowcount)

    async def count_sightings(self, chat: str | None = None) -> int:
        where, args = ("WHERE chat = ?", (chat,)) if chat is not None else ("", ())
        async with self.db.execute(f"SELECT COUNT(*) FROM sightings {where}", args) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def sighting_counts(self) -> dict[str, int]:
        async with self.db.execute("SELECT chat, COUNT(*) FROM sightings GROUP BY chat ORDER BY chat") as cur:
            return {str(chat): int(n) for chat, n in await cur.fetchall()}
