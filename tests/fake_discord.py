"""A fake of Discord's REST API and CDN over real HTTP, plus real-shaped gateway payloads.

It refuses what Discord refuses, in Discord's words, so that a test passing against it proves something:

* Uploads (multipart message creation, interaction responses, follow-ups and edits): over
  ``upload_limit`` bytes in one request (all files together; default: the guild's limit for its
  ``premium_tier``, 10 MiB at tier 0, as for a bot in a server without boosts) → HTTP 413
  ``{"code": 40005, "message": "Request entity too large"}``. More than 10 files → 400 Invalid Form Body.
* Message bodies (``content``, ``embeds``, ``components``, wherever a message is created or edited,
  including an interaction callback's ``data``): content over 2000 characters; more than 10 embeds;
  an embed's title over 256, description over 4096, more than 25 fields, a field's name over 256 or
  value over 1024, footer text over 2048, author name over 256, or over 6000 characters in all
  embeds together; a button's label over 80 or custom_id over 100 → HTTP 400
  ``{"code": 50035, "message": "Invalid Form Body", "errors": {...}}`` with Discord's nested
  ``_errors`` (``BASE_TYPE_MAX_LENGTH`` and friends), which discord.py flattens into its message.
* ``GET /guilds/<GUILD_ID>`` answers a guild object carrying ``premium_tier``, so discord.py's
  ``Guild.filesize_limit`` agrees with ``upload_limit``; interactions carry
  ``attachment_size_limit`` = ``upload_limit`` (discord.py's ``Interaction.filesize_limit``).
* Gateway IDENTIFY with a ``shard`` field ``[id, count]``: anything but two whole numbers with
  ``0 <= id < count`` → close code 4010 "Invalid shard"; a ``count`` below ``required_shards`` (no
  field counts as ``[0, 1]``) → close code 4011 "Sharding required", as Discord closes them.
  Identifies are rate limited per bucket ``id % max_concurrency``: a second one in a bucket within
  ``identify_interval`` (5 s) → opcode 9 Invalid Session (``d: false``), as Discord answers.
  ``GET /gateway/bot`` reports ``recommended_shards`` and ``max_concurrency``. ``dispatch`` sends a
  server's events only to the shard ``(guild_id >> 22) % count`` and DMs only to shard 0.
* Fault injection: ``inject(path_part, kind, times=1)``; see ``FAULTS``.

Every call is recorded in ``calls`` with its HTTP ``status`` (0 for one never answered); ``sent()``
gives the accepted ones (below 400), ``refused()`` the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import serve_on_loopback

APP_ID = "800"
BOT = {"id": "900", "username": "clipbot", "discriminator": "0", "global_name": "clipbot", "avatar": None,
       "bot": True}
GUILD_ID = "500"
CHANNEL_ID = "600"
TIMESTAMP = "2026-11-26T12:00:00.000000+00:00"

MiB = 1024 * 1024
# Upload limits by a guild's premium tier, as Discord (and discord.py's Guild.filesize_limit) has them.
TIER_UPLOAD_LIMITS = {0: 10 * MiB, 1: 10 * MiB, 2: 50 * MiB, 3: 100 * MiB}
CONTENT_LIMIT = 2000
EMBEDS_LIMIT = 10
EMBED_TOTAL_LIMIT = 6000
FILES_LIMIT = 10
# (field, limit) checked on each embed: Discord's documented maxima.
EMBED_LIMITS = (("title", 256), ("description", 4096))

FAULTS = {
    "429": "HTTP 429 with Discord's X-RateLimit-* headers and {retry_after: 0.1, global: false}",
    "500-html": "HTTP 500 with an HTML page (text/html), as Cloudflare in front of Discord answers",
    "502-html": "HTTP 502 with an HTML page (text/html), as Cloudflare in front of Discord answers",
    "hang": "no answer until the client gives up (or the fake stops)",
}
_HTML_PAGE = ("<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}"
              "</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n")


def user(uid: str, name: str) -> dict[str, Any]:
    return {"id": uid, "username": name, "discriminator": "0", "global_name": name, "avatar": None}


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body only when Content-Type is exactly application/json (no charset).
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


def _too_long(limit: int) -> dict[str, Any]:
    return {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}]}


def invalid_form_body(errors: dict[str, Any]) -> web.Response:
    return _json({"code": 50035, "errors": errors, "message": "Invalid Form Body"}, status=400)


def message_errors(body: Any, file_count: int) -> dict[str, Any]:
    """Discord's nested form errors for a message body (empty when Discord would accept it)."""
    errors: dict[str, Any] = {}
    if not isinstance(body, dict):
        return errors
    content = body.get("content")
    if isinstance(content, str) and len(content) > CONTENT_LIMIT:
        errors["content"] = _too_long(CONTENT_LIMIT)
    embeds = body.get("embeds") or []
    if len(embeds) > EMBEDS_LIMIT:
        errors["embeds"] = _too_long(EMBEDS_LIMIT)
    total = 0
    for n, embed in enumerate(embeds[:EMBEDS_LIMIT]):
        these: dict[str, Any] = {}
        for key, limit in EMBED_LIMITS:
            value = embed.get(key) or ""
            total += len(value)
            if len(value) > limit:
                these[key] = _too_long(limit)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            these["fields"] = _too_long(25)
        for m, f in enumerate(fields[:25]):
            total += len(f.get("name") or "") + len(f.get("value") or "")
            bad = {k: _too_long(limit) for k, limit in (("name", 256), ("value", 1024)) if len(f.get(k) or "") > limit}
            if bad:
                these.setdefault("fields", {})[str(m)] = bad
        for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
            value = (embed.get(key) or {}).get(sub) or ""
            total += len(value)
            if len(value) > limit:
                these[key] = {sub: _too_long(limit)}
        if these:
            errors.setdefault("embeds", {})[str(n)] = these
    if total > EMBED_TOTAL_LIMIT and "embeds" not in errors:
        errors["embeds"] = {"_errors": [{"code": "MAX_EMBED_SIZE_EXCEEDED",
                                         "message": f"Embed size exceeds maximum size of {EMBED_TOTAL_LIMIT}"}]}
    for r, row in enumerate(body.get("components") or []):
        for c, component in enumerate(row.get("components") or []):
            bad = {k: _too_long(limit) for k, limit in (("label", 80), ("custom_id", 100))
                   if len(str(component.get(k) or "")) > limit}
            if bad:
                errors.setdefault("components", {}).setdefault(str(r), {"components": {}})["components"][str(c)] = bad
    if file_count > FILES_LIMIT:
        errors["files"] = _too_long(FILES_LIMIT)
    return errors


