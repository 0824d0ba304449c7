"""The web chat's outer wall: an ASGI middleware in front of the whole app (Gradio and sign-in).

- **Routes:** only those the page uses answer; everything else Gradio serves (its REST API,
  monitoring, deep links, route listings, login and proxy routes, run history) is a 404.
- **Origins:** a request that changes something (any method but GET and HEAD) must come from the
  page's own origin when the browser says where it comes from; CORS headers never leave.
- **Headers:** every answer forbids framing, sniffing and referrers, and carries a CSP that allows
  the page's own scripts, styles, fonts and pictures and nothing from elsewhere.
- **Cookies:** a browser without a session cookie gets one with the page (see :mod:`adapters.web.sessions`).
- **Uploads:** a guest's upload is capped at the image size limit and at a byte quota per address
  per hour; the paths Gradio stored are recorded as that browser's (see :mod:`adapters.web.uploads`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.web.sessions import (
    COOKIE,
    Identity,
    Network,
    SessionStore,
    client_address,
    is_https,
    new_token,
    trusted,
)
from adapters.web.uploads import UploadLedger

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD = "/gradio_api/upload"
SIGN_IN, SIGN_OUT = "/auth/sign-in", "/auth/sign-out"
MULTIPART_SLACK = 64 * 1024  # a form's boundaries and headers around one file
# (method, path pattern) the page needs; checked against the whole path.
ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((m, re.compile(p)) for m, p in (
    ("GET", r"/"),
    ("GET", r"/theme\.css"),
    ("GET", r"/(assets|static|svelte)/[A-Za-z0-9_./-]+"),
    ("GET", r"/favicon\.ico"),
    ("GET", r"/gradio_api/file=.+"),
    ("GET", r"/gradio_api/heartbeat/[A-Za-z0-9_-]+"),
    ("GET", r"/gradio_api/queue/data"),
    ("POST", r"/gradio_api/queue/join"),
    ("POST", r"/gradio_api/cancel"),
    ("GET", r"/gradio_api/upload_progress"),
    ("POST", re.escape(UPLOAD)),
    ("POST", re.escape(SIGN_IN)),
    ("POST", re.escape(SIGN_OUT)),
))
CSP = "; ".join((
    "default-src 'self'",
    # Gradio's page starts from an inline script holding its config, compiles event scripts (the
    # sign-in button's) with Function(), and its components set styles inline. What keeps user
    # text from becoming script is escaping it (adapters.web.markup); this keeps out everything
    # from elsewhere: no script, style, font, picture, frame or connection to another origin.
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "media-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


@dataclass(frozen=True)
class Request:
    """What the guard needs of one HTTP request."""

    method: str
    path: str
    headers: dict[str, str]
    identity: Identity
    https: bool
    host: str  # as the browser addressed it (a trusted proxy's X-Forwarded-Host)


def allowed(method: str, path: str) -> bool:
    method = "GET" if method == "HEAD" else method
    return any(method == m and pattern.fullmatch(path) for m, pattern in ROUTES)


def cookie_of(headers: dict[str, str]) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def session_cookie(token: str, *, https: bool, max_age: int | None = None) -> str:
    """A ``Set-Cookie`` value: readable by no script, sent by no other site, over TLS only behind TLS."""
    parts = [f"{COOKIE}={token}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if https:
        parts.append("Secure")
    return "; ".join(parts)


def same_origin(req: Request) -> bool:
    """Whether a request that states its origin states this page's (browsers do for every POST)."""
    origin = req.headers.get("origin")
    if origin is None:
        return True  # not a browser: the cookie and the checks behind it decide
    return origin == f"{'https' if req.https else 'http'}://{req.host}"


