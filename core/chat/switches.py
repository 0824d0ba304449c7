"""Per-chat settings that admins switch from the chat: repost alerts, inline search, private results.

They live in the gallery's database (a :class:`StateStore` without expiry), so every process
serving the gallery sees the same switches and a restart keeps them. Chats nobody configured
read as the defaults and store nothing: with watch off, nothing about a chat is recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from core.storage.state import MemoryState, StateStore

KIND = "chat"
MEMBER_KIND = "member"
MEMBER_TTL_S = 90 * 24 * 3600  # a chat a user has not been seen in for this long drops out of their inline search
CACHE_S = 5.0  # every group message asks; another process's switch is seen within this long


@dataclass(frozen=True)
class ChatSettings:
    """One chat's switches; the defaults are what an unconfigured chat gets."""

    watch: bool = False  # repost alerts
    inline: bool = False  # the chat's gallery is searchable inline by its members, from any chat
    private_results: bool = False  # results go to the requester privately

    @classmethod
    def from_json(cls, text: str | None) -> ChatSettings:
        if not text:
            return cls()
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: bool(v) for k, v in data.items() if k in known})


class ChatSettingsStore:
    """Reads and switches chat settings by the chat's collection name (``telegram:-100123``)."""

    def __init__(self, store: StateStore | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store or MemoryState()
        self._clock = clock
        self._cache: dict[str, tuple[ChatSettings, float]] = {}

    async def get(self, collection: str) -> ChatSettings:
        cached = self._cache.get(collection)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        settings = ChatSettings.from_json(await self._store.get_state(KIND, collection))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[collection] = (settings, self._clock() + CACHE_S)
        return settings

    async def update(self, collection: str, **changes: bool) -> ChatSettings:
        """Switch some settings atomically (two admins switching at once both land)."""
        result: list[ChatSettings] = []

        def change(current: str | None) -> tuple[str, float | None]:
            new = replace(ChatSettings.from_json(current), **changes)
            result.append(new)
            return json.dumps(asdict(new)), None

        await self._store.update_state(KIND, collection, change)
        self._cache[collection] = (result[-1], self._clock() + CACHE_S)
        return result[-1]

    async def saw_member(self, user_key: str, collection: str) -> None:
        """Note that ``user_key`` takes part in ``collection`` (for inline search from other chats)."""
        def add(current: str | None) -> tuple[str, float | None]:
            chats = [c for c in json.loads(current or "[]") if c != collection]
            return json.dumps([collection, *chats][:200]), MEMBER_TTL_S

        await self._store.update_state(MEMBER_KIND, user_key, add)

    async def chats_of(self, user_key: str) -> list[str]:
        """The chats ``user_key`` was last seen taking part in, most recent first."""
        text = await self._store.get_state(MEMBER_KIND, user_key)
        return [str(c) for c in json.loads(text or "[]")]

    async def forget_member(self, user_key: str, collection: str) -> None:
        def drop(current: str | None) -> tuple[str, float | None]:
            return json.dumps([c for c in json.loads(current or "[]") if c != collection]), MEMBER_TTL_S

        await self._store.update_state(MEMBER_KIND, user_key, drop)
