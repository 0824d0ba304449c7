"""Sign-in throttling: every wrong password makes the next guess from that address wait longer.

Per account and address, the first few wrong guesses are free (people mistype); after that each
one doubles the wait before the next is even checked: 1 s, 2 s, 4 s ... up to 15 minutes. That
allows about ten wrong guesses in the first minute and a handful an hour after, while the real
user, from their own address, is never locked out by someone else's guessing. An address that
guesses across many accounts is slowed the same way on its total. A refused guess is answered at
once, holding no worker or queue slot. Nothing here imports Gradio.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

FREE_GUESSES = 5  # per account and address, before the waits begin
FREE_ADDRESS_GUESSES = 20  # per address, over every account
MAX_WAIT_S = 15 * 60
FORGET_AFTER_S = 60 * 60  # a key with no wrong guess for this long starts afresh
ATTACK_PER_MINUTE = 20  # wrong guesses for one account in a minute, from anywhere: logged as an attack
_MAX_KEYS = 50_000


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


class SignInThrottle:
    """Wrong-password bookkeeping by (account, address) and by address."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: OrderedDict[tuple[str, ...], _Failures] = OrderedDict()
        self._recent: dict[str, deque[tuple[float, str]]] = {}  # account -> (time, address), last minute
        self._warned: dict[str, float] = {}

    def wait(self, account: str, address: str) -> float:
        """Seconds before a guess for ``account`` from ``address`` may be checked (0: now)."""
        now = self._clock()
        return max(self._wait(("account", _key(account), address), FREE_GUESSES, now),
                   self._wait(("address", address), FREE_ADDRESS_GUESSES, now))

    def failed(self, account: str, address: str) -> None:
        """A wrong password: count it, and log a warning when the account is under attack."""
        now = self._clock()
        for key in (("account", _key(account), address), ("address", address)):
            entry = self._entry(key, now)
            entry.count += 1
            entry.last = now
        self._watch(_key(account), address, now)

    def succeeded(self, account: str, address: str) -> None:
        """The right password: this address starts afresh for this account."""
        self._failures.pop(("account", _key(account), address), None)

    def _wait(self, key: tuple[str, ...], free: int, now: float) -> float:
        entry = self._failures.get(key)
        if entry is None or entry.count < free:
            return 0.0
        delay = min(MAX_WAIT_S, 2.0 ** (entry.count - free))
        return max(0.0, entry.last + delay - now)

    def _entry(self, key: tuple[str, ...], now: float) -> _Failures:
        entry = self._failures.get(key)
        if entry is None or now - entry.last > FORGET_AFTER_S:
            entry = self._failures[key] = _Failures()
        self._failures.move_to_end(key)
        while len(self._failures) > _MAX_KEYS:
            self._failures.popitem(last=False)
        return entry

    def _watch(self, account: str, address: str, now: float) -> None:
        recent = self._recent.setdefault(account, deque())
        recent.append((now, address))
        while recent and now - recent[0][0] > 60:
            recent.popleft()
        if len(recent) >= ATTACK_PER_MINUTE and now - self._warned.get(account, -1e18) >= 60:
            self._warned[account] = now
            addresses = len({a for _, a in recent})
            log.warning("web sign-in: %d wrong passwords for account %r in the last minute from %d address%s; "
                        "it may be under attack (each address is slowed down; see the README, "
                        "'Exposing the web chat')", len(recent), account, addresses, "" if addresses == 1 else "es")
        if len(self._recent) > _MAX_KEYS:  # names are the guesser's choice: keep only live ones
            for name in [n for n, q in self._recent.items() if not q or now - q[-1][0] > 60]:
                self._recent.pop(name, None)
                self._warned.pop(name, None)


def _key(account: str) -> str:
    return account.strip()[:64]
