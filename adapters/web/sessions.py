"""Who sent a request: the session cookie, the client's address, and the signed-in sessions behind them.

The page's own identifiers (Gradio's ``session_hash``, anything in a request body) are chosen by
the client and travel in URLs, so nothing here trusts them. A browser is known by a random token
in an ``HttpOnly``, ``SameSite=Strict`` cookie that its scripts cannot read; signing in maps a
fresh token to the user on the server, with an expiry, and signing out forgets it. A client's
address is the connection's, or the forwarded one only when the connection comes from a proxy
the operator named. Nothing here imports Gradio.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

COOKIE = "clipbot_session"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def new_token() -> str:
    return secrets.token_urlsafe(32)


def valid_token(value: str | None) -> str | None:
    """The cookie's token when it has the shape this server issues, else None."""
    return value if value and _TOKEN.match(value) else None


def parse_proxies(text: str) -> tuple[Network, ...]:
    """``CLIPBOT_WEB_TRUSTED_PROXIES``: comma-separated addresses or networks; ValueError naming a bad one."""
    networks = []
    for part in text.split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not an IP address or network") from None
    return tuple(networks)


def trusted(address: str, proxies: Sequence[Network]) -> bool:
    """Whether ``address`` is one of the named proxies."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(peer: str | None, headers: Mapping[str, str], proxies: Sequence[Network]) -> str:
    """The address a request came from.

    ``X-Forwarded-For`` is read only when the connection itself comes from a trusted proxy; then
    the rightmost address that is not a trusted proxy is the client (the ones left of it were
    written by whoever sent the request, and can say anything).
    """
    address = peer or "unknown"
    if not proxies or not trusted(address, proxies):
        return address
    forwarded = [part.strip() for part in headers.get("x-forwarded-for", "").split(",") if part.strip()]
    for hop in reversed(forwarded):
        if not trusted(hop, proxies):
            return hop
    return forwarded[0] if forwarded else address


def is_https(scheme: str, peer: str | None, headers: Mapping[str, str], proxies: Sequence[Network]) -> bool:
    """Whether the browser reached the page over TLS: directly, or through a trusted proxy that says so."""
    if scheme == "https":
        return True
    return bool(peer and trusted(peer, proxies)) and headers.get("x-forwarded-proto", "").lower() == "https"


@dataclass(frozen=True)
class Identity:
    """One request's sender as the server established it, never as the page said."""

    token: str | None  # the session cookie's token; None when the request carried no valid one
    address: str  # the client's address (see client_address)
    name: str | None  # the signed-in web user, or None for a guest
    guest: str  # a guest's id: derived from the cookie, so it is stable per browser and unguessable
    previous: str | None = None  # the owner this browser was before it last signed in or out


    @property
    def owner(self) -> str:
        """Whose a tab's state and uploads are: the browser's cookie, or (without one) the address."""
        return f"cookie:{self.guest}" if self.token else f"address:{self.address}"

    @property
    def rate_key(self) -> str:
        """What the rate limit counts: a signed-in user across their tabs, a guest by address.

        A guest can drop cookies and open fresh tabs at will; an address is what they cannot change
        cheaply, so guests behind one address share one allowance, as the chat platforms count per user.
        """
        return f"web:{self.name}" if self.name else f"web-address:{self.address}"


@dataclass
class _Session:
    name: str
    expires: float


class SessionStore:
    """Signed-in sessions by cookie token, each with an absolute expiry; in memory (a restart signs everyone out)."""

    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic,
                 max_sessions: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_sessions
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._secret = secrets.token_bytes(32)  # guest ids: unlinkable to the token, stable per process
        # A browser's new token -> its old one's owner, so its open tabs stay its own after a sign-in.
        self._previous: OrderedDict[str, str] = OrderedDict()

    def sign_in(self, name: str, replacing: Identity) -> str:
        """A new token for ``name``, replacing the browser's old one: a token planted in a browser
        before sign-in is worth nothing after it."""
        self._prune()
        self.sign_out(replacing.token)
        token = self._renew(replacing)
        self._sessions[token] = _Session(name, self._clock() + self.ttl_s)
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)  # the oldest sign-in goes first
        return token

    def sign_out(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    def signed_out(self, replacing: Identity) -> str:
        """End the browser's session; returns its new (guest) token."""
        self.sign_out(replacing.token)
        return self._renew(replacing)

    def _renew(self, replacing: Identity) -> str:
        token = new_token()
        if replacing.token is not None:
            self._previous[self._guest(token)] = replacing.owner
            while len(self._previous) > self._max:
                self._previous.popitem(last=False)
        return token

    def _guest(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()[:12]

    def user(self, token: str | None) -> str | None:
        """The user signed in with ``token``, or None (unknown, signed out or expired)."""
        session = self._sessions.get(token) if token else None
        if session is None:
            return None
        if session.expires <= self._clock():
            self._sessions.pop(token or "", None)
            return None
        return session.name

    def identify(self, token: str | None, address: str) -> Identity:
        token = valid_token(token)
        guest = self._guest(token or address)
        return Identity(token=token, address=address, name=self.user(token), guest=guest,
                        previous=self._previous.get(guest) if token else None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _prune(self) -> None:
        now = self._clock()
        for token in [t for t, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[token]
