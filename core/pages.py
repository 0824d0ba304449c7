"""Result lists kept for a while so that "next match" and "top N" buttons can page through them.

They live in a :class:`StateStore`: the gallery's database in a bot, so a button pressed on a reply
that another process sent (or this one before a restart) still works until the page expires.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass

from core.search import SearchResult
from core.state import MemoryState, StateStore

KIND = "page"
DEFAULT_TTL_S = 24 * 3600


@dataclass(frozen=True)
class ResultPage:
    collection: str  # the chat gallery the list belongs to; other chats cannot page it
    results: tuple[SearchResult, ...]
    weak_below: float
    query: str

    def to_json(self) -> str:
        return json.dumps({"collection": self.collection, "results": [asdict(r) for r in self.results],
                           "weak_below": self.weak_below, "query": self.query}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ResultPage:
        data = json.loads(text)
        return cls(str(data["collection"]), tuple(SearchResult(**r) for r in data["results"]),
                   float(data["weak_below"]), str(data["query"]))


class ResultPages:
    """Short tokens for result lists, expiring after ``ttl_seconds``."""

    def __init__(self, store: StateStore | None = None, *, ttl_seconds: float = DEFAULT_TTL_S) -> None:
        self._store = store or MemoryState()
        self.ttl = ttl_seconds

    async def put(self, page: ResultPage) -> str:
        token = secrets.token_urlsafe(9)  # 12 characters: fits Telegram's 64-byte callback data
        await self._store.put_state(KIND, token, page.to_json(), self.ttl)
        return token

    async def get(self, token: str) -> ResultPage | None:
        text = await self._store.get_state(KIND, token)
        return None if text is None else ResultPage.from_json(text)
