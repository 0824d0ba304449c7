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
* Components: more than 5 action rows, more than 5 components in a row, or two components of one
  message with the same custom_id → 400 Invalid Form Body (``COMPONENT_CUSTOM_ID_DUPLICATED``).
* Command sync (``PUT .../commands``): a slash command's name not 1-32 lower-case letters, digits,
  ``-`` or ``_``, its description not 1-100 characters (options: the same rules); a context menu's
  (types 2, 3) name not 1-32 characters, or a description or options on one; two commands of one
  type with one name; more than 100 slash commands or 5 context menus of a type → 400. The
  answer carries ``description: ""`` for context menus and ``guild_id`` for guild commands, as
  Discord's does; ``commands`` keeps what was synced.
* Interactions built here (``interaction``, ``slash``, ``context_menu``, ``press``,
  ``modal_submit``) are tracked by token, as Discord tracks them: a second callback → 400 40060
  "Interaction has already been acknowledged."; a callback type the interaction cannot take
  (6/7 only for buttons and forms opened from one, 9 not for a form's submission) → 400;
  a modal (type 9) with a title over 45, a custom_id over 100, no or over 5 rows, a text input
  without a label or one over 45, a placeholder over 100, lengths outside 0-4000 → 400.
  Follow-ups and edits before the interaction was acknowledged → 404 10015 "Unknown Webhook";
  the first follow-up after a deferred "thinking" (type 5) edits that message instead of making
  a new one, keeping its ephemeral state (Discord's documented backwards compatibility).
  Interactions whose token the fake did not make are answered leniently, as before.
* Messages: every message the fake makes or builds is kept in ``messages`` (edits applied), so
  ``GET /channels/<c>/messages/<id>`` answers it (404 10008 "Unknown Message" otherwise) and a
  reply (``message_reference``) to a message it does not know in that channel → 400 Invalid Form
  Body (``MESSAGE_REFERENCE_UNKNOWN_MESSAGE``). A created reply answers with ``type`` 19,
  ``message_reference`` and ``referenced_message``; ``reply`` builds a user's reply to a message the
  bot sent, with ``referenced_message`` and its ``components``, as the gateway sends it.
* Ephemeral messages (flags 64, from an interaction's response or follow-up) belong to the user
  of that interaction: ``press`` refuses anyone else's press on one (nobody else sees it), ``reply``
  refuses replying to one, ``GET /channels/<c>/messages/<id>`` answers 404 10008 for one, and a
  reply to one → 400 ``MESSAGE_REFERENCE_UNKNOWN_MESSAGE``, as Discord keeps them out of channels.
* Direct messages: ``POST /users/@me/channels`` with ``recipient_id`` opens (or returns) the DM
  channel with a user the fake has seen (400 50033 "Invalid Recipient(s)" otherwise); messages
  there to a user in ``dms_closed`` → 403 ``{"code": 50007, "message": "Cannot send messages to
  this user"}``. Messages to a channel the fake does not know → 404 10003 "Unknown Channel".
* ``message_content=False`` (the bot lacks the Message Content intent): server messages built here
  that neither mention the bot nor are its own arrive with empty ``content``, ``attachments``,
  ``embeds`` and ``components``, as Discord blanks them.
* Attachments of any ``content_type`` (``image/gif``, ``video/mp4``, ``video/webm``) are served at
  their ``url``; ``jump_url`` gives a message's link as Discord's client copies it.
* The builders refuse what Discord's client never sends: pressing a button the message does not
  have, a context menu that is not registered (or only for a server, used in DMs), submitting a
  form that was not opened or with values its text inputs would not accept.
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
import math
import re
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import BodyPartReader, web

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
ROWS_LIMIT = 5  # action rows in a message or a modal
ROW_LIMIT = 5  # components in one action row
COMMAND_NAME_LIMIT = 32
SLASH_COMMANDS_LIMIT = 100
CONTEXT_MENUS_LIMIT = 5  # of each type (user, message)
MODAL_TITLE_LIMIT = 45
TEXT_INPUT_LABEL_LIMIT = 45
TEXT_INPUT_LIMIT = 4000
_SLASH_NAME = re.compile(r"[-_\w]{1,32}")
EPHEMERAL, LOADING = 64, 128  # message flags
# The callback types each interaction type may be answered with (APPLICATION_COMMAND,
# MESSAGE_COMPONENT, MODAL_SUBMIT): 6 and 7 update the message a component is on.
CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 5: {4, 5, 6}}

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


def _error(code: str, message: str) -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}]}


