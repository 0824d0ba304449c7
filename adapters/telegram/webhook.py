"""Webhook mode's settings, checked before anything starts.

Polling allows one consumer per bot token; with a webhook Telegram POSTs each update to one URL,
and a load balancer there can spread them over several clipbot processes.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.errors import ConfigError

# Telegram's rule for secret_token (its server checks base64url characters and at most 256).
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")


@dataclass(frozen=True)
class WebhookConfig:
    """Where Telegram sends updates (``url``) and where this process takes them (``listen``:``port``).

    The listener serves the URL's path, so a proxy that forwards paths unchanged needs no rewriting.
    """

    url: str
    secret: str | None
    listen: str = "127.0.0.1"
    port: int = 8443

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"TELEGRAM_WEBHOOK_URL must be a full https:// URL, not {self.url!r}.")
        if not self.secret:
            # Without it anyone who finds the URL can post forged updates as any user.
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_WEBHOOK_URL: 1-256 characters of "
                              "A-Z a-z 0-9 _ -.")
        if not SECRET_PATTERN.fullmatch(self.secret):
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z a-z 0-9 _ - (Telegram's rule).")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"TELEGRAM_WEBHOOK_PORT must be a port number (1-65535), not {self.port}.")
        if importlib.util.find_spec("tornado") is None:
            # python-telegram-bot serves webhooks with tornado, which only its "webhooks" extra installs.
            raise ConfigError("TELEGRAM_WEBHOOK_URL needs python-telegram-bot's webhook server: "
                              "pip install 'python-telegram-bot[webhooks]'.")

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"WebhookConfig(url={self.url!r}, listen={self.listen!r}, port={self.port})"
