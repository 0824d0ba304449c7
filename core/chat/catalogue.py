"""The chat command catalogue: each command once, with its help line and what it takes.

Telegram's command menu and handlers, the Discord slash commands, the console and ``/help`` are
all built from :data:`CATALOGUE`. Adding a command means one entry here and its method on
:class:`core.chat.service.ChatService` (``command_<name>``), which runs it. This module is the
bottom of the chat wing: it imports nothing of it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

FRONT_ENDS = frozenset({"telegram", "discord", "console", "web"})
GROUP_FRONT_ENDS = frozenset({"telegram", "discord"})  # the chats with several people and an admin
DELETE_USAGE = "Usage: /delete <id>, with the # number shown under a result."


class HelpStyle(Protocol):
    """How one front end writes commands in its help and hints: ``/find <words>``, ``/match image``, ..."""

    front_end: str

    def usage(self, command: ChatCommand) -> str: ...

    def notes(self, *, private: bool) -> list[str]: ...

    def send_photo(self) -> str:
        """How a user hands this front end a photo, lower case: "send me a photo"."""
        ...

    def how_to_add(self) -> str:
        """One sentence telling how to add an image to the chat's gallery."""
        ...

    def watch_note(self) -> str:
        """What repost alerts need on this front end to see every image ("" when nothing)."""
        ...

    def refine_usage(self) -> str:
        """How to refine a result with words here, with examples (said when the words are missing)."""
        ...

    def not_a_result(self) -> str:
        """What to say when refining or /similar has no result of the bot's to work on."""
        ...


class Takes(enum.Enum):
    """What a command needs besides the chat it is sent in."""

    NOTHING = "nothing"
    WORDS = "words"
    PHOTO = "photo"
    LABELLED_PHOTO = "labelled photo"
    IMAGE_ID = "image id"
    RESULT = "result"  # one of the bot's results: the one replied to, or the last one shown
    RESULT_WORDS = "result and words"

    @property
    def photo(self) -> bool:
        return self in (Takes.PHOTO, Takes.LABELLED_PHOTO)

    @property
    def result(self) -> bool:
        return self in (Takes.RESULT, Takes.RESULT_WORDS)


def image_ref(text: str) -> int | None:
    """The image number in ``#12`` or ``12``; None for anything else."""
    number = text.strip().removeprefix("#")
    return int(number) if number.isdigit() and len(number) <= 18 else None




@dataclass(frozen=True)
class ChatCommand:
    """One chat command: its names, its one-line help and what it takes (ChatService.command_<name> runs it)."""

    name: str
    summary: str
    takes: Takes
    usage: str = ""  # how its arguments are written in a text chat, e.g. "<words>"
    aliases: tuple[str, ...] = ()
    front_ends: frozenset[str] = FRONT_ENDS
    # The answer concerns the asker alone: where a front end can show a reply to one person only
    # (Discord's ephemeral messages), it does.
    asker_only: bool = False
    # A photo command that also takes a gallery image's number instead of a photo: /match #12.
    by_id: bool = False
    # Where a front end offers commands on a message (Discord's Apps menu), the entry's name.
    menu: str = ""
    # Its words may name a user: sent as a reply to someone's message (or on their name), it names them.
    names_user: bool = False
    # Its answer is a search result (core.chat.results): a chat with private results sends it to the asker.
    gives_results: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def title(self) -> str:
        """The summary as a sentence start, for menus (Telegram's command list, Discord's descriptions)."""
        return self.summary[:1].upper() + self.summary[1:]


# What a photo sent without a command asks for, on every front end.
MATCH = ChatCommand("match", "the closest image to a photo (or to gallery image #12), with its score", Takes.PHOTO,
                    by_id=True, gives_results=True)
SIMILAR = ChatCommand("similar", "images like one of my results", Takes.RESULT, menu="Similar images",
                      gives_results=True)
REFINE = ChatCommand("refine", "search again for a result with your words: at night, but red, -people",
                     Takes.RESULT_WORDS, usage="<words>", menu="Refine with words", gives_results=True)
CATALOGUE: tuple[ChatCommand, ...] = (
    ChatCommand("find", "find images by label, description, the text in them or meaning", Takes.WORDS,
                usage="<words>",
                gives_results=True),
    MATCH,
    SIMILAR,
    REFINE,
    ChatCommand("add", "add a photo to this chat's gallery", Takes.LABELLED_PHOTO, usage="label | description"),
    ChatCommand("describe", "describe a photo in words", Takes.PHOTO),
    ChatCommand("colors", "a photo's dominant colours", Takes.PHOTO, aliases=("colours",)),
    ChatCommand("read", "the text in a photo", Takes.PHOTO),
    ChatCommand("scores", "score a photo against every image, as a chart", Takes.PHOTO),
    ChatCommand("delete", "delete an image you added", Takes.IMAGE_ID, usage="<id>"),
    ChatCommand("list", "this chat's images, newest first", Takes.NOTHING),
    ChatCommand("stats", "gallery sizes", Takes.NOTHING),
    ChatCommand("watch", "repost alerts in this chat: on, off (admins), or whether they are on", Takes.WORDS,
                usage="on|off", front_ends=GROUP_FRONT_ENDS),
    ChatCommand("inline", "this chat's images in its members' inline searches: on, off (admins)", Takes.WORDS,
                usage="on|off", front_ends=frozenset({"telegram"})),
    ChatCommand("results", "where results go: here, or privately to whoever asked (admins)", Takes.WORDS,
                usage="here|private", front_ends=GROUP_FRONT_ENDS),
    ChatCommand("forget", "remove everything you added or posted in this chat (asks first)", Takes.WORDS,
                asker_only=True, names_user=True, front_ends=frozenset({"telegram", "discord", "web"})),
    ChatCommand("help", "what I can do", Takes.NOTHING, aliases=("start",), asker_only=True),
)
_BY_NAME = {name: command for command in CATALOGUE for name in command.names}


def command_named(name: str) -> ChatCommand | None:
    """The command a name or alias stands for (case-insensitive), or ``None``."""
    return _BY_NAME.get(name.lower())


def commands_for(front_end: str) -> tuple[ChatCommand, ...]:
    """The catalogue entries a front end offers."""
    return tuple(c for c in CATALOGUE if front_end in c.front_ends)