@dataclass
class Identify:
    """One accepted IDENTIFY: the shard as sent (``(0, 1)`` when unsharded) and the intents."""

    shard: tuple[int, int]
    intents: int | None


@dataclass
class Call:
    method: str
    path: str
    json: dict[str, Any] | list[Any] | None
    files: dict[str, bytes] = field(default_factory=dict)
    status: int = 200  # the HTTP status answered; 0 while (or because) no answer was given


class FakeDiscord:
    """Records every REST call; serves attachments from /attachments/<id>/<name>.

    Public API: ``calls``, ``attachments``, ``identified``, ``identifies``, ``gateway_closes``,
    ``invalid_sessions``, ``api_base``, ``gateway_url``, ``upload_limit``, ``premium_tier``, the
    gateway's limits as attributes; ``dispatch``, ``sent``, ``refused``, ``wait_for``, ``inject``,
    ``next_id``, ``attachment``, ``message``, ``interaction``, ``slash``, ``guild``.
    """

    def __init__(self, *, upload_limit: int | None = None, premium_tier: int = 0, recommended_shards: int = 1,
                 required_shards: int = 1, max_concurrency: int = 1, identify_interval: float = 5.0) -> None:
        self.calls: list[Call] = []
        self.attachments: dict[str, bytes] = {}
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

    async def start(self) -> None:
        self._stopping.clear()
        # Room above upload_limit, so an oversized upload is read and refused as Discord refuses it.
        app = web.Application(client_max_size=max(64 * MiB, self.upload_limit + 16 * MiB))
        app.router.add_get("/attachments/{id}/{name}", self._attachment)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self._api)
        self._runner, self.port = await serve_on_loopback(app)

    async def stop(self) -> None:
        self._stopping.set()  # hanging requests end, so the server shuts down at once
        for ws in list(self._sockets):
            await ws.close()
        runner, self._runner = self._runner, None
        if runner:
            await runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def dispatch(self, event: str, payload: dict[str, Any]) -> None:
        """Send a gateway DISPATCH to the connected client of the shard it belongs to (a server's
        shard, or shard 0 for DMs), as Discord's gateway does."""
        guild_id = payload.get("guild_id")
        for ws in self._sockets:
            shard_id, count = self._shard_of[ws]
            if shard_id == ((int(guild_id) >> 22) % count if guild_id is not None else 0):
                await ws.send_str(json.dumps({"op": 0, "t": event, "s": next(self._seq), "d": payload}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame["op"] == 2:  # IDENTIFY
                await self._identify(ws, frame.get("d") or {})
            elif frame["op"] == 1:  # heartbeat
                await ws.send_str(json.dumps({"op": 11}))
        if ws in self._sockets:
            self._sockets.remove(ws)
        self._shard_of.pop(ws, None)
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        shard = data.get("shard", [0, 1])
        if not (isinstance(shard, list) and len(shard) == 2 and all(type(n) is int for n in shard)
                and 0 <= shard[0] < shard[1]):
            self.gateway_closes.append(4010)
            await ws.close(code=4010, message=b"Invalid shard")
            return
        shard_id, count = shard
        if count < self.required_shards:
            self.gateway_closes.append(4011)
            await ws.close(code=4011, message=b"Sharding required")
            return
        bucket, now = shard_id % self.max_concurrency, time.monotonic()
        if now - self._last_identify.get(bucket, -math.inf) < self.identify_interval:
            self.invalid_sessions += 1
            await ws.send_str(json.dumps({"op": 9, "d": False}))
            return
        self._last_identify[bucket] = now
        ready = {"v": 10, "user": BOT, "guilds": [], "session_id": f"session-{shard_id}", "private_channels": [],
                 "resume_gateway_url": self.gateway_url, "application": {"id": APP_ID, "flags": 0},
                 **({"shard": shard} if "shard" in data else {})}
        await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": 1, "d": ready}))
        self.identifies.append(Identify((shard_id, count), data.get("intents")))
        self._shard_of[ws] = (shard_id, count)
        self._sockets.append(ws)
        self.identified.set()

    def next_id(self) -> str:
        return str(next(self._ids))

    def sent(self, method: str, path_part: str) -> list[Call]:
        """The accepted calls (status below 400) of ``method`` whose path contains ``path_part``."""
        return [c for c in self.calls if c.method == method and path_part in c.path and 0 < c.status < 400]

    def refused(self, method: str | None = None, path_part: str = "") -> list[Call]:
        """The calls answered with an error, or never answered (status 0)."""
        return [c for c in self.calls if not 0 < c.status < 400 and (method is None or c.method == method)
                and path_part in c.path]

    def inject(self, path_part: str, kind: str, times: int = 1) -> None:
        """Answer the next ``times`` requests whose path contains ``path_part`` with a fault of ``FAULTS``."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULTS)}")
        self.faults.extend([(path_part, kind)] * times)

    async def wait_for(self, method: str, path_part: str, count: int = 1, timeout: float = 20) -> list[Call]:
        deadline = time.monotonic() + timeout
        while len(self.sent(method, path_part)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} {method} {path_part}; got "
                                     f"{[(c.method, c.path) for c in self.calls]}")
            await asyncio.sleep(0.02)
        return self.sent(method, path_part)

    # -- payload builders (shapes as Discord sends them) -----------------------------------------

    def attachment(self, data: bytes, filename: str, content_type: str | None, size: int | None = None,
                   width: int | None = 640) -> dict[str, Any]:
        att_id = self.next_id()
        self.attachments[att_id] = data
        url = f"http://127.0.0.1:{self.port}/attachments/{att_id}/{filename}"
        payload = {"id": att_id, "filename": filename, "size": size if size is not None else len(data), "url": url,
                   "proxy_url": url, "width": width, "height": 427 if width else None}
        if content_type:
            payload["content_type"] = content_type
        return payload

    def message(self, author: dict[str, Any], *, content: str = "", attachments: list[dict[str, Any]] | None = None,
                guild: bool = True, mentions: list[dict[str, Any]] | None = None,
                referenced: dict[str, Any] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": self.next_id(), "channel_id": CHANNEL_ID if guild else f"dm{author['id']}", "author": author,
            "content": content, "timestamp": TIMESTAMP, "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": mentions or [], "mention_roles": [],
            "attachments": attachments or [], "embeds": [], "pinned": False, "type": 19 if referenced else 0,
            "flags": 0,
        }
        if guild:
            payload["guild_id"] = GUILD_ID
            payload["member"] = {"roles": [], "joined_at": TIMESTAMP, "deaf": False, "mute": False, "flags": 0}
        else:
            payload["channel_id"] = "601"
        if referenced is not None:
            payload["referenced_message"] = referenced
            payload["message_reference"] = {"message_id": referenced["id"], "channel_id": payload["channel_id"]}
        return payload

    def interaction(self, author: dict[str, Any], *, kind: int = 2, data: dict[str, Any], guild: bool = True,
                    permissions: str = "0", message: dict[str, Any] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": self.next_id(), "application_id": APP_ID, "type": kind, "token": f"tok{self.next_id()}",
            "version": 1, "data": data, "locale": "en-US", "entitlements": [], "app_permissions": "2147483647",
            "attachment_size_limit": self.upload_limit,
        }
        if guild:
            payload.update(guild_id=GUILD_ID, channel_id=CHANNEL_ID, guild_locale="en-US", context=0,
                           authorizing_integration_owners={"0": GUILD_ID},
                           channel={"id": CHANNEL_ID, "type": 0, "guild_id": GUILD_ID, "name": "general",
                                    "position": 0, "permission_overwrites": [], "nsfw": False, "parent_id": None},
                           member={"user": author, "roles": [], "joined_at": TIMESTAMP, "deaf": False,
                                   "mute": False, "permissions": permissions, "flags": 0})
        else:
            payload.update(channel_id="601", user=author, context=1, authorizing_integration_owners={"1": author["id"]},
                           channel={"id": "601", "type": 1, "recipients": [author]})
        if message is not None:
            payload["message"] = message
        return payload

    def slash(self, author: dict[str, Any], name: str, options: list[dict[str, Any]] | None = None,
              attachments: dict[str, dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"id": f"cmd-{name}", "name": name, "type": 1, "options": options or []}
        if attachments:
            data["resolved"] = {"attachments": attachments}
        return self.interaction(author, data=data, **kw)

    def guild(self) -> dict[str, Any]:
        """The guild as Discord's REST API describes it (GET /guilds/<id>)."""
        everyone = {"id": GUILD_ID, "name": "@everyone", "permissions": "2248473465835073", "position": 0,
                    "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}
        return {
            "id": GUILD_ID, "name": "test server", "icon": None, "splash": None, "discovery_splash": None,
            "owner_id": "1", "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "roles": [everyone], "emojis": [],
            "features": [], "mfa_level": 0, "application_id": None, "system_channel_id": None,
            "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None, "description": None,
            "banner": None, "premium_tier": self.premium_tier, "premium_subscription_count": 0,
            "preferred_locale": "en-US", "public_updates_channel_id": None, "nsfw_level": 0, "stickers": [],
            "premium_progress_bar_enabled": False, "max_members": 500000, "approximate_member_count": 2,
            "approximate_presence_count": 1,
        }

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
            await self._stopping.wait()
            return web.Response(status=503)
        if kind == "429":
            call.status = 429
            bucket = hashlib.sha1(call.path.encode()).hexdigest()[:16]
            headers = {"Content-Type": "application/json", "Via": "1.1 google", "Retry-After": "1",
                       "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": f"{time.time() + 0.1:.3f}", "X-RateLimit-Reset-After": "0.100",
                       "X-RateLimit-Bucket": bucket, "X-RateLimit-Scope": "user"}
            body = {"message": "You are being rate limited.", "retry_after": 0.1, "global": False}
            return web.Response(body=json.dumps(body).encode(), status=429, headers=headers)
        call.status, reason = (500, "Internal Server Error") if kind == "500-html" else (502, "Bad Gateway")
        return web.Response(status=call.status, text=_HTML_PAGE.format(code=call.status, reason=reason),
                            content_type="text/html")

    async def _attachment(self, request: web.Request) -> web.Response:
        call = Call("GET", f"/attachments/{request.match_info['id']}", None)
        fault = self._take_fault(call.path)
        if fault is not None:
            return await self._fault(call, fault)
        data = self.attachments.get(request.match_info["id"])
        call.status = 200 if data is not None else 404
        self.calls.append(call)
        return web.Response(body=data) if data is not None else web.Response(status=404)

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
            async for part in reader:
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
        return response

    def _answer(self, method: str, path: str, body: Any, files: dict[str, bytes], upload_bytes: int,
                upload_count: int) -> web.Response:
        if upload_bytes > self.upload_limit:
            return _json({"code": 40005, "message": "Request entity too large"}, status=413)
        if method in ("POST", "PATCH") and (path.startswith("/webhooks/") or "/messages" in path):
            errors = message_errors(body, upload_count)
            if errors:
                return invalid_form_body(errors)
        if method == "GET" and path == f"/guilds/{GUILD_ID}":
            return _json(self.guild())
        if method == "GET" and path == "/gateway":
            return _json({"url": self.gateway_url})
        if method == "GET" and path == "/gateway/bot":
            return _json({"url": self.gateway_url, "shards": self.recommended_shards,
                          "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0,
                                                  "max_concurrency": self.max_concurrency}})
        if method == "GET" and path == "/users/@me":
            return _json(BOT)
        if method == "GET" and path == "/oauth2/applications/@me":
            return _json({
                "id": APP_ID, "name": "clipbot", "icon": None, "description": "", "bot_public": True,
                "bot_require_code_grant": False, "verify_key": "0" * 64, "owner": user("1", "owner"), "flags": 0,
                "summary": "", "team": None})
        if method == "PUT" and path.endswith("/commands"):
            return _json([{**c, "id": self.next_id(), "application_id": APP_ID, "version": "1"}
                                      for c in (body or [])])
        if path.endswith("/callback"):
            data = (body or {}).get("data")
            errors = message_errors(data, upload_count) if isinstance(data, dict) else {}
            if errors:
                return invalid_form_body({"data": errors})
            kind = (body or {}).get("type")
            resource: dict[str, Any] = {"type": kind}
            if kind in (4, 7):
                resource["message"] = self._message_payload(body.get("data", {}), files)
            return _json({"interaction": {"id": path.split("/")[2], "type": 2,
                                                      "response_message_loading": kind == 5},
                                      "resource": resource})
        if method == "POST" and (path.startswith("/webhooks/") or path.endswith("/messages")):
            return _json(self._message_payload(body or {}, files))
        if method in ("PATCH",):
            return _json(self._message_payload(body or {}, files))
        if method == "DELETE":
            return web.Response(status=204)
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    def _message_payload(self, body: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        return {"id": self.next_id(), "channel_id": CHANNEL_ID, "author": BOT, "content": body.get("content") or "",
                "timestamp": TIMESTAMP, "edited_timestamp": None, "tts": False, "mention_everyone": False,
                "mentions": [], "mention_roles": [], "attachments": [], "embeds": body.get("embeds") or [],
                "pinned": False, "type": 0, "flags": body.get("flags", 0), "components": body.get("components") or []}
