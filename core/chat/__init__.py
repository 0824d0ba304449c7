"""Chat: the service every front end calls, the command catalogue and help styles, request and reply
types, result threads and their texts, group switches, rate limits and repost alerts, and which of
their conversation state a gallery's move to another database carries (:data:`STATE_KINDS`).

The face of the wing: front ends and ``bot/`` import from here, never from a module inside.
"""

from core.chat.catalogue import (
    CATALOGUE,
    MATCH,
    REFINE,
    ChatCommand,
    HelpStyle,
    Takes,
    command_named,
    commands_for,
    image_ref,
)
from core.chat.config import ServiceConfig
from core.chat.context import Button, Chat, CommandInput, Context, Photo, Reply, User
from core.chat.groups import FORGET_PREFIX
from core.chat.inflight import InFlight
from core.chat.ratelimit import RateLimiter, SlidingWindow
from core.chat.service import ChatService
from core.chat.state_kinds import STATE_KINDS
from core.chat.styles import CHAT_STYLE, SEARCH_SYNTAX, ChatStyle, help_text, style_of
from core.chat.threads import (
    LIKE_PREFIX,
    NEXT_PREFIX,
    NOT_PREFIX,
    TOP_PREFIX,
    ResultRef,
    ThreadConfig,
    Threads,
    result_ref,
)

__all__ = [
    "CATALOGUE",
    "CHAT_STYLE",
    "FORGET_PREFIX",
    "LIKE_PREFIX",
    "MATCH",
    "NEXT_PREFIX",
    "NOT_PREFIX",
    "REFINE",
    "SEARCH_SYNTAX",
    "STATE_KINDS",
    "TOP_PREFIX",
    "Button",
    "Chat",
    "ChatCommand",
    "ChatService",
    "ChatStyle",
    "CommandInput",
    "Context",
    "HelpStyle",
    "InFlight",
    "Photo",
    "RateLimiter",
    "Reply",
    "ResultRef",
    "ServiceConfig",
    "SlidingWindow",
    "Takes",
    "ThreadConfig",
    "Threads",
    "User",
    "command_named",
    "commands_for",
    "help_text",
    "image_ref",
    "result_ref",
    "style_of",
]
