"""SQLite's repost candidates (:meth:`RepostSightings.matching_sightings`) from memory.

SQLite cannot compare vectors, and reading a busy chat's window for every check (100,000 rows of
2 KB vectors) takes seconds. So the first check of a chat reads its window once into a
:class:`ChatFingerprints` (unit vectors, hashes, times, ids), kept in step with
:meth:`add_sighting`, :meth:`forget_sightings` and :meth:`purge_sightings`; a check then scans
memory and reads only its candidates' rows, by id. A small chat's window is read and tested
as it is: no memory kept for it. Another process's commit (``PRAGMA data_version``) drops every
chat's memory, to be read again; so does closing. Memory is bounded: past :data:`MAX_ROWS` rows
in all, the chats checked longest ago are dropped first.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any

import aiosqlite
import numpy as np

from core.storage import sql
from core.storage.sightings import MATCH_SLACK, Sighting, may_match, phash_to_int64
from core.storage.sql_sightings import SqlSightings

__all__ = ["MAX_ROWS", "SMALL_CHAT", "ChatFingerprints", "SqliteSightings"]
SMALL_CHAT = 1_000  # below this many sightings in its window a chat is tested as read (a few ms)
MAX_ROWS = 100_000  # fingerprints kept in memory in all (about 2 KB each at 512 dimensions: 200 MB)
# Above this many rows the scan runs on a thread: milliseconds of CPU the loop should not wait on.
INLINE_ROWS = 20_000
_ROWS = f"SELECT id, {sql.SIGHTING_COLUMNS.replace('posted_at', '{posted_at}')} FROM sightings"


def _unit(vectors: np.ndarray) -> np.ndarray:
    rows = np.asarray(vectors, dtype=np.float32)
    rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
    unit: np.ndarray = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return unit


class ChatFingerprints:
    """One chat's sightings of one model posted at :attr:`since` or later, as growable arrays in
    the order added (ids ascending): unit vectors in float32 (BLAS's matrix-vector product scans
    100,000 of 512 dimensions in ~25 ms on 2 cores, float16 through torch in ~35), hashes, times,
    and a hash of each message id."""

    def __init__(self, dim: int, since: float) -> None:
        self.dim = dim
        self.since = since
        self.size = 0
        self.last_id = 0
        self.ids = np.zeros(0, np.int64)
        self.times = np.zeros(0, np.float64)
        self.hashes = np.zeros(0, np.uint64)
        self.messages = np.zeros(0, np.int64)  # Python's hash of the message id: a superset test
        self.alike = np.zeros(0, bool)  # the vector has :attr:`dim` dimensions (else it never matches)
        self.matrix = np.zeros((0, dim), np.float32)

    def add(self, ids: Sequence[int], times: Sequence[float], hashes: Sequence[int], messages: Sequence[str],
            vectors: Sequence[np.ndarray]) -> None:
        """Append sightings newer than any held (an id already held is skipped: read and added both)."""
        keep = [n for n, i in enumerate(ids) if i > self.last_id]
        if not keep:
            return
        need = self.size + len(keep)
        if need > len(self.ids):  # growing by half: amortised O(1) appends, a load allocates exactly
            cap = max(need, len(self.ids) + len(self.ids) // 2) if self.size else need
            for name in ("ids", "times", "hashes", "messages", "alike", "matrix"):
                old = getattr(self, name)
                new = np.zeros((cap, *old.shape[1:]), old.dtype)
                new[: self.size] = old[: self.size]
                setattr(self, name, new)
        at = slice(self.size, need)
        self.ids[at] = [ids[n] for n in keep]
        self.times[at] = [times[n] for n in keep]
        self.hashes[at] = [hashes[n] for n in keep]
        self.messages[at] = [hash(messages[n]) for n in keep]
        alike = [vectors[n].size == self.dim for n in keep]
        self.alike[at] = alike
        block = np.zeros((len(keep), self.dim), np.float32)
        fit = [j for j, ok in enumerate(alike) if ok]
        if fit:
            block[fit] = _unit(np.stack([vectors[keep[j]] for j in fit]))
        self.matrix[at] = block
        self.size, self.last_id = need, int(self.ids[need - 1])

    def keep(self, mask: np.ndarray) -> int:
        """Keep the rows ``mask`` selects (of the :attr:`size` live ones); returns how many went."""
        gone = self.size - int(mask.sum())
        if gone:
            for name in ("ids", "times", "hashes", "messages", "alike", "matrix"):
                setattr(self, name, getattr(self, name)[: self.size][mask].copy())
            self.size -= gone
        return gone

    def candidates(self, since: float, phashes: Sequence[int], queries: np.ndarray, hash_distance: int,
                   threshold: float, message_id: str | None) -> np.ndarray:
        """Ids of the rows :func:`may_match` would keep (and perhaps a few within the slack more)."""
        n = self.size
        found = np.zeros(n, bool)
        if hash_distance >= 0 and len(phashes):
            asked = np.asarray([int(p) for p in phashes], np.uint64)
            found |= np.bitwise_count(self.hashes[:n, None] ^ asked[None, :]).min(axis=1) <= hash_distance
        if threshold <= 1 + MATCH_SLACK and len(queries):
            found |= self.alike[:n] & (_best_cosines(self.matrix[:n], queries) >= threshold - MATCH_SLACK)
        if message_id is not None and len(phashes):
            found |= (self.messages[:n] == hash(message_id)) & np.isin(self.hashes[:n], np.asarray(
                [int(p) for p in phashes], np.uint64))
        found &= self.times[:n] >= since
        ids: np.ndarray = self.ids[:n][found]
        return ids


def _best_cosines(matrix: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Each row's best cosine to the unit float32 ``queries`` (one gemv per query: a still image
    has one, a clip a few; a gemm of few columns is no faster)."""
    best: np.ndarray = matrix @ queries[0]
    for query in queries[1:]:
        np.maximum(best, matrix @ query, out=best)
    return best


