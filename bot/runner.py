"""``clipbot run`` and ``clipbot chat``: every configured platform in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from adapters.console import ConsoleChat
from bot.composition import build_chat_engine, build_platforms, build_service, build_web
from bot.settings import Settings
from core.chat import ChatService
from core.errors import ClipbotError
from core.gallery import Engine

log = logging.getLogger(__name__)
NO_PLATFORM = ("No chat platform is configured: set TELEGRAM_BOT_TOKEN or DISCORD_BOT_TOKEN in .env "
               "(see .env.example).")


class SecretFilter(logging.Filter):
    """Blanks secrets (the bot tokens) out of every log line, tracebacks included."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for secret in self.secrets:
            message = message.replace(secret, "<token>")
            if record.exc_text:
                record.exc_text = record.exc_text.replace(secret, "<token>")
        record.msg, record.args = message, None
        return True


def protect_logs(settings: Settings) -> None:
    # httpx logs each request URL at INFO, and Telegram's URLs contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    webhook_secret = settings.telegram_webhook_secret.get_secret_value() if settings.telegram_webhook_secret else ""
    database = settings.database_url.get_secret_value() if settings.database_url else ""
    secret_filter = SecretFilter([settings.telegram_token or "", settings.discord_token or "", webhook_secret,
                                  password_of(database)])
    for handler in logging.getLogger().handlers:
        handler.addFilter(secret_filter)


def password_of(url: str) -> str:
    """The password in a database URL, to keep out of logs (a URL may be logged by a driver)."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


async def run_bot(settings: Settings, *, engine: Engine | None = None) -> int:
    """Start every platform with a token; with none, the console chat. Stops on SIGINT/SIGTERM.

    ``engine`` defaults to the one the settings describe (tests pass one with a slowed model).
    """
    protect_logs(settings)
    web = settings.web_port is not None  # CLIPBOT_WEB_PORT set: the web chat too (or alone)
    if not (settings.telegram_token or settings.discord_token or web) and not interactive():
        # Under systemd, docker or nohup nobody can type into a console: waiting on one would
        # look like a bot that runs but never answers.
        print(NO_PLATFORM + "\nNo terminal is attached for the console chat either, so there is nothing to run.",
              file=sys.stderr)
        return 2
    engine = engine or build_chat_engine(settings, serving=True)
    async with engine:
        await engine.check_model()
        await engine.warm()
        service = build_service(settings, engine)
        platforms = build_platforms(settings, service)
        if web:
            platforms.append(build_web(settings, service))
        if not platforms:
            print(NO_PLATFORM + "\nStarting the console chat instead.", file=sys.stderr)
            await console_chat(settings, service).run()
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        started = []
        sweeping = asyncio.create_task(sweep_every(engine, settings.sweep_interval_minutes * 60), name="sweep")
        try:
            for platform in platforms:
                await platform.start()
                started.append(platform)
            print(f"Running on {', '.join(p.name for p in started)}; Ctrl+C stops.", file=sys.stderr)
            await stop.wait()
            print("Stopping: finishing the replies under way...", file=sys.stderr)
        finally:
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
            # Each platform stops taking requests and lets those under way reply before the
            # engine (and with it the database) closes.
            for platform in reversed(started):
                await platform.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        print("Stopped.", file=sys.stderr)
        return 0


async def sweep_every(engine: Engine, seconds: float) -> None:
    """Sweep the media folder now (leftovers of a killed run), then every ``seconds`` (0: only now),
    until cancelled. In the background: walking a large media folder must not delay the start."""
    while True:
        try:
            await engine.sweep()
        except ClipbotError as exc:  # a sweep that fails now may work next time
            log.warning("sweep failed: %s", exc)
        if seconds <= 0:
            return
        await asyncio.sleep(seconds)


async def run_console(settings: Settings) -> int:
    """``clipbot chat``: the console adapter alone."""
    engine = build_chat_engine(settings)
    async with engine:
        await engine.check_model()
        await console_chat(settings, build_service(settings, engine)).run()
    return 0


def interactive() -> bool:
    """Whether someone can type into the console chat."""
    return sys.stdin is not None and sys.stdin.isatty()


def console_chat(settings: Settings, service: ChatService) -> ConsoleChat:
    return ConsoleChat(service, history_file=settings.history_file)
