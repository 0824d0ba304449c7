"""A small fake of Discord's REST API and CDN over real HTTP, plus real-shaped gateway payloads."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
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


def user(uid: str, name: str) -> dict[str, Any]:
    return {"id": uid, "username": name, "discriminator": "0", "global_name": name, "avatar": None}


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body only when Content-Type is exactly application/json (no charset).
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


@dataclass
class Call:
    method: str
    path: str
    json: dict[str, Any] | list[Any] | None
    files: dict[str, bytes] = field(default_factory=dict)


class FakeDiscord:
    """Records every REST call; serves attachments from /attachments/<id>/<name>."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.attachments: dict[str, bytes] = {}
        self._ids = itertools.count(10_000)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = itertools.count(2)
        self.identified = asyncio.Event()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/attachments/{id}/{name}", self._attachment)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self._api)
        self._runner, self.port = await serve_on_loopback(app)

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    async def dispatch(self, event: str, payload: dict[str, Any]) -> None:
        """Send a gateway DISPATCH to every connected client, as Discord's gateway does."""
        for ws in self._sockets:
            await ws.send_str(json.dumps({"op": 0, "t": event, "s": next(self._seq), "d": payload}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame["op"] == 2:  # IDENTIFY
                ready = {"v": 10, "user": BOT, "guilds": [], "session_id": "session", "private_channels": [],
                         "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                         "application": {"id": APP_ID, "flags": 0}}
                await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": 1, "d": ready}))
                self._sockets.append(ws)
                self.identified.set()
            elif frame["op"] == 1:  # heartbeat
                await ws.send_str(json.dumps({"op": 11}))
        if ws in self._sockets:
            self._sockets.remove(ws)
        return ws

    def next_id(self) -> str:
        return str(next(self._ids))

    def sent(self, method: str, path_part: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and path_part in c.path]

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
            "attachment_size_limit": 26214400,
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

    # -- server ---------------------------------------------------------------------------------

    async def _attachment(self, request: web.Request) -> web.Response:
        data = self.attachments.get(request.match_info["id"])
        self.calls.append(Call("GET", f"/attachments/{request.match_info['id']}", None))
        return web.Response(body=data) if data is not None else web.Response(status=404)

    async def _api(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        body: Any = None
        files: dict[str, bytes] = {}
        if request.content_type == "application/json":
            body = await request.json()
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":
                    body = json.loads(await part.text())
                elif part.name:
                    files[part.filename or part.name] = bytes(await part.read())
        self.calls.append(Call(request.method, path, body, files))
        if request.method == "GET" and path in ("/gateway", "/gateway/bot"):
            return _json({"url": f"ws://127.0.0.1:{self.port}/gateway", "shards": 1,
                          "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0,
                                                  "max_concurrency": 1}})
        if request.method == "GET" and path == "/users/@me":
            return _json(BOT)
        if request.method == "GET" and path == "/oauth2/applications/@me":
            return _json({
                "id": APP_ID, "name": "clipbot", "icon": None, "description": "", "bot_public": True,
                "bot_require_code_grant": False, "verify_key": "0" * 64, "owner": user("1", "owner"), "flags": 0,
                "summary": "", "team": None})
        if request.method == "PUT" and path.endswith("/commands"):
            return _json([{**c, "id": self.next_id(), "application_id": APP_ID, "version": "1"}
                                      for c in (body or [])])
        if path.endswith("/callback"):
            kind = (body or {}).get("type")
            resource: dict[str, Any] = {"type": kind}
            if kind in (4, 7):
                resource["message"] = self._message_payload(body.get("data", {}), files)
            return _json({"interaction": {"id": path.split("/")[2], "type": 2,
                                                      "response_message_loading": kind == 5},
                                      "resource": resource})
        if request.method == "POST" and (path.startswith("/webhooks/") or path.endswith("/messages")):
            return _json(self._message_payload(body or {}, files))
        if request.method in ("PATCH",):
            return _json(self._message_payload(body or {}, files))
        if request.method == "DELETE":
            return web.Response(status=204)
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    def _message_payload(self, body: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        return {"id": self.next_id(), "channel_id": CHANNEL_ID, "author": BOT, "content": body.get("content") or "",
                "timestamp": TIMESTAMP, "edited_timestamp": None, "tts": False, "mention_everyone": False,
                "mentions": [], "mention_roles": [], "attachments": [], "embeds": body.get("embeds") or [],
                "pinned": False, "type": 0, "flags": body.get("flags", 0), "components": body.get("components") or []}
