"""Runs the Telegram bot inside a shared event loop: initialize, start, poll or serve a webhook; stop in reverse."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from telegram import BotCommand, Update
from telegram.error import InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    InlineQueryHandler,
    MessageHandler,
    filters,
)

from adapters.telegram.handlers import BUTTON_PATTERN, TelegramHandlers
from adapters.telegram.inline import InlineSearch
from adapters.telegram.limits import GROUP_PERIOD_S, ChatSendLimiter
from adapters.telegram.messages import PLATFORM
from adapters.telegram.webhook import WebhookConfig
from core.chat import ChatService, commands_for
from core.errors import ConfigError

log = logging.getLogger(__name__)
# The bot, context and data types vary with the builder's options (a rate limiter changes the bot's).
TelegramApp = Application[Any, Any, Any, Any, Any, Any]

# The menu Telegram shows when a user types "/": every catalogue command under its main name.
COMMANDS = [BotCommand(c.name, c.title) for c in commands_for(PLATFORM)]
# setWebhook is limited to one call a second per bot: workers starting together wait their turn.
SET_WEBHOOK_TRIES = 5


class TelegramPlatform:
    """One Telegram bot; ``start()`` returns once polling (or the webhook listener) runs, ``stop()``
    shuts it down cleanly. With ``webhook`` Telegram POSTs updates to it instead of being polled."""

    name = "telegram"

    def __init__(self, service: ChatService, *, token: str, base_url: str | None = None,
                 base_file_url: str | None = None, max_file_bytes: int = 20 * 1024 * 1024,
                 poll_timeout: float = 10, rate_limit: bool = True, group_messages_per_minute: int = 20,
                 group_period: float = GROUP_PERIOD_S, stop_timeout: float = 30,
                 webhook: WebhookConfig | None = None) -> None:
        self.service = service
        self.handlers = TelegramHandlers(service, max_file_bytes=max_file_bytes)
        self.inline = InlineSearch(service)
        self._token = token
        self._base_url = base_url
        self._base_file_url = base_file_url
        self._poll_timeout = poll_timeout
        self._rate_limit = rate_limit
        self._group_messages_per_minute = group_messages_per_minute
        self._group_period = group_period
        self._stop_timeout = stop_timeout
        self.webhook = webhook
        self.application: TelegramApp | None = None

    def build(self) -> TelegramApp:
        builder = Application.builder().token(self._token).concurrent_updates(True)
        if self._base_url:
            builder = builder.base_url(self._base_url)
        if self._base_file_url:
            builder = builder.base_file_url(self._base_file_url)
        # The rate limiter keeps every chat within Telegram's flood limits and honours RetryAfter.
        limiter = ChatSendLimiter(group_per_minute=self._group_messages_per_minute, group_period=self._group_period,
                                  max_retries=3)
        app: TelegramApp = builder.rate_limiter(limiter).build() if self._rate_limit else builder.build()
        h = self.handlers
        for command in commands_for(PLATFORM):
            app.add_handler(CommandHandler(command.names, h.command(command)))
        app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, h.migration))
        media = (filters.PHOTO | filters.Document.ALL | filters.ANIMATION | filters.VIDEO | filters.VIDEO_NOTE
                 | filters.Sticker.ALL)
        app.add_handler(MessageHandler(media, h.attachment))
        app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, h.text))
        app.add_handler(MessageHandler(filters.COMMAND & filters.ChatType.PRIVATE, h.unknown))
        app.add_handler(CallbackQueryHandler(h.result_button, pattern=BUTTON_PATTERN))
        app.add_handler(InlineQueryHandler(self.inline.inline_query))
        app.add_error_handler(h.error)
        return app

    async def start(self) -> None:
        """Initialize, register the command menu and start polling; idempotent.

        A start that fails part-way shuts down whatever it had started before the error propagates.
        """
        if self.application is not None:
            return
        self.application = self.build()
        try:
            await self._start(self.application)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, app: TelegramApp) -> None:
        try:
            await app.initialize()  # getMe: proves the token and the server
        except InvalidToken:
            raise ConfigError("Telegram refused TELEGRAM_BOT_TOKEN; copy the token @BotFather gave you.") from None
        except NetworkError as exc:
            where = self._base_url or "api.telegram.org"
            raise ConfigError(f"Cannot reach the Telegram Bot API at {where} ({exc}); check TELEGRAM_BASE_URL "
                              "and the network.") from None
        try:
            await app.bot.set_my_commands(COMMANDS)
        except TelegramError:
            log.warning("could not register the command list with Telegram", exc_info=True)
        await app.start()
        if self.webhook is not None:
            await self._start_webhook(app, self.webhook)
            log.warning("Telegram bot @%s is running: webhook %s, listening on %s:%d", app.bot.username,
                        self.webhook.url, self.webhook.listen, self.webhook.port)
            return
        assert app.updater is not None
        # Polling first deletes any webhook (python-telegram-bot's bootstrap): Telegram refuses
        # getUpdates while one is set.
        await app.updater.start_polling(timeout=timedelta(seconds=self._poll_timeout), allowed_updates=Update.ALL_TYPES)
        log.warning("Telegram bot @%s is running", app.bot.username)

    @staticmethod
    async def _start_webhook(app: TelegramApp, webhook: WebhookConfig) -> None:
        """Set the webhook (every worker sets the same one; Telegram answers "already set") and
        listen. Pending updates are kept: another worker may be about to take them."""
        assert app.updater is not None
        for attempt in range(SET_WEBHOOK_TRIES):
            try:
                await app.updater.start_webhook(
                    listen=webhook.listen, port=webhook.port, url_path=webhook.path, webhook_url=webhook.url,
                    secret_token=webhook.secret, allowed_updates=Update.ALL_TYPES,
                )
                return
            except RetryAfter as exc:  # only without the rate limiter, which waits these out itself
                if attempt == SET_WEBHOOK_TRIES - 1:
                    raise
                await asyncio.sleep(_retry_seconds(exc))
            except TelegramError as exc:
                raise ConfigError(f"Telegram refused TELEGRAM_WEBHOOK_URL {webhook.url}: {exc.message}") from None
            except OSError as exc:
                raise ConfigError(f"Cannot listen on {webhook.listen}:{webhook.port} for Telegram's webhook "
                                  f"({exc.strerror}); check TELEGRAM_WEBHOOK_LISTEN and TELEGRAM_WEBHOOK_PORT.") \
                    from None

    async def stop(self) -> None:
        """Stop taking updates, let the ones being handled send their replies (for up to
        ``stop_timeout`` seconds), then shut down; safe to call twice, or after a failed start.

        A webhook stays set: other workers behind the same URL go on serving it, and Telegram keeps
        updates that find nobody for a day. (Updater.stop closes the listener without deleteWebhook.)
        """
        app, self.application = self.application, None
        if app is None:
            return
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            try:
                # Application.stop waits for every update being handled, replies included.
                await asyncio.wait_for(asyncio.shield(app.stop()), self._stop_timeout)
            except asyncio.TimeoutError:
                log.warning("Telegram: requests still running after %.0f s were cut off", self._stop_timeout)
        await app.shutdown()


def _retry_seconds(exc: RetryAfter) -> float:
    """The wait Telegram asked for: a timedelta (PTB_TIMEDELTA, see adapters.telegram), or seconds
    where an operator switched that off."""
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
