"""The repost sightings part of the storage seam: fingerprints of images posted in watched chats
(core.chat.reposts), kept by the gallery's database next to its images."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MATCH_SLACK", "RepostSightings", "Sighting", "may_match", "phash_from_int64", "phash_to_int64"]
_INT64 = 1 << 63
# How far below the threshold a candidate's cosine may be: a backend computes cosines its own way
# (fp16 in memory, float8 in PostgreSQL), so it errs on the generous side and the caller's exact
# test (core.chat.reposts) decides; a miss would be wrong, an extra candidate costs nothing.
MATCH_SLACK = 5e-3


@dataclass(frozen=True)
class Sighting:
    """The fingerprint of one image posted in a watched chat (repost alerts, core.chat.reposts): its
    vector and perceptual hash, who posted it where and when. The image itself is not kept."""

    chat: str  # the chat's collection name, e.g. "telegram:-100123"
    message_id: str
    author: str  # user key, e.g. "telegram:11"
    author_name: str
    posted_at: float  # unix seconds
    phash: int  # 64-bit perceptual hash, 0 <= phash < 2**64
    vector: np.ndarray = field(compare=False, repr=False)  # float32, stored bit for bit
    model_id: str = ""
    link: str | None = None  # the message's address, where the platform has one


def phash_to_int64(phash: int) -> int:
    """A 64-bit hash as the signed integer a database column holds (two's complement)."""
    if not 0 <= phash < 2 * _INT64:
        raise ValueError(f"a perceptual hash is 64 bits, not {phash}")
    return phash - 2 * _INT64 if phash >= _INT64 else phash


def phash_from_int64(value: int) -> int:
    return value + 2 * _INT64 if value < 0 else value


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    rows = np.asarray(vectors, dtype=np.float32)
    rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
    norms = np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    unit: np.ndarray = rows / norms
    return unit


def may_match(earlier: Sequence[Sighting], *, phashes: Sequence[int], vectors: np.ndarray, hash_distance: int,
              threshold: float, message_id: str | None = None) -> list[Sighting]:
    """Those of ``earlier`` (order kept) that :meth:`RepostSightings.matching_sightings` returns for
    these query fingerprints: the reference its backends agree with, and the scan of a few rows."""
    if not earlier:
        return []
    keep = np.zeros(len(earlier), dtype=bool)
    if hash_distance >= 0 and len(phashes):
        stored = np.fromiter((s.phash for s in earlier), dtype=np.uint64, count=len(earlier))
        asked = np.asarray([int(p) for p in phashes], dtype=np.uint64)
        bits = np.bitwise_count(stored[:, None] ^ asked[None, :]).min(axis=1)
        keep |= bits <= hash_distance
    queries = _unit_rows(vectors) if np.asarray(vectors).size else np.zeros((0, 0), np.float32)
    if threshold <= 1 + MATCH_SLACK and len(queries):
        alike = [n for n, s in enumerate(earlier) if s.vector.size == queries.shape[1]]
        if alike:
            matrix = _unit_rows(np.stack([earlier[n].vector for n in alike]))
            best = (matrix @ queries.T).max(axis=1)
            keep[alike] |= best >= threshold - MATCH_SLACK
    if message_id is not None:
        wanted = {int(p) for p in phashes}
        keep |= np.fromiter((s.message_id == message_id and s.phash in wanted for s in earlier), dtype=bool,
                            count=len(earlier))
    return [s for s, k in zip(earlier, keep, strict=True) if k]


class RepostSightings(ABC):
    """Who posted which image where and when, as :class:`Sighting` fingerprints, per chat."""

    @abstractmethod
    async def add_sighting(self, sighting: Sighting) -> None:
        """Record one posted image's fingerprint."""

    @abstractmethod
    async def sightings(self, chat: str, model_id: str | None, since: float) -> list[Sighting]:
        """The chat's sightings posted at ``since`` or later, newest first, vectors bit for bit;
        only ``model_id``'s (every model's when ``None``)."""

    @abstractmethod
    async def matching_sightings(self, chat: str, model_id: str | None, since: float, *, phashes: Sequence[int],
                                 vectors: np.ndarray, hash_distance: int, threshold: float,
                                 message_id: str | None = None) -> list[Sighting]:
        """The candidates of a repost check, newest first, vectors bit for bit: those of
        :meth:`sightings` (same ``chat``, ``model_id``, ``since``) that one of the query fingerprints
        may match, each query frame a perceptual hash of ``phashes`` and a row of ``vectors``:

        * a hash at most ``hash_distance`` bits from one of ``phashes`` (below 0: none is);
        * or a vector of the same size whose cosine to one of ``vectors`` is at least ``threshold``,
          give or take :data:`MATCH_SLACK` (the caller tests the candidates exactly);
        * or posted as ``message_id`` with one of ``phashes`` (that message delivered twice).

        Every sighting that matches is among them: the caller need not read the others. What
        :func:`may_match` returns of :meth:`sightings`, however the backend finds them.
        """

    @abstractmethod
    async def forget_sightings(self, chat: str, author: str) -> int:
        """Delete what ``author`` posted in ``chat``; returns how many."""

    @abstractmethod
    async def purge_sightings(self, before: float) -> int:
        """Delete sightings posted before ``before`` (unix seconds), in every chat; returns how many."""

    @abstractmethod
    async def count_sightings(self, chat: str | None = None) -> int:
        """How many sightings ``chat`` has (every chat's when ``None``)."""

    @abstractmethod
    async def sighting_counts(self) -> dict[str, int]:
        """Sightings per chat (for copies and stats)."""