class SqliteSightings(SqlSightings[aiosqlite.Connection]):
    """:class:`SqlSightings` with a busy chat's fingerprints in memory (see the module)."""

    _memory: collections.OrderedDict[tuple[str, str], ChatFingerprints] | None = None
    _memory_lock: asyncio.Lock | None = None
    _memory_version: int | None = None

    async def data_version(self) -> int:
        raise NotImplementedError  # SqliteRows'

    def _chats(self) -> collections.OrderedDict[tuple[str, str], ChatFingerprints]:
        if self._memory is None:
            self._memory = collections.OrderedDict()
        return self._memory

    def _lock(self) -> asyncio.Lock:
        if self._memory_lock is None:
            self._memory_lock = asyncio.Lock()
        return self._memory_lock

    def forget_fingerprints(self) -> None:
        """Drop every chat's memory (on close): read again when next checked."""
        self._chats().clear()
        self._memory_version = None

    async def add_sighting(self, sighting: Sighting) -> None:
        async with self._transaction() as db:
            cur = await db.execute(self.dialect.sql(sql.ADD_SIGHTING), (
                sighting.chat, sighting.message_id, sighting.author, sighting.author_name, float(sighting.posted_at),
                phash_to_int64(sighting.phash), self.dialect.vector_in(sighting.vector), sighting.model_id,
                sighting.link))
            row_id = int(cur.lastrowid or 0)
        # Under the lock: a chat being read now gets this row from the read or from here (by id).
        async with self._lock():
            held = self._chats().get((sighting.chat, sighting.model_id))
            if held is not None and sighting.posted_at >= held.since:
                held.add([row_id], [sighting.posted_at], [sighting.phash], [sighting.message_id], [sighting.vector])

    async def forget_sightings(self, chat: str, author: str) -> int:
        gone = await super().forget_sightings(chat, author)
        if gone:  # rare (a user's request): the chat is read again when next checked
            async with self._lock():
                for key in [k for k in self._chats() if k[0] == chat]:
                    del self._chats()[key]
        return gone

    async def purge_sightings(self, before: float) -> int:
        gone = await super().purge_sightings(before)
        if gone:
            async with self._lock():  # not while a scan on a thread reads the arrays
                for held in self._chats().values():
                    held.keep(held.times[: held.size] >= before)
        return gone

    async def matching_sightings(self, chat: str, model_id: str | None, since: float, *, phashes: Sequence[int],
                                 vectors: np.ndarray, hash_distance: int, threshold: float,
                                 message_id: str | None = None) -> list[Sighting]:
        queries = _unit(vectors) if np.asarray(vectors).size else np.zeros((0, 0), np.float32)
        async with self._lock():
            version = await self.data_version()
            if self._memory_version is not None and version != self._memory_version:
                self._chats().clear()  # another process wrote: what memory holds may be stale
            self._memory_version = version
            key = None if model_id is None else (chat, model_id)  # every model's: read, never remembered
            held = None if key is None else self._chats().get(key)
            if held is not None and (held.since > since or (len(queries) and queries.shape[1] != held.dim)):
                held = None  # an older window, or another size of query: read afresh
            if held is None:
                rows = await self._fetch(*self._window_rows(chat, model_id, since), vectors=True)
                read = [(int(r[0]), self._sighting(r[1:])) for r in rows]
                if key is None or len(read) < SMALL_CHAT or not len(queries):
                    return may_match([s for _, s in sorted(read, key=_newest_first)], phashes=phashes,
                                     vectors=vectors, hash_distance=hash_distance, threshold=threshold,
                                     message_id=message_id)
                held = self._remember(key, since, queries.shape[1], read)
            elif key is not None:
                self._chats().move_to_end(key)  # the chat checked longest ago is dropped first
            args = (since, phashes, queries, hash_distance, threshold, message_id)
            ids = held.candidates(*args) if held.size < INLINE_ROWS else \
                await asyncio.to_thread(held.candidates, *args)
        return await self._by_id(ids)

    def _window_rows(self, chat: str, model_id: str | None, since: float) -> tuple[str, list[Any]]:
        query, params = self.dialect.sql(_ROWS + " WHERE chat = ? AND posted_at >= ?"), [chat, float(since)]
        if model_id is not None:
            query, params = query + " AND model_id = ?", [*params, model_id]
        return query + " ORDER BY id", params

    def _remember(self, key: tuple[str, str], since: float, dim: int,
                  read: list[tuple[int, Sighting]]) -> ChatFingerprints:
        held = ChatFingerprints(dim, since)
        held.add([i for i, _ in read], [s.posted_at for _, s in read], [s.phash for _, s in read],
                 [s.message_id for _, s in read], [s.vector for _, s in read])
        chats = self._chats()
        chats[key] = held
        total = sum(h.size for h in chats.values())
        while total > MAX_ROWS and len(chats) > 1:  # the chat checked longest ago goes first
            _, dropped = chats.popitem(last=False)
            total -= dropped.size
        return held

    async def _by_id(self, ids: np.ndarray) -> list[Sighting]:
        """The sightings of these ids, newest first, vectors bit for bit (the exact test's input)."""
        found: list[tuple[int, Sighting]] = []
        for part in self.dialect.chunks(ids.tolist()):
            where, params = self.dialect.member("id", part)
            rows = await self._fetch(self.dialect.sql(_ROWS) + f" WHERE {where}", params, vectors=True)
            found += [(int(r[0]), self._sighting(r[1:])) for r in rows]
        return [s for _, s in sorted(found, key=_newest_first)]


def _newest_first(item: tuple[int, Sighting]) -> tuple[float, int]:
    row_id, sighting = item
    return -sighting.posted_at, -row_id
