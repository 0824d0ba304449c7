"""A small fake of the Telegram Bot API over real HTTP, for the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import serve_on_loopback

BOT_USER = {"id": 999, "is_bot": True, "first_name": "clipbot", "username": "clipbot_test_bot"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


class FakeTelegram:
    """Serves /bot<token>/<method> and /file/bot<token>/<path>; records every call it gets."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, bytes)
        self.member_status: dict[tuple[int, int], str] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._new_update = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.fail_downloads = False

    # -- server ---------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner, self.port = await serve_on_loopback(app)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # -- what tests call ------------------------------------------------------------------------

    def add_file(self, file_id: str, data: bytes, path: str = "photos/file.jpg") -> None:
        self.files[file_id] = (path, data)

    def push(self, update: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, **update})
        self._new_update.set()
        return update_id

    def sent(self, *methods: str) -> list[Call]:
        return [c for c in self.calls if c.method in methods]

    async def wait_for(self, *methods: str, count: int = 1, timeout: float = 20) -> list[Call]:
        deadline = time.monotonic() + timeout
        while len(self.sent(*methods)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} call(s) of {methods}; got {[c.method for c in self.calls]}")
            await asyncio.sleep(0.02)
        return self.sent(*methods)

    def next_message_id(self) -> int:
        return next(self._message_ids)

    # -- handlers -------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params, files = await self._params(request)
        if method != "getUpdates":
            self.calls.append(Call(method, params, files))
        handler = getattr(self, f"_m_{method}", None)
        result = await handler(params, files) if handler else True
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    async def _file(self, request: web.Request) -> web.Response:
        if self.fail_downloads:
            return web.Response(status=500, text="Internal Server Error")
        for path, data in self.files.values():
            if path == request.match_info["path"] and request.match_info["token"] == self.token:
                self.calls.append(Call("download", {"path": path}))
                return web.Response(body=data)
        return web.Response(status=404)

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
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(value)
        return params, files

    @staticmethod
    def _error(code: int, description: str) -> web.Response:
        return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)

    async def _m_getMe(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return BOT_USER

    async def _m_getUpdates(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        offset = int(params.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates:
            self._new_update.clear()
            # A short long-poll, so the client neither spins nor waits long.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), min(float(params.get("timeout") or 0), 0.5))
        return [u for u in self._updates if u["update_id"] >= offset]

    async def _m_getFile(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        file_id = str(params.get("file_id"))
        if file_id not in self.files:
            return self._error(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(data), "file_path": path}

    def _message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        if chat_id < 0:
            chat["title"] = "group"
        message = {"message_id": self.next_message_id(), "date": int(time.time()), "chat": chat, "from": BOT_USER,
                   **content}
        if "reply_markup" in params:
            message["reply_markup"] = params["reply_markup"]
        return message

    async def _m_sendMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self._message(params, text=str(params.get("text", "")))

    async def _m_sendPhoto(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        photo = [{"file_id": "sent-photo", "file_unique_id": "sent", "width": 100, "height": 100}]
        return self._message(params, photo=photo, caption=str(params.get("caption", "")))

    async def _m_editMessageMedia(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        photo = [{"file_id": "edited-photo", "file_unique_id": "edited", "width": 100, "height": 100}]
        return self._message(params, photo=photo)

    async def _m_getChatMember(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        key = (int(params["chat_id"]), int(params["user_id"]))
        user = {"id": int(params["user_id"]), "is_bot": False, "first_name": "member"}
        status = self.member_status.get(key, "member")
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "administrator":
            member.update(can_be_edited=False, is_anonymous=False, can_manage_chat=True, can_delete_messages=True,
                          can_manage_video_chats=True, can_restrict_members=True, can_promote_members=False,
                          can_change_info=True, can_invite_users=True, can_post_stories=False,
                          can_edit_stories=False, can_delete_stories=False)
        elif status == "creator":
            member.update(is_anonymous=False)
        return member
