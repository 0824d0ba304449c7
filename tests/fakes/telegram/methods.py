"""The fake Bot API's answers to the methods the bot calls, other than those about updates.

What a successful call returns, shaped as the Bot API returns it: the bot (``getMe``), a file
(``getFile``), a chat member (``getChatMember``), and the message sent or edited by each send and
edit method (its text or caption as stored: markup parsed away, no ``entities`` array). A photo the
bot sends gets a file id of its own, which it may name again (an inline result). Send methods the
bot does not use answer a message of the right kind, enough for the client.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import time
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakes.telegram.file_store import FileStore
from tests.fakes.telegram.rules import plain_text

BOT_USER = {"id": 999, "is_bot": True, "first_name": "clipbot", "username": "clipbot_test_bot"}


class MethodAnswers:
    """The ``_m_<method>`` answers and the payloads they build (mixed into ``FakeTelegram``)."""

    files: FileStore
    photo_ids: set[str]
    member_status: dict[tuple[int, int], str]
    _message_ids: itertools.count[int]

    def add_file(self, file_id: str, data: bytes, path: str = "photos/file.jpg") -> None:
        self.files[file_id] = (path, data)

    def next_message_id(self) -> int:
        return next(self._message_ids)

    @staticmethod
    def _error(code: int, description: str) -> web.Response:
        return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)

    async def _m_getMe(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return BOT_USER

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

    @staticmethod
    def _photo_sizes(data: bytes | None, file_id: str) -> list[dict[str, Any]]:
        width = height = 100
        if data:
            with contextlib.suppress(Exception), Image.open(io.BytesIO(data)) as img:
                width, height = img.size
        return [{"file_id": file_id, "file_unique_id": file_id.replace("-", ""), "width": width, "height": height,
                 **({"file_size": len(data)} if data else {})}]

    def _other_send(self, method: str, params: dict[str, Any]) -> Any:
        """The send methods the bot does not use: a message of the right kind, enough for the client."""
        if method == "copyMessage":
            return {"message_id": self.next_message_id()}
        caption = {"caption": str(params["caption"])} if params.get("caption") else {}
        if method == "sendDice":
            return self._message(params, dice={"emoji": str(params.get("emoji") or "🎲"), "value": 1})
        return self._message(params, **caption)

    @staticmethod
    def _stored(params: dict[str, Any], key: str = "text") -> str:
        """The text as the Bot API returns it: markup parsed away (the fake returns no entities)."""
        return plain_text(str(params.get(key) or ""), params.get("parse_mode")).strip()

    async def _m_sendMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self._message(params, text=self._stored(params))

    async def _m_editMessageText(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if "chat_id" not in params:
            return True  # an inline message: the Bot API answers True
        message = self._message(params, text=self._stored(params))
        return {**message, "message_id": params.get("message_id", message["message_id"]),
                "edit_date": int(time.time())}

    async def _m_editMessageCaption(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if "chat_id" not in params:
            return True
        message = self._message(params, caption=str(params.get("caption", "")),
                                photo=self._photo_sizes(None, "edited-photo"))
        return {**message, "message_id": params.get("message_id", message["message_id"]),
                "edit_date": int(time.time())}

    async def _m_sendPhoto(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        # Each sent photo gets its own file id, which the bot may send again (an inline result).
        file_id = f"sent-photo-{len(self.photo_ids) + 1}"
        self.photo_ids.add(file_id)
        if "photo" in files:
            self.add_file(file_id, files["photo"], f"photos/{file_id}.jpg")
        return self._message(params, photo=self._photo_sizes(files.get("photo"), file_id),
                             caption=str(params.get("caption", "")))

    async def _m_sendDocument(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        data = files.get("document", b"")
        document = {"file_id": "sent-document", "file_unique_id": "sentdocument", "file_size": len(data)}
        return self._message(params, document=document, caption=str(params.get("caption", "")))

    async def _m_sendMediaGroup(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        group_id = str(self.next_message_id())
        messages = []
        for n, item in enumerate(params["media"]):
            ref = str(item.get("media", ""))
            data = files.get(ref[len("attach://"):]) if ref.startswith("attach://") else None
            content: dict[str, Any] = {"media_group_id": group_id}
            if item.get("type") == "photo":
                content["photo"] = self._photo_sizes(data, f"group-photo-{n}")
            else:
                content["document"] = {"file_id": f"group-document-{n}", "file_unique_id": f"gd{n}"}
            if item.get("caption"):
                content["caption"] = str(item["caption"])
            messages.append(self._message({"chat_id": params["chat_id"]}, **content))
        return messages

    async def _m_editMessageMedia(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        media = params.get("media") or {}
        ref = str(media.get("media", ""))
        data = files.get(ref[len("attach://"):]) if ref.startswith("attach://") else None
        message = self._message(params, photo=self._photo_sizes(data, "edited-photo"))
        if media.get("caption"):
            message["caption"] = str(media["caption"])
        return {**message, "message_id": params.get("message_id", message["message_id"]),
                "edit_date": int(time.time())}

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
