"""A per-user token bucket that tells a user once per limit window, not once per message, to slow down."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import StorageUnavailableError
from core.storage.state import MemoryState, StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    notify: bool = False  # True for the first refusal in a limit window only
    retry_after: float = 0.0


KIND = "rate"


class RateLimiter:
    """``per_minute`` requests a minute per key, with bursts up to ``burst`` (default: the same).

    Buckets live in a :class:`StateStore` (the gallery's database in a bot): every process
    serving a chat counts against the same bucket, and a restart does not refill it.
    """

    def __init__(self, per_minute: float = 10, *, burst: int | None = None, store: StateStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, int(per_minute)))
        self._clock = clock
        self._store = store or MemoryState(clock=clock)

    async def check(self, key: str) -> Decision:
        """Take one token for ``key`` if there is one."""
        if self.rate <= 0:
            return Decision(True)
        outcome: list[Decision] = []

        def take(stored: str | None) -> tuple[str, float | None]:
            now = self._clock()
            bucket: dict[str, Any] = json.loads(stored) if stored else {"tokens": self.burst, "updated": now,
                                                                         "notified_at": None}
            tokens = min(self.burst, float(bucket["tokens"]) + max(0.0, now - float(bucket["updated"])) * self.rate)
            notified_at: float | None = bucket["notified_at"]
            if tokens >= 1:
                tokens -= 1
                outcome.append(Decision(True))
            else:
                # One notice per window (the time a bucket takes to refill): a request let through
                # in between does not earn the flooder a second notice.
                notify = notified_at is None or now - notified_at >= self.window
                if notify:
                    notified_at = now
                outcome.append(Decision(False, notify=notify, retry_after=(1 - tokens) / self.rate))
            # A bucket that has refilled completely holds nothing worth remembering.
            value = {"tokens": tokens, "updated": now, "notified_at": notified_at}
            return json.dumps(value), self.window

        try:
            await self._store.update_state(KIND, key, take)
        except StorageUnavailableError as exc:
            # Better unlimited for a while than every request refused while the disk is full.
            log.warning("rate limit not checked (%s): %s", exc.detail, exc)
            return Decision(True)
        return outcome[-1]

    @property
    def window(self) -> float:
        """Seconds an empty bucket takes to fill: 60 for ``per_minute`` requests with that burst."""
        return self.burst / self.rate


class SlidingWindow:
    """At most ``limit`` events in any ``period`` seconds; :meth:`acquire` waits for room, in arrival order.

    Unlike a leaky bucket, which lets a full burst through and then refills, this never allows
    more than ``limit`` in any window: what a platform's "20 messages a minute" rule counts.
    """

    def __init__(self, limit: int, period: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = max(1, limit)
        self.period = period
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = asyncio.Lock()  # FIFO: waiters get their turn in the order they came

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                while self._times and now - self._times[0] >= self.period:
                    self._times.popleft()
                if len(self._times) < self.limit:
                    self._times.append(now)
                    return
                await asyncio.sleep(self.period - (now - self._times[0]))

    def idle(self) -> bool:
        """True when no event of the last period is remembered (the window can be forgotten)."""
        now = self._clock()
        return not self._lock.locked() and (not self._times or now - self._times[-1] >= self.period)
