"""Telegram, through python-telegram-bot's Application lifecycle (no run_polling)."""

import os

# PTB 22's documented opt-in to its next major's durations: RetryAfter.retry_after (and the other
# time attributes) are datetime.timedelta now, instead of ints with a deprecation warning on every
# read. Read at each access, so setting it before any update is handled is enough; an operator's
# own PTB_TIMEDELTA wins (the code below handles both forms).
os.environ.setdefault("PTB_TIMEDELTA", "true")

from adapters.telegram.platform import TelegramPlatform

__all__ = ["TelegramPlatform"]