def _length(value: Any, low: int, high: int) -> dict[str, Any] | None:
    """Discord's error for a string (or list) outside ``low``..``high`` in length; None when it fits."""
    size = len(value) if isinstance(value, (str, list)) else 0
    if value is None or size == 0:
        return _error("BASE_TYPE_REQUIRED", "This field is required") if low > 0 else None
    if size > high:
        return _too_long(high)
    if size < low:
        return _error("BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")
    return None


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
    rows = body.get("components") or []
    if len(rows) > ROWS_LIMIT:
        errors["components"] = _too_long(ROWS_LIMIT)
    custom_ids: set[str] = set()
    for r, row in enumerate(rows[:ROWS_LIMIT]):
        children = row.get("components") or []
        row_errors: dict[str, Any] = {"components": _too_long(ROW_LIMIT)} if len(children) > ROW_LIMIT else {}
        for c, component in enumerate(children[:ROW_LIMIT]):
            bad = {k: _too_long(limit) for k, limit in (("label", 80), ("custom_id", 100))
                   if len(str(component.get(k) or "")) > limit}
            custom_id = component.get("custom_id")
            if custom_id is not None and custom_id in custom_ids:
                bad["custom_id"] = _error("COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated")
            custom_ids.add(custom_id)
            if bad:
                row_errors.setdefault("components", {})[str(c)] = bad
        if row_errors:
            errors.setdefault("components", {})[str(r)] = row_errors
    if file_count > FILES_LIMIT:
        errors["files"] = _too_long(FILES_LIMIT)
    return errors


def modal_errors(data: Any) -> dict[str, Any]:
    """Discord's form errors for a modal (callback type 9's ``data``); empty when it would show it."""
    if not isinstance(data, dict):
        return {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}
    errors: dict[str, Any] = {}
    for key, high in (("title", MODAL_TITLE_LIMIT), ("custom_id", 100)):
        bad = _length(data.get(key), 1, high)
        if bad:
            errors[key] = bad
    rows = data.get("components") or []
    bad = _length(rows, 1, ROWS_LIMIT)
    if bad:
        errors["components"] = bad
    for r, row in enumerate(rows[:ROWS_LIMIT]):
        if row.get("type") == 1:  # an action row holding one text input, labelled by itself
            children = row.get("components") or []
            if len(children) != 1:
                errors.setdefault("components", {})[str(r)] = {"components": _length(children, 1, 1) or _too_long(1)}
                continue
            these = _text_input_errors(children[0], labelled=True)
            if these:
                errors.setdefault("components", {})[str(r)] = {"components": {"0": these}}
        elif row.get("type") == 18:  # a label component around one text input
            these = {}
            label = _length(row.get("label"), 1, TEXT_INPUT_LABEL_LIMIT)
            if label:
                these["label"] = label
            inner = _text_input_errors(row.get("component") or {}, labelled=False)
            if inner:
                these["component"] = inner
            if these:
                errors.setdefault("components", {})[str(r)] = these
        else:
            errors.setdefault("components", {})[str(r)] = {"type": _error(
                "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (1, 18).")}
    return errors


