"""A fake of the Telegram Bot API over real HTTP, for the real python-telegram-bot client.

It is as strict as the real server about what it accepts, so that a test passing against it proves
something. Every refusal is answered the way the Bot API answers it: an HTTP status with
``{"ok": false, "error_code": ..., "description": ...}``. The rules (each a constructor keyword
argument and public attribute where it has a number in it):

* Text (``sendMessage``, ``editMessageText``): after entity parsing (see ``parse_mode`` below) and
  stripping leading and trailing whitespace, 1..4096 UTF-16 code units; else 400
  ``Bad Request: message text is empty`` or ``Bad Request: message is too long``.
* Captions (``sendPhoto``, ``sendDocument``, ``sendAnimation``, ``sendVideo``, ``sendAudio``,
  ``sendVoice``, ``sendMediaGroup`` items, ``copyMessage``, ``editMessageCaption``,
  ``editMessageMedia``): at most 1024 UTF-16 code units after parsing; else 400
  ``Bad Request: message caption is too long``.
* ``parse_mode`` "HTML", "MarkdownV2" or "Markdown": text that does not parse is refused with 400
  ``Bad Request: can't parse entities: ...``, the way tdlib's parsers refuse it. HTML: only
  Telegram's tags (b strong i em u ins s strike del span[class=tg-spoiler] tg-spoiler a code pre
  blockquote tg-emoji), balanced and properly nested; a bare ``<`` is refused, a bare ``&`` is
  kept (Telegram is lenient there); the entities ``&lt; &gt; &amp; &quot;`` and numeric ones are
  decoded. MarkdownV2: every reserved character (underscore, asterisk, square and round brackets,
  tilde, backtick, ``>#+-=|{}.!``) outside an entity's markup must be escaped with a backslash;
  entities must be closed; inside code and pre only the backtick and the backslash need escaping;
  inside a link's ``(...)`` only ``)`` and the backslash; ``>`` is a blockquote only at the start of
  a line. Markdown (legacy): bold, italic, code and pre entities must be closed and
  ``[text](url)`` complete. Other parse modes: 400 ``Bad Request: unsupported parse_mode``.
  Successful sends return the parsed plain text (no ``entities`` array).
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
* Flood control, per chat. Group, supergroup and channel chats (negative ids, or ``@username``):
  more than ``group_limit`` (20) messages in any rolling ``group_window`` (60 s) → 429
  ``Too Many Requests: retry after N`` with ``parameters.retry_after`` N, the whole seconds (at
  least 1) until the oldest message leaves the window. Private chats (positive ids): the real API
  does not refuse short bursts over ``private_limit`` (1) per ``private_window`` (1 s), so the fake
  only records them; ``max_in_window(chat_id, window)`` tells a test the most it saw. Only
  successful message-creating calls count (``SEND_METHODS``; a media group counts once per item);
  edits, callback answers and refused calls do not.
* Webhooks (``setWebhook``, ``deleteWebhook``, ``getWebhookInfo``), after tdlib/telegram-bot-api:
  ``getUpdates`` while a webhook is set → 409 ``Conflict: can't use getUpdates method while webhook
  is active; use deleteWebhook to delete the webhook first`` (a long poll under way when one is set
  ends with 409 ``Conflict: terminated by setWebhook request``). ``setWebhook`` with a URL: at most
  one a second per bot, else 429 ``Too Many Requests: retry after 1`` (even when nothing changes);
  the same settings again → true, "Webhook is already set"; ``secret_token`` over 256 characters →
  400 ``Bad Request: secret token is too long``, a character outside A-Z a-z 0-9 _ - → 400
  ``Bad Request: secret token contains unallowed characters``; a URL without a host → 400
  ``Bad Request: invalid webhook URL specified``. Like Telegram's cloud servers (the default) it
  wants https on port 80, 88, 443 or 8443 at a public address (400 ``Bad Request: bad webhook:
  ...``, in the server's words); ``local_mode=True`` is a self-hosted Bot API server started with
  ``--local``, which takes http, any port and local addresses: how the tests can point a webhook
  at a listener on 127.0.0.1 honestly. (Host names other than localhost are not resolved.)
  While a webhook is set, updates from ``push`` are POSTed to it in order, as Telegram sends them
  (``Content-Type: application/json``, the secret in ``X-Telegram-Bot-Api-Secret-Token``); an
  answer outside 2xx, or no connection, keeps the update pending and is tried again after
  ``webhook_retry_interval`` seconds, with ``getWebhookInfo``'s ``last_error_message`` saying why.
  ``deliveries`` records each attempt.
* Fault injection: ``inject(method, kind, times=1)``; see ``FAULTS``.

Every call is recorded in ``calls`` with its HTTP ``status`` (0 for a call never answered);
``sent()`` gives the accepted ones, ``refused()`` the others.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import html
import io
import ipaddress
import itertools
import json
import math
import re
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from PIL import Image

from tests.fake_telegram_rules import PrivateChats
from tests.fakes import serve_on_loopback

BOT_USER = {"id": 999, "is_bot": True, "first_name": "clipbot", "username": "clipbot_test_bot"}

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
# Form fields PTB sends as plain strings: never JSON-decoded (a text "123" stays a string).
_STRING_FIELDS = frozenset({"text", "caption", "parse_mode", "file_id", "callback_query_id", "inline_message_id",
                            "emoji", "question", "title", "description", "address", "query", "url",
                            "secret_token", "ip_address"})
WEBHOOK_PORTS = (80, 88, 443, 8443)  # the only ports Telegram's cloud servers deliver to
SECRET_TOKEN_LIMIT = 256
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

FAULTS = {
    "429": "HTTP 429 Too Many Requests with parameters.retry_after 1, as flood control answers",
    "500-html": "HTTP 500 with an HTML page (text/html), as a proxy in front of the API answers",
    "502-html": "HTTP 502 with an HTML page (text/html), as a proxy in front of the API answers",
    "hang": "no answer until the client gives up (or the fake stops)",
}
_HTML_PAGE = ("<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1>"
              "</center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n")


@dataclass
class Delivery:
    """One POST of an update to the webhook: the HTTP status answered (0: no connection)."""

    update_id: int
    url: str
    status: int


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    status: int = 200  # the HTTP status answered; 0 while (or because) no answer was given
    description: str = ""  # the error description of a refused call
    result: Any = None  # what a successful call returned (a sent message: for a test's reply_to_message)


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


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


# -- entity parsers (after tdlib's), each returning the plain text ------------------------------------------------

class EntityError(ValueError):
    pass


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


_HTML_TAGS = frozenset({"a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji",
                        "span", "pre", "code", "blockquote"})
_HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_HTML_ATTR = re.compile(r"""\s*([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")


def parse_html(text: str) -> str:
    """Telegram's HTML subset; raises EntityError with tdlib's wording."""
    out: list[str] = []
    open_tags: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "&":
            m = _HTML_ENTITY.match(text, i)
            if m:
                out.append(html.unescape(m.group(0)))
                i = m.end()
            else:  # an unknown entity is kept as it stands
                out.append(c)
                i += 1
            continue
        if c != "<":
            out.append(c)
            i += 1
            continue
        start = i
        i += 1
        if i < n and text[i] == "/":  # end tag
            end = text.find(">", i)
            if end < 0:
                raise EntityError(f"Unclosed end tag at byte offset {_byte_offset(text, start)}")
            name = text[i + 1:end].strip().lower()
            if not open_tags:
                raise EntityError(f'Unexpected end tag at byte offset {_byte_offset(text, start)}')
            if name != open_tags[-1]:
                raise EntityError(f'Unmatched end tag at byte offset {_byte_offset(text, start)}, expected '
                                  f'"</{open_tags[-1]}>", found "</{name}>"')
            open_tags.pop()
            i = end + 1
            continue
        m = re.match(r"[a-zA-Z0-9-]*", text[i:])
        name = m.group(0).lower() if m else ""
        if name not in _HTML_TAGS:
            raise EntityError(f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, start)}')
        i += len(name)
        end = text.find(">", i)
        if end < 0:
            raise EntityError(f"Unclosed start tag at byte offset {_byte_offset(text, start)}")
        attributes = {a.group(1).lower(): a.group(2) or a.group(3) or a.group(4) or ""
                      for a in _HTML_ATTR.finditer(text[i:end]) if a.group(1)}
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise EntityError('Tag "span" must have class "tg-spoiler" at byte offset '
                              f"{_byte_offset(text, start)}")
        if name == "tg-emoji" and not attributes.get("emoji-id"):
            raise EntityError(f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset '
                              f"{_byte_offset(text, start)}")
        open_tags.append(name)
        i = end + 1
    if open_tags:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"')
    return "".join(out)


_MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"
_MDV2_NAMES = {"*": "Bold", "_": "Italic", "__": "Underline", "~": "Strikethrough", "||": "Spoiler", "`": "Code",
               "```": "Pre", "[": "TextUrl", "![": "CustomEmoji"}


def parse_markdown_v2(text: str) -> str:
    """Telegram's MarkdownV2; raises EntityError with tdlib's wording."""
    out: list[str] = []
    stack: list[tuple[str, int]] = []  # (markup, byte offset where it began)
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            out.append(text[i + 1])
            i += 2
            at_line_start = False
            continue
        top = stack[-1][0] if stack else ""
        reserved = "`" if top in ("`", "```") else _MDV2_RESERVED
        if c not in reserved:
            out.append(c)
            at_line_start = c == "\n"
            i += 1
            continue
        # The end of the innermost entity?
        ends = {"*": c == "*", "_": c == "_" and text[i:i + 2] != "__", "__": text[i:i + 2] == "__",
                "~": c == "~", "||": text[i:i + 2] == "||", "`": c == "`", "```": text[i:i + 3] == "```",
                "[": c == "]", "![": c == "]"}
        if top and ends[top]:
            stack.pop()
            i += len(top) if top not in ("[", "![") else 1
            if top in ("[", "!["):  # the URL: ( ... ) with only ')' and '\' escaped
                if i < n and text[i] == "(":
                    j = i + 1
                    while j < n and text[j] != ")":
                        j += 2 if text[j] == "\\" else 1
                    if j >= n:
                        raise EntityError(f"Can't find end of a URL at byte offset {_byte_offset(text, i)}")
                    i = j + 1
                elif top == "![":
                    raise EntityError(f"Custom emoji entity must contain a tg://emoji URL at byte offset "
                                      f"{_byte_offset(text, i)}")
            at_line_start = False
            continue
        offset = _byte_offset(text, i)
        if text[i:i + 3] == "```":
            markup = "```"
            newline = text.find("\n", i + 3)  # an optional language on the first line
            i = i + 3 if newline < 0 or " " in text[i + 3:newline] else newline + 1
        elif text[i:i + 2] in ("__", "||", "!["):
            markup = text[i:i + 2]
            i += 2
        elif c in "*_~`[":
            markup = c
            i += 1
        elif c == ">" and at_line_start:  # a blockquote line
            i += 1
            continue
        else:
            raise EntityError(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        if any(m == markup for m, _ in stack):
            raise EntityError(f"Nested {_MDV2_NAMES[markup]} entities at byte offset {offset}")
        stack.append((markup, offset))
        at_line_start = False
    if stack:
        markup, offset = stack[-1]
        raise EntityError(f"Can't find end of {_MDV2_NAMES[markup]} entity at byte offset {offset}")
    return "".join(out)


def parse_markdown(text: str) -> str:
    """Telegram's legacy Markdown; raises EntityError with tdlib's wording."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.append(text[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            out.append(c)
            i += 1
            continue
        offset = _byte_offset(text, i)
        if text[i:i + 3] == "```":
            end = text.find("```", i + 3)
            if end < 0:
                raise EntityError(f"Can't find end of the entity starting at byte offset {offset}")
            out.append(text[i + 3:end])
            i = end + 3
        elif c == "[":
            close = text.find("]", i + 1)
            if close < 0 or text[close + 1:close + 2] != "(" or text.find(")", close) < 0:
                raise EntityError(f"Can't find end of the entity starting at byte offset {offset}")
            out.append(text[i + 1:close])
            i = text.find(")", close) + 1
        else:
            end = text.find(c, i + 1)
            if end < 0:
                raise EntityError(f"Can't find end of the entity starting at byte offset {offset}")
            out.append(text[i + 1:end])
            i = end + 1
    return "".join(out)


PARSERS = {"html": parse_html, "markdownv2": parse_markdown_v2, "markdown": parse_markdown}


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


# -- the server ---------------------------------------------------------------------------------------------------

class FakeTelegram:
    """Serves /bot<token>/<method> and /file/bot<token>/<path>; records every call it gets.

    Public API: ``calls``, ``files``, ``member_status``, ``fail_downloads``; ``add_file``, ``push``,
    ``sent``, ``refused``, ``wait_for``, ``next_message_id``, ``inject``, ``max_in_window``,
    ``send_times``; the limits as attributes (see the module docstring).
    """

    def __init__(self, token: str, *, group_limit: int = 20, group_window: float = 60.0, private_limit: int = 1,
                 private_window: float = 1.0, photo_limit: int = PHOTO_LIMIT,
                 document_limit: int = DOCUMENT_LIMIT, local_mode: bool = False,
                 webhook_retry_interval: float = 0.5) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, bytes)
        self.member_status: dict[tuple[int, int], str] = {}
        self.private = PrivateChats()  # who opened a chat with the bot; inline queries awaiting answers
        self.photo_ids: set[str] = set()  # photos the server holds: what a cached inline result may name
        self.group_limit, self.group_window = group_limit, group_window
        self.private_limit, self.private_window = private_limit, private_window
        self.photo_limit, self.document_limit = photo_limit, document_limit
        # chat_id -> monotonic times of the messages accepted for it (a media group adds one per item)
        self.send_times: dict[int | str, list[float]] = {}
        self.faults: dict[str, deque[str]] = {}  # method -> the kinds still to inject, in order
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
        self._runner, self.port = await serve_on_loopback(app)

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
        runner, self._runner = self._runner, None
        if runner:
            await runner.cleanup()

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
        self.private.saw(update)
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
        deadline = time.monotonic() + timeout
        while len(self.sent(*methods)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} call(s) of {methods}; got "
                                     f"{[(c.method, c.status) for c in self.calls]}")
            await asyncio.sleep(0.02)
        return self.sent(*methods)

    def next_message_id(self) -> int:
        return next(self._message_ids)

    def inject(self, method: str, kind: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with a fault (a kind of ``FAULTS``) instead."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULTS)}")
        self.faults.setdefault(method, deque()).extend([kind] * times)

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
            if isinstance(value, str) and key not in _STRING_FIELDS:
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(value)
        return params, files

    @staticmethod
    def _error(code: int, description: str) -> web.Response:
        return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)

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
            await self._stopping.wait()
            return web.Response(status=503)
        code, reason = (500, "Internal Server Error") if kind == "500-html" else (502, "Bad Gateway")
        call.status, call.description = code, reason
        return web.Response(status=code, text=_HTML_PAGE.format(code=code, reason=reason), content_type="text/html")

    # -- the rules --------------------------------------------------------------------------------

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

    # -- flood control ----------------------------------------------------------------------------

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

    # -- methods ----------------------------------------------------------------------------------

    async def _m_getMe(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return BOT_USER

    async def _m_getUpdates(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if self.webhook is not None:
            raise Refusal("Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
                          "delete the webhook first", 409)
        offset = int(params.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates:
            self._new_update.clear()
            # A short long-poll, so the client neither spins nor waits long.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), min(float(params.get("timeout") or 0), 0.5))
        if self.webhook is not None:  # set while this poll waited
            raise Refusal("Conflict: terminated by setWebhook request", 409)
        return [u for u in self._updates if u["update_id"] >= offset]

    # -- webhooks -------------------------------------------------------------------------------

    @staticmethod
    def _answer(result: Any, description: str) -> web.Response:
        return web.json_response({"ok": True, "result": result, "description": description})

    def _check_webhook_url(self, url: str) -> None:
        parts = urlsplit(url if "://" in url else f"https://{url}")  # tdlib defaults to https
        try:
            port = parts.port or (80 if parts.scheme == "http" else 443)
        except ValueError:
            port = 0
        if parts.scheme not in ("http", "https") or not parts.hostname or not port:
            raise Refusal("Bad Request: invalid webhook URL specified")
        if self.local_mode:
            return
        if parts.scheme != "https":
            raise Refusal("Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if port not in WEBHOOK_PORTS:
            raise Refusal("Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(host)
            if address.version == 6:
                raise Refusal("Bad Request: bad webhook: IPv6-only addresses are not allowed")
            if not address.is_global:
                raise Refusal(f"Bad Request: bad webhook: IP address {address} is reserved")

    async def _m_setWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        url = str(params.get("url") or "")
        if not url:  # an empty URL deletes the webhook
            return await self._m_deleteWebhook(params, files)
        now = time.monotonic()
        if now < self._next_set_webhook:
            raise Refusal("Too Many Requests: retry after 1", 429, {"retry_after": 1})
        self._next_set_webhook = now + 1
        drop = params.get("drop_pending_updates") in (True, "true", "True")
        hook = {"url": url, "secret_token": str(params.get("secret_token") or ""),
                "max_connections": int(params.get("max_connections") or 40),
                "allowed_updates": params.get("allowed_updates")}
        current = self.webhook
        if current is not None and not drop and all(current[k] == hook[k] for k in ("url", "secret_token",
                                                                                    "max_connections")):
            current["allowed_updates"] = hook["allowed_updates"]
            return self._answer(True, "Webhook is already set")
        self._check_webhook_url(url)
        if len(hook["secret_token"]) > SECRET_TOKEN_LIMIT:
            raise Refusal("Bad Request: secret token is too long")
        if not _BASE64URL.fullmatch(hook["secret_token"]):
            raise Refusal("Bad Request: secret token contains unallowed characters")
        if drop:
            self._updates.clear()
        self.webhook, self.last_error = hook, None
        self._new_update.set()  # a long poll under way ends (with 409)
        self._deliver_soon()
        return self._answer(True, "Webhook was set")

    async def _m_deleteWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if params.get("drop_pending_updates") in (True, "true", "True"):
            self._updates.clear()
        was_set, self.webhook, self.last_error = self.webhook is not None, None, None
        return self._answer(True, "Webhook was deleted" if was_set else "Webhook is already deleted")

    async def _m_getWebhookInfo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        info: dict[str, Any] = {"url": self.webhook["url"] if self.webhook else "", "has_custom_certificate": False,
                                "pending_update_count": len(self._updates)}
        if self.last_error is not None:
            info["last_error_date"], info["last_error_message"] = self.last_error
        if self.webhook is not None:
            info["max_connections"] = self.webhook["max_connections"]
            if self.webhook["allowed_updates"] is not None:
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    def _deliver_soon(self) -> None:
        if self.webhook is not None and self._updates and (self._delivering is None or self._delivering.done()):
            self._delivering = asyncio.get_running_loop().create_task(self._deliver())

    async def _deliver(self) -> None:
        """POST pending updates to the webhook, oldest first, one at a time, until none are left."""
        while self.webhook is not None and self._updates and self._client is not None:
            hook, update = self.webhook, self._updates[0]
            headers = {"Content-Type": "application/json"}
            if hook["secret_token"]:
                headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
            try:
                async with self._client.post(hook["url"], data=json.dumps(update), headers=headers) as response:
                    status, error = response.status, f"Wrong response from the webhook: {response.status} " \
                                                      f"{response.reason}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                status, error = 0, f"Connection failed: {exc}"
            self.deliveries.append(Delivery(update["update_id"], hook["url"], status))
            if 200 <= status <= 299:
                if self._updates and self._updates[0] is update:
                    self._updates.pop(0)
                continue
            self.last_error = (int(time.time()), error)
            await asyncio.sleep(self.webhook_retry_interval)

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
