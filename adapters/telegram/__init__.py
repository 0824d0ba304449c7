"""Telegram, through python-telegram-bot's Application lifecycle (no run_polling)."""

from adapters.telegram.platform import TelegramPlatform

__all__ = ["TelegramPlatform"]