def _text_input_errors(component: dict[str, Any], *, labelled: bool) -> dict[str, Any]:
    if component.get("type") != 4:
        return {"type": _error("UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (4,).")}
    errors: dict[str, Any] = {}
    checks = [("custom_id", 1, 100), ("placeholder", 0, 100), ("value", 0, TEXT_INPUT_LIMIT)]
    if labelled:
        checks.append(("label", 1, TEXT_INPUT_LABEL_LIMIT))
    for key, low, high in checks:
        bad = _length(component.get(key), low, high)
        if bad:
            errors[key] = bad
    if component.get("style", 1) not in (1, 2):
        errors["style"] = _error("UNION_TYPE_CHOICES", "Value of field \"style\" must be one of (1, 2).")
    for key, low in (("min_length", 0), ("max_length", 1)):
        value = component.get(key)
        if value is not None and not low <= value <= TEXT_INPUT_LIMIT:
            errors[key] = _error("NUMBER_TYPE_MAX" if value > TEXT_INPUT_LIMIT else "NUMBER_TYPE_MIN",
                                 f"Int value should be between {low} and {TEXT_INPUT_LIMIT}.")
    return errors


def command_errors(commands: Any) -> dict[str, Any]:
    """Discord's form errors for a bulk overwrite of application commands (empty when accepted)."""
    if not isinstance(commands, list):
        return {"_errors": [{"code": "LIST_TYPE_CONVERT", "message": "Only iterables may be used in a ListType"}]}
    errors: dict[str, Any] = {}
    counts = Counter(c.get("type", 1) for c in commands)
    for kind, limit in ((1, SLASH_COMMANDS_LIMIT), (2, CONTEXT_MENUS_LIMIT), (3, CONTEXT_MENUS_LIMIT)):
        if counts[kind] > limit:
            errors["_errors"] = [{"code": "APPLICATION_COMMANDS_TOO_MANY", "message":
                                  f"Maximum number of application commands of type {kind} reached ({limit})"}]
    seen: set[tuple[int, str]] = set()
    for n, command in enumerate(commands):
        kind, name = command.get("type", 1), command.get("name")
        these = _slash_errors(command) if kind == 1 else {}
        if kind in (2, 3):
            bad = _length(name, 1, COMMAND_NAME_LIMIT)
            if bad:
                these["name"] = bad
            if command.get("description"):
                these["description"] = _error("APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                                              "Context menu commands cannot have a description")
            if command.get("options"):
                these["options"] = _error("APPLICATION_COMMAND_CONTEXT_MENU_OPTIONS",
                                          "Context menu commands cannot have options")
        if (kind, name) in seen:
            these["name"] = _error("APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique")
        seen.add((kind, name))
        if these:
            errors[str(n)] = these
    return errors


def _slash_errors(command: dict[str, Any]) -> dict[str, Any]:
    """A slash command's (or an option's) name and description, and its options', recursively."""
    errors: dict[str, Any] = {}
    name = command.get("name")
    if not (isinstance(name, str) and _SLASH_NAME.fullmatch(name) and name == name.lower()):
        errors["name"] = _error("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    bad = _length(command.get("description"), 1, 100)
    if bad:
        errors["description"] = bad
    for n, option in enumerate(command.get("options") or []):
        these = _slash_errors(option)
        if these:
            errors.setdefault("options", {})[str(n)] = these
    return errors


@dataclass
class Interaction:
    """An interaction the fake built, as Discord tracks it: how it was answered, and its messages."""

    payload: dict[str, Any]
    callback: int | None = None  # the callback type it was answered with
    original: str | None = None  # its original response (for types 6 and 7: the message the button is on)
    loading: bool = False  # the original is a deferred "thinking" message no follow-up has filled yet

    @property
    def channel_id(self) -> str:
        return str(self.payload["channel_id"])


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


class FakeDiscord:
    """Records every REST call; serves attachments from /attachments/<id>/<name>.

    Public API: ``calls``, ``attachments``, ``identified``, ``identifies``, ``gateway_closes``,
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
        """A user's message, as the gateway sends it (blanked without the Message Content intent
        where Discord blanks it: a server message that does not mention the bot)."""
        self.users.setdefault(author["id"], author)
        if guild and not self.message_content and author["id"] != BOT["id"] and \
                not any(m["id"] == BOT["id"] for m in mentions or []):
            content, attachments = "", []
        payload: dict[str, Any] = {
            "id": self.next_id(), "channel_id": CHANNEL_ID if guild else f"dm{author['id']}", "author": author,
            "content": content, "timestamp": TIMESTAMP, "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": mentions or [], "mention_roles": [],
            "attachments": attachments or [], "embeds": [], "pinned": False, "type": 19 if referenced else 0,
            "flags": 0, "components": [],
        }
        if guild:
            payload["guild_id"] = GUILD_ID
            payload["member"] = {"roles": [], "joined_at": TIMESTAMP, "deaf": False, "mute": False, "flags": 0}
        else:
            payload["channel_id"] = self.dm_channels.setdefault(author["id"], "601")
        if referenced is not None:
            payload["referenced_message"] = referenced
            payload["message_reference"] = {"type": 0, "message_id": referenced["id"],
                                            "channel_id": payload["channel_id"],
                                            **({"guild_id": GUILD_ID} if guild else {})}
        self.messages[payload["id"]] = payload
        return payload

    def reply(self, author: dict[str, Any], to: dict[str, Any] | str, *, content: str = "",
              attachments: list[dict[str, Any]] | None = None, ping: bool = True) -> dict[str, Any]:
        """A user's reply to a message (one the bot sent: its id, or the message), as the gateway
        sends it: ``message_reference`` and the whole ``referenced_message``, components and all.
        ``ping``: the reply mentions the replied-to author (Discord's default)."""
        target = self.messages[to if isinstance(to, str) else to["id"]]
        if target["id"] in self.ephemeral_to:
            raise AssertionError(f"message {target['id']} is ephemeral: Discord offers no reply to it")
        guild = target["channel_id"] == CHANNEL_ID
        referenced = {k: v for k, v in target.items() if k != "referenced_message"}  # one level, as Discord
        return self.message(author, content=content, attachments=attachments, guild=guild,
                            mentions=[target["author"]] if ping else [], referenced=referenced)

    def interaction(self, author: dict[str, Any], *, kind: int = 2, data: dict[str, Any], guild: bool = True,
                    permissions: str = "0", message: dict[str, Any] | None = None,
                    channel: str | None = None) -> dict[str, Any]:
        self.users.setdefault(author["id"], author)
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
            dm = channel or self.dm_channels.setdefault(author["id"], "601")
            payload.update(channel_id=dm, user=author, context=1, authorizing_integration_owners={"1": author["id"]},
                           channel={"id": dm, "type": 1, "recipients": [author]})
        if message is not None:
            payload["message"] = message
        self.interactions[payload["token"]] = Interaction(payload)
        return payload

    def slash(self, author: dict[str, Any], name: str, options: list[dict[str, Any]] | None = None,
              attachments: dict[str, dict[str, Any]] | None = None, users: list[dict[str, Any]] | None = None,
              **kw: Any) -> dict[str, Any]:
        """A slash command; ``attachments`` and ``users`` are what its options point at (Discord
        sends them in ``resolved``)."""
        data: dict[str, Any] = {"id": f"cmd-{name}", "name": name, "type": 1, "options": options or []}
        if attachments:
            data.setdefault("resolved", {})["attachments"] = attachments
        if users:
            data.setdefault("resolved", {})["users"] = {u["id"]: u for u in users}
        return self.interaction(author, data=data, **kw)

    def registered(self, name: str, kind: int, *, guild: bool) -> dict[str, Any] | None:
        """The synced command of that name and type usable there (server commands only in the server)."""
        for path, commands in self.commands.items():
            if guild or "/guilds/" not in path:
                for command in commands:
                    if command["name"] == name and command.get("type", 1) == kind:
                        return command
        return None

    def context_menu(self, author: dict[str, Any], name: str, target: dict[str, Any] | str, *,
                     guild: bool = True, **kw: Any) -> dict[str, Any]:
        """A message context menu entry (Apps → ``name``) used on ``target`` (a message or its id)."""
        command = self.registered(name, 3, guild=guild)
        if command is None:
            raise AssertionError(f"Discord shows no message command {name!r} there; synced: {self.commands}")
        message = self.messages[target if isinstance(target, str) else target["id"]]
        data = {"id": command["id"], "name": name, "type": 3, "target_id": message["id"],
                "resolved": {"messages": {message["id"]: message}},
                **({"guild_id": command["guild_id"]} if command.get("guild_id") else {})}
        return self.interaction(author, data=data, guild=guild, **kw)

    def press(self, author: dict[str, Any], message: dict[str, Any] | str, custom_id: str, **kw: Any) -> dict[str, Any]:
        """A press on one of a message's buttons (the message as it stands now)."""
        current = self.messages[message if isinstance(message, str) else message["id"]]
        buttons = [c for row in current.get("components") or [] for c in row.get("components") or []]
        if not any(b.get("custom_id") == custom_id for b in buttons):
            raise AssertionError(f"message {current['id']} has no button {custom_id!r}: {buttons}")
        owner = self.ephemeral_to.get(current["id"])
        if owner is not None and owner != author["id"]:
            raise AssertionError(f"message {current['id']} is ephemeral: only user {owner} sees its buttons")
        guild = current["channel_id"] == CHANNEL_ID
        return self.interaction(author, kind=3, data={"custom_id": custom_id, "component_type": 2},
                                message=current, guild=guild, channel=None if guild else current["channel_id"], **kw)

    @staticmethod
    def jump_url(message: dict[str, Any]) -> str:
        """A message's link, as Discord's client copies it ("Copy Message Link")."""
        where = GUILD_ID if message["channel_id"] == CHANNEL_ID else "@me"
        return f"https://discord.com/channels/{where}/{message['channel_id']}/{message['id']}"

    def modal_submit(self, author: dict[str, Any], modal: dict[str, Any], values: dict[str, str],
                     **kw: Any) -> dict[str, Any]:
        """The submission of an opened modal, with ``values`` by text input custom_id; refuses a
        form Discord's client would not submit (a required input empty, a value outside its lengths)."""
        if modal not in self.modals:
            raise AssertionError(f"no such modal was opened: {modal}")
        inputs = [row.get("component") if row.get("type") == 18 else (row.get("components") or [{}])[0]
                  for row in modal["components"]]
        if set(values) - {i["custom_id"] for i in inputs}:
            raise AssertionError(f"the modal has no inputs {sorted(set(values) - {i['custom_id'] for i in inputs})}")
        rows = []
        for text_input in inputs:
            value = values.get(text_input["custom_id"], "")
            low = text_input.get("min_length") or (1 if text_input.get("required", True) else 0)
            high = text_input.get("max_length") or TEXT_INPUT_LIMIT
            if (value or text_input.get("required", True)) and not low <= len(value) <= high:
                raise AssertionError(f"Discord's client would not submit {value!r} for {text_input}")
            rows.append({"type": 1, "components": [{"type": 4, "custom_id": text_input["custom_id"], "value": value}]})
        return self.interaction(author, kind=5, data={"custom_id": modal["custom_id"], "components": rows}, **kw)

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
        if method == "POST" and path == "/users/@me/channels":
            return self._open_dm(body or {})
        if method == "PUT" and path.endswith("/commands"):
            return self._sync(path, body)
        if path.endswith("/callback"):
            return self._callback(path, body or {}, files, upload_count)
        if path.startswith("/webhooks/"):
            return self._webhook(method, path, body or {}, files)
        if path.startswith("/channels/") and "/messages" in path:
            return self._channel_message(method, path, body or {}, files)
        if method == "PATCH":
            return _json(self._new_message(body or {}, files, CHANNEL_ID))
        if method == "DELETE":
            return web.Response(status=204)
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    def _open_dm(self, body: dict[str, Any]) -> web.Response:
        recipient = self.users.get(str(body.get("recipient_id")))
        if recipient is None or recipient.get("bot"):
            return _json({"message": "Invalid Recipient(s)", "code": 50033}, status=400)
        channel = self.dm_channels.setdefault(recipient["id"], self.next_id())
        return _json({"id": channel, "type": 1, "last_message_id": None, "flags": 0, "recipients": [recipient]})

    def _known_channel(self, channel: str) -> bool:
        return channel in (CHANNEL_ID, "601") or channel in self.dm_channels.values()

    @staticmethod
    def _user_of(interaction: Interaction) -> str:
        payload = interaction.payload
        return str((payload.get("member") or {}).get("user", payload.get("user", {})).get("id"))

    def _sync(self, path: str, body: Any) -> web.Response:
        errors = command_errors(body)
        if errors:
            return invalid_form_body(errors)
        guild = path.split("/guilds/")[1].split("/")[0] if "/guilds/" in path else None
        synced = [{**c, "id": self.next_id(), "application_id": APP_ID, "version": "1",
                   "description": c.get("description") or "", **({"guild_id": guild} if guild else {})}
                  for c in body]
        self.commands[path] = synced
        return _json(synced)

    def _callback(self, path: str, body: dict[str, Any], files: dict[str, bytes], upload_count: int) -> web.Response:
        kind, data = body.get("type"), body.get("data")
        errors = modal_errors(data) if kind == 9 else message_errors(data, upload_count) if isinstance(data, dict) \
            else {}
        if errors:
            return invalid_form_body({"data": errors})
        interaction = self.interactions.get(path.split("/")[3])
        if interaction is not None:
            if interaction.callback is not None:
                return _json({"message": "Interaction has already been acknowledged.", "code": 40060}, status=400)
            allowed = set(CALLBACKS.get(interaction.payload["type"], ()))
            if interaction.payload["type"] == 5 and "message" in interaction.payload:
                allowed.add(7)  # a form opened from a button may update that button's message
            if kind not in allowed:
                return invalid_form_body({"type": _error(
                    "INTERACTION_CALLBACK_TYPE_INVALID", f"Interaction callback type {kind} is not valid here")})
            interaction.callback = kind
        resource: dict[str, Any] = {"type": kind}
        channel = interaction.channel_id if interaction is not None else CHANNEL_ID
        component_message = (interaction.payload.get("message") or {}).get("id") if interaction is not None else None
        if kind in (4, 5):
            flags = (data or {}).get("flags", 0) | (LOADING if kind == 5 else 0)
            message = self._new_message({**(data or {}), "flags": flags}, files, channel)
            resource["message"] = message
            if flags & EPHEMERAL and interaction is not None:
                self.ephemeral_to[message["id"]] = self._user_of(interaction)
            if interaction is not None:
                interaction.original, interaction.loading = message["id"], kind == 5
        elif kind in (6, 7) and interaction is not None and component_message is not None:
            interaction.original = component_message
            if kind == 7:
                resource["message"] = self._edit(component_message, data or {}, files)
        elif kind == 7:
            resource["message"] = self._new_message(data or {}, files, channel)
        elif kind == 9 and isinstance(data, dict):
            self.modals.append(data)
        return _json({"interaction": {"id": path.split("/")[2], "type": 2, "response_message_loading": kind == 5},
                      "resource": resource})

    def _webhook(self, method: str, path: str, body: dict[str, Any], files: dict[str, bytes]) -> web.Response:
        """Follow-ups (POST), and reading, editing or deleting an interaction's messages."""
        parts = path.strip("/").split("/")  # webhooks, app id, token[, messages, id]
        interaction = self.interactions.get(parts[2]) if len(parts) > 2 else None
        if interaction is None:  # a token this fake did not make: answered as a plain webhook
            if method == "DELETE":
                return web.Response(status=204)
            return _json(self._new_message(body, files, CHANNEL_ID))
        if interaction.callback is None or interaction.callback == 9:
            return _json({"message": "Unknown Webhook", "code": 10015}, status=404)
        if len(parts) == 3 and method == "POST":
            if interaction.loading and interaction.original is not None:  # fills the "thinking" message
                interaction.loading = False
                flags = self.messages[interaction.original]["flags"] & ~LOADING
                return _json(self._edit(interaction.original, {**body, "flags": flags}, files))
            message = self._new_message(body, files, interaction.channel_id)
            if message["flags"] & EPHEMERAL:
                self.ephemeral_to[message["id"]] = self._user_of(interaction)
            return _json(message)
        target = interaction.original if len(parts) == 5 and parts[4] == "@original" else \
            parts[4] if len(parts) == 5 else None
        if target is None or target not in self.messages:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        if target == interaction.original:
            interaction.loading = False
        if method == "DELETE":
            del self.messages[target]
            return web.Response(status=204)
        if method == "GET":
            return _json(self.messages[target])
        if method == "PATCH":
            return _json(self._edit(target, body, files))
        return _json({"message": "405: Method Not Allowed", "code": 0}, status=405)

    def _channel_message(self, method: str, path: str, body: dict[str, Any], files: dict[str, bytes]) -> web.Response:
        parts = path.strip("/").split("/")  # channels, id, messages[, id]
        channel = parts[1]
        if not self._known_channel(channel):
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        if method == "POST" and len(parts) == 3:
            closed = [u for u, c in self.dm_channels.items() if c == channel and u in self.dms_closed]
            if closed:
                return _json({"message": "Cannot send messages to this user", "code": 50007}, status=403)
            reference = body.get("message_reference")
            referenced = None
            if reference and reference.get("message_id") is not None:
                referenced = self.messages.get(str(reference["message_id"]))
                if referenced is not None and referenced["id"] in self.ephemeral_to:
                    referenced = None  # not a channel's message: nobody can reply to it
                if (referenced is None or referenced["channel_id"] != channel) and \
                        reference.get("fail_if_not_exists", True):
                    return invalid_form_body({"message_reference": _error(
                        "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")})
            return _json(self._new_message(body, files, channel, referenced=referenced))
        message = self.messages.get(parts[3]) if len(parts) == 4 else None
        if message is None or message["channel_id"] != channel or message["id"] in self.ephemeral_to:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        if method == "GET":
            return _json(message)
        if method == "PATCH":
            return _json(self._edit(message["id"], body, files))
        if method == "DELETE":
            del self.messages[message["id"]]
            return web.Response(status=204)
        return _json({"message": "405: Method Not Allowed", "code": 0}, status=405)

    def _uploaded(self, files: dict[str, bytes]) -> list[dict[str, Any]]:
        attachments = []
        for name, data in files.items():
            att_id = self.next_id()
            self.attachments[att_id] = data
            url = f"http://127.0.0.1:{self.port}/attachments/{att_id}/{name}"
            attachments.append({"id": att_id, "filename": name, "size": len(data), "url": url, "proxy_url": url})
        return attachments

    def _new_message(self, body: dict[str, Any], files: dict[str, bytes], channel_id: str, *,
                     referenced: dict[str, Any] | None = None) -> dict[str, Any]:
        message = {"id": self.next_id(), "channel_id": channel_id, "author": BOT, "content": body.get("content") or "",
                   "timestamp": TIMESTAMP, "edited_timestamp": None, "tts": False, "mention_everyone": False,
                   "mentions": [], "mention_roles": [], "attachments": self._uploaded(files),
                   "embeds": body.get("embeds") or [], "pinned": False, "type": 19 if referenced else 0,
                   "flags": body.get("flags", 0), "components": body.get("components") or []}
        if referenced is not None:
            message["message_reference"] = {"type": 0, "message_id": referenced["id"], "channel_id": channel_id}
            message["referenced_message"] = {k: v for k, v in referenced.items() if k != "referenced_message"}
        self.messages[message["id"]] = message
        return message

    def _edit(self, message_id: str, body: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        """A message edited as Discord edits one: the fields given replace the old ones; attachments
        listed by id stay, new uploads are added."""
        message = self.messages[message_id]
        for key in ("content", "embeds", "components", "flags"):
            if key in body:
                message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "attachments" in body:
            keep = {str(a.get("id")) for a in body["attachments"] or []}
            message["attachments"] = [a for a in message["attachments"] if a["id"] in keep]
        message["attachments"] = [*message["attachments"], *self._uploaded(files)]
        message["edited_timestamp"] = TIMESTAMP
        return message


@pytest.fixture(name="fake")
async def fake_fixture() -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord, stopped after the test (import it into a test module to use ``fake``)."""
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()
