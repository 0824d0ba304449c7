"""A fake of the Telegram Bot API over real HTTP, for the real python-telegram-bot client.

As strict as the real server about what it accepts, so that a test passing against it proves
something. Its modules:

* ``server``: ``FakeTelegram``, the HTTP server, what it records (``Call``) and fault injection.
* ``rules``: what a call may send (text, captions, keyboards, photos, files, media groups) and
  flood control; ``Refusal``, the Bot API's error answer.
* ``entities``: the HTML, MarkdownV2 and Markdown parsers, after tdlib's.
* ``private_chats``: private chats the bot may not open, and inline query answers.
* ``webhooks``: ``getUpdates`` long polling and webhook delivery.
* ``methods``: what the other methods answer: the bot (``BOT_USER``), files, members, messages.
"""

from tests.fakes.telegram.entities import EntityError, parse_html, parse_markdown, parse_markdown_v2, utf16_len
from tests.fakes.telegram.methods import BOT_USER
from tests.fakes.telegram.private_chats import PrivateChats
from tests.fakes.telegram.rules import Refusal, plain_text
from tests.fakes.telegram.server import FAULTS, Call, FakeTelegram
from tests.fakes.telegram.webhooks import Delivery

__all__ = [
    "BOT_USER",
    "FAULTS",
    "Call",
    "Delivery",
    "EntityError",
    "FakeTelegram",
    "PrivateChats",
    "Refusal",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "plain_text",
    "utf16_len",
]
