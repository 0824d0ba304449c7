"""A fake of the Telegram Bot API over real HTTP, for the real python-telegram-bot client: its server.

It is as strict as the real server about what it accepts, so that a test passing against it proves
something. Every refusal is answered the way the Bot API answers it: an HTTP status with
``{"ok": false, "error_code": ..., "description": ...}``. The rules are in their own modules:
what a call may send and flood control in tests/fakes/telegram/rules.py (entity parsing in
entities.py, private chats and inline queries in private_chats.py), ``getUpdates`` and webhooks in
webhooks.py; the answers of the other methods in methods.py. This module serves them:

* Fault injection: ``inject(method, kind, times=1)``; see ``FAULTS``.

Every call is recorded in ``calls`` with its HTTP ``status`` (0 for a call never answered);
``sent()`` gives the accepted ones, ``refused()`` the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.recorder import LoopbackServer, check_fault, hang, html_error, wait_until
from tests.fakes.telegram.file_store import FileStore
from tests.fakes.telegram.methods import MethodAnswers
from tests.fakes.telegram.private_chats import PrivateChats
from tests.fakes.telegram.rules import DOCUMENT_LIMIT, PHOTO_LIMIT, SEND_METHODS, MessageRules, Refusal
from tests.fakes.telegram.webhooks import Delivery, UpdateDelivery

# Form fields PTB sends as plain strings: never JSON-decoded (a text "123" stays a string).
_STRING_FIELDS = frozenset({"text", "caption", "parse_mode", "file_id", "callback_query_id", "inline_message_id",
                            "emoji", "question", "title", "description", "address", "query", "url",
                            "secret_token", "ip_address"})
FAULTS = {
    "429": "HTTP 429 Too Many Requests with parameters.retry_after 1, as flood control answers",
    "500-html": "HTTP 500 with an HTML page (text/html), as a proxy in front of the API answers",
    "502-html": "HTTP 502 with an HTML page (text/html), as a proxy in front of the API answers",
    "hang": "no answer until the client gives up (or the fake stops)",
}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    status: int = 200  # the HTTP status answered; 0 while (or because) no answer was given
    description: str = ""  # the error description of a refused call
    result: Any = None  # what a successful call returned (a sent message: for a test's reply_to_message)


class FakeTelegram(LoopbackServer, UpdateDelivery, MethodAnswers, MessageRules):
    """Serves /bot<token>/<method> and /file/bot<token>/<path>; records every call it gets.

    Public API: ``calls``, ``files``, ``member_status``, ``fail_downloads``; ``add_file``, ``push``,
    ``sent``, ``refused``, ``wait_for``, ``next_message_id``, ``inject``, ``max_in_window``,
    ``send_times``; the limits as attributes (see tests/fakes/telegram/rules.py).
    """

    def __init__(self, token: str, *, group_limit: int = 20, group_window: float = 60.0, private_limit: int = 1,
                 private_window: float = 1.0, photo_limit: int = PHOTO_LIMIT,
                 document_limit: int = DOCUMENT_LIMIT, local_mode: bool = False,
                 webhook_retry_interval: float = 0.5, files_dir: Path | None = None) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.files = FileStore(files_dir)  # file_id -> (file_path, bytes); on disk under files_dir if given
        self.member_status: dict[tuple[int, int], str] = {}
        self.private = PrivateChats()  # who opened a chat with the bot; inline queries awaiting answers
        self.photo_ids: set[str] = set()  # photos the server holds: what a cached inline result may name
        self.group_limit, self.group_window = group_limit, group_window
        self.private_limit, self.private_window = private_limit, private_window
        self.photo_limit, self.document_limit = photo_limit, document_limit
        # chat_id -> monotonic times of the messages accepted for it (a media group adds one per item)
        self.send_times: dict[int | str, list[float]] = {}
        self.faults: dict[str, deque[str]] = {}  # method -> the kinds still to inject, in order
        self.migrated: dict[int, int] = {}  # group id -> its supergroup's id, once the upgrade was announced
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._new_update = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.fail_downloads = False
        self.local_mode, self.webhook_retry_interval = local_mode, webhook_retry_interval
        self.webhook: dict[str, Any] | None = None  # url, secret_token, max_connections, allowed_updates
        self.deliveries: list[Delivery] = []
        self.last_error: tuple[int, str] | None = None  # (unix time, message) of the last failed delivery
        self._next_set_webhook = 0.0  # monotonic time before which setWebhook is refused
        self._delivering: asyncio.Task[None] | None = None
        self._client: aiohttp.ClientSession | None = None

    # -- server ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        # Room above document_limit, so an oversized upload is read and refused as Telegram refuses it.
        app = web.Application(client_max_size=max(self.document_limit, self.photo_limit) + 16 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        await self._serve(app)

    async def stop(self) -> None:
        self._stopping.set()  # hanging requests end, so the server shuts down at once
        if self._delivering is not None:
            self._delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._delivering
            self._delivering = None
        client, self._client = self._client, None
        if client is not None:
            await client.close()
        await self._shut()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # -- what tests call ------------------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        self.private.saw(update)
        announced = update.get("message") or {}
        if announced.get("migrate_to_chat_id"):  # the group is a supergroup from now on
            self.migrated[int(announced["chat"]["id"])] = int(announced["migrate_to_chat_id"])
        self._updates.append({"update_id": update_id, **update})
        self._new_update.set()
        self._deliver_soon()
        return update_id

    def sent(self, *methods: str) -> list[Call]:
        """The accepted calls of these methods (HTTP 200), in order."""
        return [c for c in self.calls if c.method in methods and c.status == 200]

    def refused(self, *methods: str) -> list[Call]:
        """The calls of these methods (all, if none named) that got an error or no answer, in order."""
        return [c for c in self.calls if c.status != 200 and (not methods or c.method in methods)]

    async def wait_for(self, *methods: str, count: int = 1, timeout: float = 20) -> list[Call]:
        await wait_until(lambda: len(self.sent(*methods)) >= count, timeout,
                         lambda: f"expected {count} call(s) of {methods}; got "
                                 f"{[(c.method, c.status) for c in self.calls]}")
        return self.sent(*methods)

    def inject(self, method: str, kind: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with a fault (a kind of ``FAULTS``) instead."""
        check_fault(kind, FAULTS)
        self.faults.setdefault(method, deque()).extend([kind] * times)

    # -- handlers -------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params, files = await self._params(request)
        fault = self._take_fault(method)
        if fault is not None:
            return await self._fault(Call(method, params, files), fault)
        handler = getattr(self, f"_m_{method}", None)
        try:
            self._check(method, params, files)
            if method in SEND_METHODS:
                self._flood_check(params, self._messages_in(method, params))
            if handler is not None:
                result = await handler(params, files)
            elif method in SEND_METHODS:
                result = self._other_send(method, params)
            else:
                result = True
        except Refusal as refusal:
            self.calls.append(Call(method, params, files, refusal.status, refusal.description))
            return refusal.response()
        response = result if isinstance(result, web.Response) else web.json_response({"ok": True, "result": result})
        if method != "getUpdates":
            error = ""
            if response.status != 200 and isinstance(response.body, bytes):
                with contextlib.suppress(ValueError):
                    error = json.loads(response.body).get("description", "")
            self.calls.append(Call(method, params, files, response.status, error,
                                   None if isinstance(result, web.Response) else result))
        if method in SEND_METHODS and response.status == 200:
            self._record_sent(params, self._messages_in(method, params))
        return response

    async def _file(self, request: web.Request) -> web.Response:
        fault = self._take_fault("download")
        if fault is not None:
            return await self._fault(Call("download", {"path": request.match_info["path"]}), fault)
        if self.fail_downloads:
            return web.Response(status=500, text="Internal Server Error")
        path = request.match_info["path"]
        data = self.files.at_path(path) if request.match_info["token"] == self.token else None
        if data is None:
            return web.Response(status=404)
        self.calls.append(Call("download", {"path": path}))
        return web.Response(body=data)

    @staticmethod
    async def _params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, bytes] = {}
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if hasattr(value, "file"):
                    files[key] = value.file.read()
                else:
                    params[key] = value
        for key, value in list(params.items()):
            if isinstance(value, str) and key not in _STRING_FIELDS:
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(value)
        return params, files

    # -- faults -----------------------------------------------------------------------------------

    def _take_fault(self, method: str) -> str | None:
        queue = self.faults.get(method)
        return queue.popleft() if queue else None

    async def _fault(self, call: Call, kind: str) -> web.Response:
        self.calls.append(call)
        if kind == "429":
            call.status, call.description = 429, "Too Many Requests: retry after 1"
            return Refusal(call.description, 429, {"retry_after": 1}).response()
        if kind == "hang":
            call.status = 0
            return await hang(self._stopping)
        response = html_error(kind, "nginx/1.18.0")
        call.status, call.description = response.status, response.reason
        return response