class WebGuard:
    """The middleware; ``app`` is the FastAPI app with the Gradio page mounted in it."""

    def __init__(self, app: ASGIApp, *, sessions: SessionStore, uploads: UploadLedger,
                 proxies: Sequence[Network] = (), max_file_bytes: int) -> None:
        self.app = app
        self.sessions = sessions
        self.uploads = uploads
        self.proxies = tuple(proxies)
        self.max_file_bytes = max_file_bytes

    def identify(self, peer: str | None, headers: dict[str, str]) -> Identity:
        """Who sent a request with these (lower-case) headers over a connection from ``peer``."""
        return self.sessions.identify(cookie_of(headers), client_address(peer, headers, self.proxies))

    def request(self, scope: Scope) -> Request:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        peer = (scope.get("client") or (None, 0))[0]
        https = is_https(str(scope.get("scheme", "http")), peer, headers, self.proxies)
        host = headers.get("host", "")
        if headers.get("x-forwarded-host") and peer and trusted(peer, self.proxies):
            host = headers["x-forwarded-host"].split(",")[0].strip()
        return Request(str(scope.get("method", "GET")).upper(), str(scope.get("path", "/")), headers,
                       self.identify(peer, headers), https, host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the page uses none
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        req = self.request(scope)
        if not allowed(req.method, req.path):
            await plain(send, 404, "Not found.")
            return
        if req.method not in ("GET", "HEAD") and not same_origin(req):
            log.warning("web: refused a %s to %s from another origin (%s)", req.method, req.path,
                        req.headers.get("origin", "")[:100])
            await plain(send, 403, "Requests from other sites are refused.")
            return
        # The page itself hands a browser without a cookie its cookie, once, before any of the
        # page's own requests are made (issued on those, parallel requests would race).
        fresh = None
        if req.identity.token is None and req.path == "/" and req.method in ("GET", "HEAD"):
            if req.headers.get("sec-fetch-site") == "cross-site":
                # A link from another site: a Strict cookie this browser has was held back, and a new
                # one would sign it out. Load the page again from here, where the cookie is sent.
                await reload_here(send)
                return
            fresh = session_cookie(new_token(), https=req.https)
        if req.path == UPLOAD:
            await self.upload(req, scope, receive, with_headers(send, fresh))
        else:
            await self.app(scope, receive, with_headers(send, fresh))

    async def upload(self, req: Request, scope: Scope, receive: Receive, send: Send) -> None:
        """Gradio's upload route, capped for guests and recorded for the browser that uploaded."""
        try:
            size = int(req.headers.get("content-length", ""))
        except ValueError:
            await plain(send, 411, "Uploads must state their length.")
            return
        guest = req.identity.name is None
        if guest:
            if size > self.max_file_bytes + MULTIPART_SLACK:
                await plain(send, 413, f"The file is larger than {self.max_file_bytes // (1024 * 1024)} MB.")
                return
            wait = self.uploads.retry_after(req.identity.address, size)
            if wait is not None:
                log.warning("web: upload quota reached for %s", req.identity.address)
                await plain(send, 429, "Too many uploads from here; try again later.",
                            [(b"retry-after", str(int(wait) + 1).encode())])
                return
            self.uploads.charge(req.identity.address, size)
        received = 0

        async def counted() -> Message:  # the body may not outgrow what the request declared
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > size:
                    return {"type": "http.disconnect"}
            return message

        status, body = 0, bytearray()

        async def recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status == 200:
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    try:
                        paths = json.loads(bytes(body))
                    except ValueError:
                        paths = []
                    self.uploads.record(req.identity.owner, [p for p in paths if isinstance(p, str)])
            await send(message)

        await self.app(scope, counted, recorded)


def with_headers(send: Send, cookie: str | None) -> Send:
    """``send`` with the security headers added, any CORS grant removed, and a new cookie if one is due."""
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            kept = [(k, v) for k, v in message.get("headers", [])
                    if not k.lower().startswith(b"access-control-") and k.lower() not in dict(HEADERS)]
            sets_ours = any(k.lower() == b"set-cookie" and v.startswith(COOKIE.encode() + b"=") for k, v in kept)
            extra = [(b"set-cookie", cookie.encode())] if cookie and not sets_ours else []
            message = {**message, "headers": [*kept, *HEADERS, *extra]}
        await send(message)

    return sending


async def reload_here(send: Send) -> None:
    body = b'<!doctype html><meta http-equiv="refresh" content="0"><title>clipbot</title>'
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"), *HEADERS]})
    await send({"type": "http.response.body", "body": body})


async def plain(send: Send, status: int, text: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        *HEADERS, *headers]})
    await send({"type": "http.response.body", "body": body})
