"""Conversation threads: what a later message needs to page, refine or give feedback on a result.

Each reply with results gets a thread: the results, the query's vector and filters, and the
images liked and rejected on the way there. Threads never change once stored; paging reads one,
and every refinement or feedback stores a new one under a new token, owned by the user who asked.
Two people refining the same result in a group therefore never mix, and a button pressed on an
older message starts from what that message showed. Threads live in a :class:`StateStore` (the
gallery's database in a bot: any process answers, and a restart loses nothing) and expire after
``ThreadConfig.ttl_s``.

The token rides in the result's buttons (``next:T:2``, ``like:T:12``), so a reply to a result
finds its thread from the replied-to message's buttons, on any platform that shows them.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from core.search.searcher import QueryKind, QueryPlan
from core.search.words import SearchResult
from core.storage.state import MemoryState, StateStore

KIND = "thread"
INDEX_KIND = "threads_of"  # chat|user -> that user's thread tokens in that chat, for /forget
DEFAULT_TTL_S = 24 * 3600
NEXT_PREFIX = "next:"
TOP_PREFIX = "top:"
LIKE_PREFIX = "like:"
NOT_PREFIX = "not:"
_RESULT_DATA = re.compile(r"^(?:like|not):(?P<token>[A-Za-z0-9_-]{1,32}):(?P<id>\d{1,18})$")


@dataclass(frozen=True)
class ThreadConfig:
    """How long threads live and how refining and feedback move a query (README, "How refining works")."""

    ttl_s: float = DEFAULT_TTL_S
    refine_text_weight: float = 0.5
    query_weight: float = 1.0
    like_weight: float = 0.75
    reject_weight: float = 0.25


@dataclass(frozen=True)
class ResultRef:
    """One shown result: its thread's token and the image it showed."""

    token: str
    image_id: int


def result_ref(button_data: Iterable[str]) -> ResultRef | None:
    """The result a message shows, from its buttons' data (None: not one of our results)."""
    for data in button_data:
        match = _RESULT_DATA.match(data)
        if match:
            return ResultRef(match.group("token"), int(match.group("id")))
    return None


def _vector_text(vector: np.ndarray | None) -> str | None:
    if vector is None:
        return None
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _vector_of(text: str | None) -> np.ndarray | None:
    if not text:
        return None
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


@dataclass(frozen=True)
class Thread:
    """One reply's results and how they were found.

    ``origin`` is the query before any feedback (Rocchio starts from it each time); ``plan`` the
    query that ranked ``results``. ``weak_below`` and ``none_below`` are the thresholds the
    results were judged by when they were found.
    """

    collection: str  # the chat gallery it belongs to; other chats cannot use it
    owner: str  # the user key it was made for
    results: tuple[SearchResult, ...]
    query: str  # what was asked, for titles ("photo", the /find text, "#12 + at night")
    weak_below: float = float("-inf")
    none_below: float = float("-inf")
    origin: np.ndarray | None = field(default=None, compare=False)
    plan: QueryPlan | None = field(default=None, compare=False)
    liked: tuple[int, ...] = ()
    rejected: tuple[int, ...] = ()

    def to_json(self) -> str:
        plan = self.plan
        return json.dumps({
            "collection": self.collection, "owner": self.owner, "results": [asdict(r) for r in self.results],
            "query": self.query, "weak_below": _finite(self.weak_below), "none_below": _finite(self.none_below),
            "origin": _vector_text(self.origin), "liked": list(self.liked), "rejected": list(self.rejected),
            "plan": None if plan is None else {
                "vector": _vector_text(plan.vector), "words": plan.words, "phrases": list(plan.phrases),
                "minus_words": list(plan.minus_words), "families": list(plan.families),
                "exclude": list(plan.exclude), "title": plan.title, "kind": plan.kind,
            },
        }, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Thread:
        data = json.loads(text)
        plan_data = data.get("plan")
        plan = None
        vector = _vector_of(plan_data.get("vector")) if plan_data else None
        if plan_data and vector is not None:
            plan = QueryPlan(vector, words=str(plan_data["words"]), phrases=tuple(plan_data["phrases"]),
                             minus_words=tuple(plan_data["minus_words"]), families=tuple(plan_data["families"]),
                             exclude=tuple(int(i) for i in plan_data["exclude"]), title=str(plan_data["title"]),
                             kind=_kind(plan_data["kind"]))
        return cls(
            str(data["collection"]), str(data.get("owner", "")), tuple(SearchResult(**r) for r in data["results"]),
            str(data["query"]), _number(data.get("weak_below")), _number(data.get("none_below")),
            origin=_vector_of(data.get("origin")), plan=plan, liked=tuple(int(i) for i in data.get("liked", ())),
            rejected=tuple(int(i) for i in data.get("rejected", ())),
        )


def _kind(value: object) -> QueryKind:
    return value if value == "image" or value == "text" else "mixed"


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _number(value: object) -> float:
    return float("-inf") if value is None else float(value)  # type: ignore[arg-type]


class Threads:
    """Threads by short token, expiring after ``ttl_seconds``."""

    def __init__(self, store: StateStore | None = None, *, ttl_seconds: float = DEFAULT_TTL_S) -> None:
        self._store = store or MemoryState()
        self.ttl = ttl_seconds

    async def put(self, thread: Thread) -> str:
        token = secrets.token_urlsafe(9)  # 12 characters: fits Telegram's 64-byte callback data
        await self._store.put_state(KIND, token, thread.to_json(), self.ttl)

        def listed(current: str | None) -> tuple[str, float | None]:
            return json.dumps([*json.loads(current or "[]")[-999:], token]), self.ttl

        await self._store.update_state(INDEX_KIND, f"{thread.collection}|{thread.owner}", listed)
        return token

    async def get(self, token: str) -> Thread | None:
        text = await self._store.get_state(KIND, token)
        return Thread.from_json(text) if text else None

    async def forget(self, collection: str, owner: str) -> int:
        """Blank every live thread ``owner`` has in ``collection`` (they read as expired); how many."""
        tokens = json.loads(await self._store.get_state(INDEX_KIND, f"{collection}|{owner}") or "[]")
        live = 0
        for token in tokens:
            if await self._store.get_state(KIND, token):
                live += 1
            await self._store.put_state(KIND, token, "", 0)  # the content goes now; the row with the next sweep
        await self._store.put_state(INDEX_KIND, f"{collection}|{owner}", "", 0)
        return live
