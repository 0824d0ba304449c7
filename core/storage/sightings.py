"""The repost sightings part of the storage seam: fingerprints of images posted in watched chats
(core.chat.reposts), kept by the gallery's database next to its images."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

__all__ = ["RepostSightings", "Sighting", "phash_from_int64", "phash_to_int64"]
_INT64 = 1 << 63


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
