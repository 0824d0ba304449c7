"""A fake of Discord's REST API and CDN over real HTTP, plus real-shaped gateway payloads: its server.

It refuses what Discord refuses, in Discord's words, so that a test passing against it proves
something. The rules are in their own modules: request bodies in tests/fakes/discord/rules.py, what
each REST route answers in rest.py, the gateway in gateway.py, the payloads it builds in
payloads.py. This module serves them:

* Fault injection: ``inject(path_part, kind, times=1)``; see ``FAULTS``.

Every call is recorded in ``calls`` with its HTTP ``status`` (0 for one never answered) and the
JSON the fake answered (``response``); ``sent()`` gives the accepted ones (below 400),
``refused()`` the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import BodyPartReader, web

from tests.fakes.discord.gateway import Gateway, Identify
from tests.fakes.discord.payloads import BOT, Interaction
from tests.fakes.discord.rest import RestRoutes
from tests.fakes.discord.rules import TIER_UPLOAD_LIMITS, MiB
from tests.fakes.recorder import LoopbackServer, check_fault, hang, html_error, wait_until

FAULTS = {
    "429": "HTTP 429 with Discord's X-RateLimit-* headers and {retry_after: 0.1, global: false}",
    "500-html": "HTTP 500 with an HTML page (text/html), as Cloudflare in front of Discord answers",
    "502-html": "HTTP 502 with an HTML page (text/html), as Cloudflare in front of Discord answers",
    "hang": "no answer until the client gives up (or the fake stops)",
}


@dataclass
class Call:
    method: str
    path: str
    json: dict[str, Any] | list[Any] | None
    files: dict[str, bytes] = field(default_factory=dict)
    status: int = 200  # the HTTP status answered; 0 while (or because) no answer was given
    response: Any = None  # the JSON answered, if any

    @property
    def body(self) -> dict[str, Any]:
        """The JSON object sent (a message, a callback, an edit)."""
        assert isinstance(self.json, dict), self.json
        return self.json

    @property
    def entries(self) -> list[dict[str, Any]]:
        """The JSON list sent (a command sync)."""
        assert isinstance(self.json, list), self.json
        return self.json


class FakeDiscord(LoopbackServer, RestRoutes, Gateway):
    """Records every REST call; serves attachments from /attachments/<id>/<name>.

    Public API: ``calls``, ``attachments``, ``embed_files``, ``identified``, ``identifies``, ``gateway_closes``,
    ``invalid_sessions``, ``api_base``, ``gateway_url``, ``upload_limit``, ``premium_tier``, the
    gateway's limits as attributes, ``messages``, ``interactions``, ``commands``, ``modals``;
    ``dispatch``, ``sent``, ``refused``, ``wait_for``, ``inject``, ``next_id``, ``attachment``,
    ``message``, ``reply``, ``interaction``, ``slash``, ``context_menu``, ``press``,
    ``modal_submit``, ``guild``; for groups ``dm_channels``, ``dms_closed``, ``ephemeral_to``,
    ``message_content``, ``jump_url``.
    """

    def __init__(self, *, upload_limit: int | None = None, premium_tier: int = 0, recommended_shards: int = 1,
                 required_shards: int = 1, max_concurrency: int = 1, identify_interval: float = 5.0,
                 message_content: bool = True) -> None:
        self.calls: list[Call] = []
        self.attachments: dict[str, bytes] = {}
        self.embed_files: dict[str, tuple[bytes, str]] = {}
        self.premium_tier = premium_tier
        self.upload_limit = upload_limit if upload_limit is not None else TIER_UPLOAD_LIMITS[premium_tier]
        self.faults: deque[tuple[str, str]] = deque()  # (path_part, kind), matched in order
        self._ids = itertools.count(10_000)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = itertools.count(2)
        self.identified = asyncio.Event()
        self.identifies: list[Identify] = []  # accepted ones, in order
        self.gateway_closes: list[int] = []  # close codes the gateway sent
        self.invalid_sessions = 0  # opcode 9s sent for identifying too fast
        self.recommended_shards, self.required_shards = recommended_shards, required_shards
        self.max_concurrency, self.identify_interval = max_concurrency, identify_interval
        self._last_identify: dict[int, float] = {}  # rate-limit bucket -> monotonic time
        self._shard_of: dict[web.WebSocketResponse, tuple[int, int]] = {}
        self._stopping = asyncio.Event()
        self.messages: dict[str, dict[str, Any]] = {}  # every message by id, as it stands now
        self.interactions: dict[str, Interaction] = {}  # by token
        self.commands: dict[str, list[dict[str, Any]]] = {}  # synced, by the path they were put to
        self.modals: list[dict[str, Any]] = []  # every modal opened (callback type 9's data)
        self.message_content = message_content  # whether the bot may read server messages not addressed to it
        self.users: dict[str, dict[str, Any]] = {str(BOT["id"]): dict(BOT)}  # everyone seen in a payload
        self.dm_channels: dict[str, str] = {}  # user id -> their DM channel with the bot
        self.dms_closed: set[str] = set()  # user ids that do not take DMs from the bot
        self.ephemeral_to: dict[str, str] = {}  # ephemeral message id -> the only user who sees it

    async def start(self) -> None:
        self._stopping.clear()
        # Room above upload_limit, so an oversized upload is read and refused as Discord refuses it.
        app = web.Application(client_max_size=max(64 * MiB, self.upload_limit + 16 * MiB))
        app.router.add_get("/attachments/{id}/{name}", self._attachment)
        app.router.add_get("/embed-media/{id}/{name}", self._embed_media)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self._api)
        await self._serve(app)

    async def stop(self) -> None:
        self._stopping.set()  # hanging requests end, so the server shuts down at once
        for ws in list(self._sockets):
            await ws.close()
        await self._shut()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"


    def sent(self, method: str, path_part: str) -> list[Call]:
        """The accepted calls (status below 400) of ``method`` whose path contains ``path_part``."""
        return [c for c in self.calls if c.method == method and path_part in c.path and 0 < c.status < 400]

    def refused(self, method: str | None = None, path_part: str = "") -> list[Call]:
        """The calls answered with an error, or never answered (status 0)."""
        return [c for c in self.calls if not 0 < c.status < 400 and (method is None or c.method == method)
                and path_part in c.path]

    def inject(self, path_part: str, kind: str, times: int = 1) -> None:
        """Answer the next ``times`` requests whose path contains ``path_part`` with a fault of ``FAULTS``."""
        check_fault(kind, FAULTS)
        self.faults.extend([(path_part, kind)] * times)

    async def wait_for(self, method: str, path_part: str, count: int = 1, timeout: float = 20) -> list[Call]:
        await wait_until(lambda: len(self.sent(method, path_part)) >= count, timeout,
                         lambda: f"expected {count} {method} {path_part}; got "
                                 f"{[(c.method, c.path) for c in self.calls]}")
        return self.sent(method, path_part)

    # -- server ---------------------------------------------------------------------------------

    def _take_fault(self, path: str) -> str | None:
        for entry in self.faults:
            if entry[0] in path:
                self.faults.remove(entry)
                return entry[1]
        return None

    async def _fault(self, call: Call, kind: str) -> web.Response:
        self.calls.append(call)
        if kind == "hang":
            call.status = 0
            return await hang(self._stopping)
        if kind == "429":
            call.status = 429
            bucket = hashlib.sha1(call.path.encode()).hexdigest()[:16]
            headers = {"Content-Type": "application/json", "Via": "1.1 google", "Retry-After": "1",
                       "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": f"{time.time() + 0.1:.3f}", "X-RateLimit-Reset-After": "0.100",
                       "X-RateLimit-Bucket": bucket, "X-RateLimit-Scope": "user"}
            body = {"message": "You are being rate limited.", "retry_after": 0.1, "global": False}
            return web.Response(body=json.dumps(body).encode(), status=429, headers=headers)
        response = html_error(kind, "cloudflare")
        call.status = response.status
        return response

    async def _attachment(self, request: web.Request) -> web.Response:
        call = Call("GET", f"/attachments/{request.match_info['id']}", None)
        fault = self._take_fault(call.path)
        if fault is not None:
            return await self._fault(call, fault)
        data = self.attachments.get(request.match_info["id"])
        call.status = 200 if data is not None else 404
        self.calls.append(call)
        return web.Response(body=data) if data is not None else web.Response(status=404)

    async def _embed_media(self, request: web.Request) -> web.Response:
        """An embed's media, as Tenor's or Discord's CDN serves it; recorded with the host asked for."""
        call = Call("GET", f"/embed-media/{request.match_info['id']}", {"host": request.host})
        found = self.embed_files.get(request.match_info["id"])
        call.status = 200 if found is not None else 404
        self.calls.append(call)
        if found is None:
            return web.Response(status=404)
        return web.Response(body=found[0], content_type=found[1])

    async def _api(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        fault = self._take_fault(path)
        if fault is not None:
            return await self._fault(Call(request.method, path, None), fault)
        body: Any = None
        files: dict[str, bytes] = {}
        upload_bytes = upload_count = 0  # counted per part: two files may share a name
        if request.content_type == "application/json":
            body = await request.json()
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader), "Discord's form data is flat"
                if part.name == "payload_json":
                    body = json.loads(await part.text())
                elif part.name:
                    data = bytes(await part.read())
                    files[part.filename or part.name] = data
                    upload_bytes += len(data)
                    upload_count += 1
        call = Call(request.method, path, body, files)
        self.calls.append(call)
        response = self._answer(request.method, path, body, files, upload_bytes, upload_count)
        call.status = response.status
        if response.body and response.content_type == "application/json":
            call.response = json.loads(response.body)  # type: ignore[arg-type]
        return response


@pytest.fixture(name="fake")
async def fake_fixture() -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord, stopped after the test (import it into a test module to use ``fake``)."""
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()
