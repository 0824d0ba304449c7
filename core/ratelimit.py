"""A per-user token bucket that tells a user once per limit window, not once per message, to slow down."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    notify: bool = False  # True for the first refusal in a limit window only
    retry_after: float = 0.0


@dataclass
class _Bucket:
    tokens: float
    updated: float
    notified_at: float | None = None


class RateLimiter:
    """``per_minute`` requests a minute per key, with bursts up to ``burst`` (default: the same)."""

    def __init__(self, per_minute: float = 10, *, burst: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, int(per_minute)))
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str) -> Decision:
        """Take one token for ``key`` if there is one."""
        if self.rate <= 0:
            return Decision(True)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 10_000:
                self._forget_idle(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return Decision(True)
        # One notice per window (the time a bucket takes to refill): a request let through in
        # between does not earn the flooder a second notice.
        notify = bucket.notified_at is None or now - bucket.notified_at >= self.window
        if notify:
            bucket.notified_at = now
        return Decision(False, notify=notify, retry_after=(1 - bucket.tokens) / self.rate)

    @property
    def window(self) -> float:
        """Seconds an empty bucket takes to fill: 60 for ``per_minute`` requests with that burst."""
        return self.burst / self.rate

    def _forget_idle(self, now: float) -> None:
        # A bucket that has refilled completely holds nothing worth remembering.
        for key in [k for k, b in self._buckets.items() if now - b.updated >= self.window]:
            del self._buckets[key]


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
