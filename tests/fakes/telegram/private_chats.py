"""The fake Bot API's rules for inline queries and for private chats the bot may not open.

``FakeTelegram`` (tests/fakes/telegram/server.py) notes every update it is given here, and its
rules (tests/fakes/telegram/rules.py) ask these:

* ``answerInlineQuery``: the query id must be one Telegram sent (an ``inline_query`` update)
  and not answered yet, within 10 s of it, else 400 ``Bad Request: query is too old and response
  timeout expired or query ID is invalid``; at most 50 results, else 400 ``Bad Request:
  RESULTS_TOO_MUCH``; each result's ``id`` 1..64 bytes and unique (400 ``Bad Request:
  RESULT_ID_INVALID`` / ``RESULT_ID_DUPLICATE``); a ``photo`` result needs ``photo_file_id`` of a
  photo the server holds (400 ``Bad Request: wrong file identifier/HTTP URL specified``) or a
  ``photo_url`` with a ``thumbnail_url``; captions at most 1024 UTF-16 code units (400 ``Bad
  Request: message caption is too long``); ``cache_time`` a non-negative integer.
* A message to a private chat (positive chat id) whose user never wrote to the bot (no message,
  callback or ``/start`` from them in a private chat) is refused with 403 ``Forbidden: bot can't
  initiate conversation with a user``, as Telegram does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.telegram.entities import utf16_len

INLINE_TIMEOUT_S = 10.0
INLINE_RESULTS_LIMIT = 50
CANT_INITIATE = "Forbidden: bot can't initiate conversation with a user"
_INLINE_TYPES = frozenset({"article", "photo", "gif", "mpeg4_gif", "video", "audio", "voice", "document", "location",
                           "venue", "contact", "game", "sticker"})


@dataclass
class PrivateChats:
    """Who has opened a private chat with the bot, and the inline queries waiting for answers."""

    started: set[int] = field(default_factory=set)
    inline_queries: dict[str, float] = field(default_factory=dict)  # id -> monotonic time it arrived

    def saw(self, update: dict[str, Any]) -> None:
        """Note what an update tells: a user who wrote in private, an inline query asked."""
        message = update.get("message") or (update.get("callback_query") or {}).get("message")
        sender = (update.get("message") or update.get("callback_query") or {}).get("from") or {}
        if message and (message.get("chat") or {}).get("type") == "private" and sender.get("id"):
            self.started.add(int(sender["id"]))
        query = update.get("inline_query")
        if query:
            self.inline_queries[str(query["id"])] = time.monotonic()

    def send_problem(self, chat_id: Any) -> str | None:
        try:
            chat = int(chat_id)
        except (TypeError, ValueError):
            return None
        return CANT_INITIATE if chat > 0 and chat not in self.started else None

    def answer_problem(self, params: dict[str, Any], photo_ids: set[str]) -> str | None:
        """Why Telegram would refuse this ``answerInlineQuery`` (None: it accepts it)."""
        asked = self.inline_queries.pop(str(params.get("inline_query_id")), None)
        if asked is None or time.monotonic() - asked > INLINE_TIMEOUT_S:
            return "Bad Request: query is too old and response timeout expired or query ID is invalid"
        results = params.get("results")
        if not isinstance(results, list):
            return "Bad Request: can't parse inline query results JSON object"
        if len(results) > INLINE_RESULTS_LIMIT:
            return "Bad Request: RESULTS_TOO_MUCH"
        cache_time = params.get("cache_time", 300)
        if not isinstance(cache_time, int) or cache_time < 0:
            return "Bad Request: cache_time must be a non-negative integer"
        ids: set[str] = set()
        for result in results:
            problem = _result_problem(result, photo_ids)
            if problem:
                return problem
            if result["id"] in ids:
                return "Bad Request: RESULT_ID_DUPLICATE"
            ids.add(result["id"])
        return None


def _result_problem(result: Any, photo_ids: set[str]) -> str | None:
    if not isinstance(result, dict) or result.get("type") not in _INLINE_TYPES:
        return "Bad Request: RESULT_TYPE_INVALID"
    rid = result.get("id")
    if not isinstance(rid, str) or not 1 <= len(rid.encode()) <= 64:
        return "Bad Request: RESULT_ID_INVALID"
    if utf16_len(str(result.get("caption") or "")) > 1024:
        return "Bad Request: message caption is too long"
    if result["type"] == "photo":
        file_id = result.get("photo_file_id")
        if file_id is not None and file_id not in photo_ids:
            return "Bad Request: wrong file identifier/HTTP URL specified"
        if file_id is None and not (result.get("photo_url") and result.get("thumbnail_url")):
            return "Bad Request: PHOTO_URL_INVALID"
    return None
