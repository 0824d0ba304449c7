"""Telegram's per-chat sending limits, kept exactly: replies wait for room instead of being refused."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import NetworkError
from telegram.ext import AIORateLimiter

from adapters.telegram.messages import refused_file
from core.chat import SlidingWindow

# Telegram counts a group's messages on arrival; a little slack keeps our window from racing it.
GROUP_PERIOD_S = 61.0
PRIVATE_PER_SECOND = 1
_SENDING = ("send", "copy", "forward")
SERVER_ERROR_RETRIES = 2
SERVER_ERROR_PAUSE_S = 1.0
log = logging.getLogger(__name__)


class ChatSendLimiter(AIORateLimiter):
    """PTB's AIORateLimiter (30 messages a second overall, retries on RetryAfter), with the per-chat
    limits held by sliding windows instead of its leaky bucket, and two more tries after a server
    error (a 5xx page), so a passing outage does not lose a reply.

    The bucket lets 20 messages into a group at once and then one every 3 s, so a busy minute
    reaches 26 to 28 messages, over Telegram's 20: the windows allow at most ``group_per_minute``
    messages to a group in any rolling minute, and one a second to a private chat.
    """

    def __init__(self, *, group_per_minute: int = 20, group_period: float = GROUP_PERIOD_S,
                 max_retries: int = 3) -> None:
        super().__init__(group_max_rate=0, max_retries=max_retries)  # the windows below replace it
        self.group_per_minute = group_per_minute
        self.group_period = group_period
        self._windows: dict[int | str, SlidingWindow] = {}

    def window_for(self, chat_id: int | str) -> SlidingWindow:
        if len(self._windows) > 1024:  # forget chats that have been quiet for a whole window
            for key in [k for k, w in self._windows.items() if k != chat_id and w.idle()]:
                del self._windows[key]
        window = self._windows.get(chat_id)
        if window is None:
            group = isinstance(chat_id, str) or chat_id < 0  # string ids are channels and supergroups
            window = self._windows[chat_id] = (SlidingWindow(self.group_per_minute, self.group_period) if group
                                               else SlidingWindow(PRIVATE_PER_SECOND, 1.0))
        return window

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        chat_id = data.get("chat_id")
        if chat_id is not None and endpoint.startswith(_SENDING):
            with contextlib.suppress(ValueError, TypeError):
                chat_id = int(chat_id)
            await self.window_for(chat_id).acquire()
        for attempt in range(SERVER_ERROR_RETRIES + 1):
            try:
                return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
            except NetworkError as exc:
                # Exactly NetworkError: a 5xx page from Telegram or a proxy, or a dropped connection.
                # Its subclasses (a refusal, a time-out that may have been delivered) are final, and
                # so is a 413 for a file too large: the caller falls back instead.
                if type(exc) is not NetworkError or refused_file(exc) or attempt == SERVER_ERROR_RETRIES:
                    raise
                log.warning("Telegram %s failed (%s); trying again in %.0f s", endpoint, exc, SERVER_ERROR_PAUSE_S)
                await asyncio.sleep(SERVER_ERROR_PAUSE_S)
        raise AssertionError("unreachable")
