"""Result lists kept for a while so a "next match" button can page through them in place."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from core.search import SearchResult


@dataclass(frozen=True)
class ResultPage:
    collection: str  # the chat gallery the list belongs to; other chats cannot page it
    results: tuple[SearchResult, ...]
    weak_below: float
    query: str


class ResultPages:
    """A bounded, expiring map from short tokens to result lists."""

    def __init__(self, *, capacity: int = 5000, ttl_seconds: float = 24 * 3600,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.ttl = ttl_seconds
        self._clock = clock
        self._pages: OrderedDict[str, tuple[float, ResultPage]] = OrderedDict()

    def put(self, page: ResultPage) -> str:
        token = secrets.token_urlsafe(9)  # 12 characters
        self._pages[token] = (self._clock(), page)
        while len(self._pages) > self.capacity:
            self._pages.popitem(last=False)
        return token

    def get(self, token: str) -> ResultPage | None:
        entry = self._pages.get(token)
        if entry is None:
            return None
        created, page = entry
        if self._clock() - created > self.ttl:
            del self._pages[token]
            return None
        return page
