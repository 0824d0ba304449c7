"""The fake Bot API's rules for what a call may send, and its flood control.

Every refusal is a ``Refusal``, answered the way the Bot API answers it: an HTTP status with
``{"ok": false, "error_code": ..., "description": ...}``. The rules (each a constructor keyword
argument and public attribute of ``FakeTelegram`` where it has a number in it):

* Text (``sendMessage``, ``editMessageText``): after entity parsing (see ``parse_mode`` below) and
  stripping leading and trailing whitespace, 1..4096 UTF-16 code units; else 400
  ``Bad Request: message text is empty`` or ``Bad Request: message is too long``.
* Captions (``sendPhoto``, ``sendDocument``, ``sendAnimation``, ``sendVideo``, ``sendAudio``,
  ``sendVoice``, ``sendMediaGroup`` items, ``copyMessage``, ``editMessageCaption``,
  ``editMessageMedia``): at most 1024 UTF-16 code units after parsing; else 400
  ``Bad Request: message caption is too long``.
* ``parse_mode`` "HTML", "MarkdownV2" or "Markdown": text that does not parse is refused with 400
  ``Bad Request: can't parse entities: ...``, the way tdlib's parsers refuse it (see
  tests/fakes/telegram/entities.py). Other parse modes: 400 ``Bad Request: unsupported
  parse_mode``. Successful sends return the parsed plain text (no ``entities`` array).
* Inline keyboards: ``callback_data`` must be 1..64 bytes; else 400
  ``Bad Request: BUTTON_DATA_INVALID``.
* Uploaded photos (``sendPhoto``, ``editMessageMedia``/``sendMediaGroup`` with a photo): over
  ``photo_limit`` bytes (10 MiB) → 400 ``Bad Request: PHOTO_SAVE_FILE_INVALID`` (the wording
  Telegram's own servers use for an oversized photo); bytes Pillow cannot decode → 400
  ``Bad Request: IMAGE_PROCESS_FAILED``; width + height over 10000, or long side / short side
  over 20 → 400 ``Bad Request: PHOTO_INVALID_DIMENSIONS``. Photos given as a file_id or URL string
  are accepted unchecked.
* Uploaded documents (and other files): over ``document_limit`` bytes (50 MiB) → 413
  ``Request Entity Too Large``, as the Bot API's front end answers.
* Media groups: 2..10 items, else 400.
* Upgraded groups: once an update announcing ``migrate_to_chat_id`` was pushed, any call naming
  the old group's ``chat_id`` (a send, an edit, anything) is refused with 400 ``Bad Request: group
  chat was upgraded to a supergroup chat`` and ``parameters.migrate_to_chat_id``, as the Bot API
  refuses it (python-telegram-bot raises ``ChatMigrated``).
* Private chats and inline queries: see tests/fakes/telegram/private_chats.py.
* Flood control, per chat. Group, supergroup and channel chats (negative ids, or ``@username``):
  more than ``group_limit`` (20) messages in any rolling ``group_window`` (60 s) → 429
  ``Too Many Requests: retry after N`` with ``parameters.retry_after`` N, the whole seconds (at
  least 1) until the oldest message leaves the window. Private chats (positive ids): the real API
  does not refuse short bursts over ``private_limit`` (1) per ``private_window`` (1 s), so the fake
  only records them; ``max_in_window(chat_id, window)`` tells a test the most it saw. Only
  successful message-creating calls count (``SEND_METHODS``; a media group counts once per item);
  edits, callback answers and refused calls do not.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import math
import time
import warnings
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakes.telegram.entities import PARSERS, EntityError, utf16_len
from tests.fakes.telegram.private_chats import PrivateChats

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64
PHOTO_LIMIT = 10 * 1024 * 1024
DOCUMENT_LIMIT = 50 * 1024 * 1024
PHOTO_MAX_SIDES_SUM = 10_000
PHOTO_MAX_RATIO = 20

# Methods that create messages in a chat: what flood control counts.
SEND_METHODS = frozenset({
    "sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup", "sendAnimation", "sendVideo", "sendAudio",
    "sendVoice", "sendVideoNote", "sendSticker", "sendLocation", "sendVenue", "sendContact", "sendPoll", "sendDice",
    "sendPaidMedia", "copyMessage", "forwardMessage",
})
# Upload fields of send methods other than photos: checked against document_limit.
_FILE_FIELDS = ("document", "animation", "video", "audio", "voice", "video_note", "sticker", "thumbnail")
_CAPTIONED = frozenset({"sendPhoto", "sendDocument", "sendAnimation", "sendVideo", "sendAudio", "sendVoice",
                        "copyMessage", "editMessageCaption"})


class Refusal(Exception):
    """A request the Bot API refuses; carries the HTTP status, description and any parameters."""

    def __init__(self, description: str, status: int = 400, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.description, self.status, self.parameters = description, status, parameters

    def response(self) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return web.json_response(body, status=self.status)


def plain_text(text: str, parse_mode: str | None) -> str:
    """The text as Telegram stores it: entity markup parsed away (raises Refusal when it does not parse)."""
    if not parse_mode:
        return text
    parser = PARSERS.get(str(parse_mode).lower())
    if parser is None:
        raise Refusal("Bad Request: unsupported parse_mode")
    try:
        return parser(text)
    except EntityError as exc:
        raise Refusal(f"Bad Request: can't parse entities: {exc}") from None


class MessageRules:
    """What ``FakeTelegram`` accepts in a call, and its flood control (mixed into ``FakeTelegram``)."""

    private: PrivateChats
    photo_ids: set[str]
    photo_limit: int
    document_limit: int
    group_limit: int
    group_window: float
    private_window: float
    send_times: dict[int | str, list[float]]
    migrated: dict[int, int]

    @staticmethod
    def _check_caption(caption: Any, parse_mode: Any) -> None:
        if caption is None or caption == "":
            return
        if utf16_len(plain_text(str(caption), parse_mode).strip()) > CAPTION_LIMIT:
            raise Refusal("Bad Request: message caption is too long")

    @staticmethod
    def _check_text(text: Any, parse_mode: Any) -> None:
        plain = plain_text("" if text is None else str(text), parse_mode).strip()
        if not plain:
            raise Refusal("Bad Request: message text is empty")
        if utf16_len(plain) > TEXT_LIMIT:
            raise Refusal("Bad Request: message is too long")

    @staticmethod
    def _check_markup(markup: Any) -> None:
        if not isinstance(markup, dict):
            return
        for row in markup.get("inline_keyboard") or []:
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_LIMIT:
                    raise Refusal("Bad Request: BUTTON_DATA_INVALID")

    def _check_photo(self, data: bytes) -> None:
        if len(data) > self.photo_limit:
            raise Refusal("Bad Request: PHOTO_SAVE_FILE_INVALID")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as img:
                    width, height = img.size
                    if width + height > PHOTO_MAX_SIDES_SUM or max(width, height) > PHOTO_MAX_RATIO * min(width,
                                                                                                          height):
                        raise Refusal("Bad Request: PHOTO_INVALID_DIMENSIONS")
                    # Every byte is decoded, at an eighth of the size where JPEG allows: as strict
                    # about damage, and cheap on the event loop the soak shares with the bot.
                    img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                    img.load()
        except Refusal:
            raise
        except Exception:
            raise Refusal("Bad Request: IMAGE_PROCESS_FAILED") from None

    def _check_file(self, data: bytes) -> None:
        if len(data) > self.document_limit:
            raise Refusal("Request Entity Too Large", 413)

    def _check_media(self, media: Any, files: dict[str, bytes]) -> None:
        """One InputMedia: its caption, and its upload when it is one."""
        if not isinstance(media, dict):
            raise Refusal("Bad Request: can't parse InputMedia: media is not an object")
        self._check_caption(media.get("caption"), media.get("parse_mode"))
        ref = media.get("media")
        if isinstance(ref, str) and ref.startswith("attach://"):
            name = ref[len("attach://"):]
            if name not in files:
                raise Refusal(f"Bad Request: can't find attached file \"{name}\"")
            if media.get("type") == "photo":
                self._check_photo(files[name])
            else:
                self._check_file(files[name])

    def _check(self, method: str, params: dict[str, Any], files: dict[str, bytes]) -> None:
        chat = self._chat_key(params.get("chat_id")) if params.get("chat_id") is not None else None
        moved_to = self.migrated.get(chat) if isinstance(chat, int) else None
        if moved_to is not None:
            raise Refusal("Bad Request: group chat was upgraded to a supergroup chat", 400,
                          {"migrate_to_chat_id": moved_to})
        if method in SEND_METHODS and (problem := self.private.send_problem(params.get("chat_id"))):
            raise Refusal(problem, 403)
        if method == "answerInlineQuery" and (problem := self.private.answer_problem(params, self.photo_ids)):
            raise Refusal(problem)
        self._check_markup(params.get("reply_markup"))
        if method in ("sendMessage", "editMessageText"):
            self._check_text(params.get("text"), params.get("parse_mode"))
        if method in _CAPTIONED:
            self._check_caption(params.get("caption"), params.get("parse_mode"))
        if method == "sendPhoto" and "photo" in files:
            self._check_photo(files["photo"])
        for name in _FILE_FIELDS:
            if name in files:
                self._check_file(files[name])
        if method == "editMessageMedia":
            self._check_media(params.get("media"), files)
        if method == "sendMediaGroup":
            media = params.get("media")
            if not isinstance(media, list) or not 2 <= len(media) <= 10:
                raise Refusal("Bad Request: wrong number of messages in a media group: must be 2-10")
            for item in media:
                self._check_media(item, files)

    # -- flood control --------------------------------------------------------------------------------

    @staticmethod
    def _chat_key(chat_id: Any) -> int | str:
        with contextlib.suppress(TypeError, ValueError):
            return int(chat_id)
        return str(chat_id)

    def _is_private(self, chat_id: Any) -> bool:
        key = self._chat_key(chat_id)
        return isinstance(key, int) and key > 0

    @staticmethod
    def _messages_in(method: str, params: dict[str, Any]) -> int:
        media = params.get("media")
        return len(media) if method == "sendMediaGroup" and isinstance(media, list) else 1

    def _flood_check(self, params: dict[str, Any], count: int) -> None:
        chat_id = params.get("chat_id")
        if chat_id is None or self._is_private(chat_id):
            return  # private chats: bursts are recorded, not refused
        now = time.monotonic()
        recent = [t for t in self.send_times.get(self._chat_key(chat_id), []) if now - t < self.group_window]
        if len(recent) + count > self.group_limit:
            # The wait until enough of the oldest messages leave the window for these to fit.
            leaving = recent[len(recent) + count - self.group_limit - 1] if count <= self.group_limit else now
            retry_after = max(1, math.ceil(leaving + self.group_window - now))
            raise Refusal(f"Too Many Requests: retry after {retry_after}", 429, {"retry_after": retry_after})

    def _record_sent(self, params: dict[str, Any], count: int) -> None:
        if params.get("chat_id") is None:
            return
        now = time.monotonic()
        self.send_times.setdefault(self._chat_key(params["chat_id"]), []).extend([now] * count)

    def max_in_window(self, chat_id: int | str, window: float | None = None) -> int:
        """The most messages accepted for ``chat_id`` within any span shorter than ``window`` seconds.

        ``window`` defaults to the chat's own: ``private_window`` for a private chat, else ``group_window``.
        """
        if window is None:
            window = self.private_window if self._is_private(chat_id) else self.group_window
        times = self.send_times.get(self._chat_key(chat_id), [])
        best = 0
        for j, t in enumerate(times):
            best = max(best, j - bisect.bisect_right(times, t - window) + 1)
        return best

