"""Conversation state that a later message needs (result pages, rate limits), behind one small
protocol: the gallery's database in a bot (so every process, and a restarted one, sees it), or
memory where nothing else needs it. A gallery's database also lists a kind's values and adds
values it lacks, so that ``clipbot migrate`` can carry them to another database."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

# Given the stored value (None when absent or expired): the new value and its lifetime in seconds.
StateUpdate = Callable[[str | None], tuple[str, float | None]]


class StateItem(NamedTuple):
    """One live value of a kind: its key, the value, and the seconds it has left (None: no expiry)."""

    key: str
    value: str
    ttl_s: float | None


class StateStore(Protocol):
    """Expiring values by (kind, key); :class:`ConversationState` (so every gallery) is one."""

    async def get_state(self, kind: str, key: str) -> str | None: ...

    async def put_state(self, kind: str, key: str, value: str, ttl_s: float | None) -> None: ...

    async def update_state(self, kind: str, key: str, update: StateUpdate) -> str: ...


class ConversationState(ABC):
    """The conversation state part of the storage seam: a :class:`StateStore` kept in the gallery's
    database, shared by every process that serves it, plus the purge of what has expired."""

    @abstractmethod
    async def get_state(self, kind: str, key: str) -> str | None:
        """A stored value, or None when absent or expired."""

    @abstractmethod
    async def put_state(self, kind: str, key: str, value: str, ttl_s: float | None) -> None: ...

    @abstractmethod
    async def update_state(self, kind: str, key: str, update: StateUpdate) -> str:
        """Read, change and write one value atomically (no other process interleaves); returns the new value."""

    @abstractmethod
    async def purge_state(self) -> int:
        """Delete expired values; returns how many."""

    @abstractmethod
    async def state_items(self, kind: str) -> list[StateItem]:
        """Every live value of ``kind``, in key order (byte-wise), with the lifetime it has left."""

    @abstractmethod
    async def add_state(self, kind: str, items: Sequence[StateItem]) -> int:
        """Store each of ``items`` whose key holds no live value, in one transaction: a live value
        already there is kept as it is. Returns how many were stored."""


class MemoryState:
    """A :class:`StateStore` in this process's memory, bounded to ``capacity`` values (oldest out)."""

    def __init__(self, *, capacity: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self._clock = clock
        self._values: dict[tuple[str, str], tuple[str, float | None]] = {}
        self._lock = asyncio.Lock()

    async def get_state(self, kind: str, key: str) -> str | None:
        return self._live((kind, key))

    async def put_state(self, kind: str, key: str, value: str, ttl_s: float | None) -> None:
        self._values.pop((kind, key), None)
        self._values[(kind, key)] = (value, None if ttl_s is None else self._clock() + ttl_s)
        while len(self._values) > self.capacity:
            del self._values[next(iter(self._values))]

    async def update_state(self, kind: str, key: str, update: StateUpdate) -> str:
        async with self._lock:
            value, ttl_s = update(self._live((kind, key)))
            await self.put_state(kind, key, value, ttl_s)
            return value

    def _live(self, key: tuple[str, str]) -> str | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and self._clock() >= expires:
            del self._values[key]
            return None
        return value
