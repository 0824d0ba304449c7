"""The chat command catalogue: each command once, with its help line, its input and its service call.

Telegram's command menu and handlers, the Discord slash commands, the console and ``/help`` are
all built from :data:`CATALOGUE`. Adding a command means one entry here and its service method.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.conversation import Context, HelpStyle, Photo, Reply
from core.query import REFINE_USAGE
from core.threads import ResultRef

if TYPE_CHECKING:
    from core.service import ChatService

FRONT_ENDS = frozenset({"telegram", "discord", "console", "web"})
GROUP_FRONT_ENDS = frozenset({"telegram", "discord"})  # the chats with several people and an admin
DELETE_USAGE = "Usage: /delete <id>, with the # number shown under a result."


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


@dataclass(frozen=True)
class CommandInput:
    """A command's arguments, as the front end that received it parsed them."""

    words: str = ""
    photo: Photo | None = None
    label: str = ""
    description: str = ""
    image_id: int | None = None
    result: ResultRef | None = None  # the result a Takes.RESULT command was given

    @classmethod
    def from_text(cls, takes: Takes, text: str, photo: Photo | None = None) -> CommandInput:
        """Arguments written after a command in a text chat: ``red car``, ``label | description``, ``#12``."""
        text = text.strip()
        if takes is Takes.LABELLED_PHOTO:
            label, _, description = text.partition("|")
            return cls(photo=photo, label=label.strip(), description=description.strip())
        if takes is Takes.IMAGE_ID or (takes is Takes.PHOTO and photo is None and image_ref(text) is not None):
            return cls(image_id=image_ref(text))
        return cls(words=text if takes in (Takes.WORDS, Takes.RESULT_WORDS) else "", photo=photo)

    def require_photo(self) -> Photo:
        if self.photo is None:  # front ends ask for the photo before calling the service
            raise ValueError("a photo command was run without a photo")
        return self.photo


def image_ref(text: str) -> int | None:
    """The image number in ``#12`` or ``12``; None for anything else."""
    number = text.strip().removeprefix("#")
    return int(number) if number.isdigit() and len(number) <= 18 else None


Run = Callable[["ChatService", Context, CommandInput], Awaitable["Reply | None"]]


@dataclass(frozen=True)
class ChatCommand:
    """One chat command: its names, its one-line help, what it takes and the service call it makes."""

    name: str
    summary: str
    takes: Takes
    run: Run
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
    # Its answer is a search result (core.dialogue): a chat with private results sends it to the asker.
    gives_results: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def title(self) -> str:
        """The summary as a sentence start, for menus (Telegram's command list, Discord's descriptions)."""
        return self.summary[:1].upper() + self.summary[1:]


async def _match(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    if a.image_id is not None:
        return await s.similar(ctx, a.image_id)
    return await s.match(ctx, a.require_photo())


async def _find(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return await s.find(ctx, a.words)


async def _similar(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    if a.image_id is not None:
        return await s.similar(ctx, a.image_id)
    return await s.similar_to_result(ctx, a.result)


async def _refine(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return await s.refine(ctx, a.result, a.words)


async def _add(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return await s.add(ctx, a.require_photo(), a.label, a.description)


async def _describe(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return await s.describe(ctx, a.require_photo())


async def _colors(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return await s.colors(ctx, a.require_photo())


async def _scores(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return await s.scores(ctx, a.require_photo())


async def _delete(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    if a.image_id is None:
        return Reply(DELETE_USAGE, kind="error")
    return await s.delete(ctx, a.image_id)


async def _list(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return await s.list(ctx)


async def _stats(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return await s.stats(ctx)


async def _watch(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return await s.watch(ctx, a.words)


async def _inline(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return await s.inline(ctx, a.words)


async def _results(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return await s.results(ctx, a.words)


async def _forget(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return await s.forget(ctx, a.words)


async def _help(s: ChatService, ctx: Context, a: CommandInput) -> Reply | None:
    return s.help(ctx)


# What a photo sent without a command asks for, on every front end.
MATCH = ChatCommand("match", "the closest image to a photo (or to gallery image #12), with its score", Takes.PHOTO,
                    _match, by_id=True, gives_results=True)
SIMILAR = ChatCommand("similar", "images like one of my results", Takes.RESULT, _similar, menu="Similar images",
                      gives_results=True)
REFINE = ChatCommand("refine", "search again for a result with your words: at night, but red, -people",
                     Takes.RESULT_WORDS, _refine, usage="<words>", menu="Refine with words", gives_results=True)
CATALOGUE: tuple[ChatCommand, ...] = (
    ChatCommand("find", "find images by label, description or meaning", Takes.WORDS, _find, usage="<words>",
                gives_results=True),
    MATCH,
    SIMILAR,
    REFINE,
    ChatCommand("add", "add a photo to this chat's gallery", Takes.LABELLED_PHOTO, _add,
                usage="label | description"),
    ChatCommand("describe", "describe a photo in words", Takes.PHOTO, _describe),
    ChatCommand("colors", "a photo's dominant colours", Takes.PHOTO, _colors, aliases=("colours",)),
    ChatCommand("scores", "score a photo against every image, as a chart", Takes.PHOTO, _scores),
    ChatCommand("delete", "delete an image you added", Takes.IMAGE_ID, _delete, usage="<id>"),
    ChatCommand("list", "this chat's images, newest first", Takes.NOTHING, _list),
    ChatCommand("stats", "gallery sizes", Takes.NOTHING, _stats),
    ChatCommand("watch", "repost alerts in this chat: on, off (admins), or whether they are on", Takes.WORDS,
                _watch, usage="on|off", front_ends=GROUP_FRONT_ENDS),
    ChatCommand("inline", "this chat's images in its members' inline searches: on, off (admins)", Takes.WORDS,
                _inline, usage="on|off", front_ends=frozenset({"telegram"})),
    ChatCommand("results", "where results go: here, or privately to whoever asked (admins)", Takes.WORDS,
                _results, usage="here|private", front_ends=GROUP_FRONT_ENDS),
    ChatCommand("forget", "remove everything you added or posted in this chat (asks first)", Takes.WORDS, _forget,
                asker_only=True, names_user=True, front_ends=frozenset({"telegram", "discord", "web"})),
    ChatCommand("help", "what I can do", Takes.NOTHING, _help, aliases=("start",), asker_only=True),
)
_BY_NAME = {name: command for command in CATALOGUE for name in command.names}


def command_named(name: str) -> ChatCommand | None:
    """The command a name or alias stands for (case-insensitive), or ``None``."""
    return _BY_NAME.get(name.lower())


def commands_for(front_end: str) -> tuple[ChatCommand, ...]:
    """The catalogue entries a front end offers."""
    return tuple(c for c in CATALOGUE if front_end in c.front_ends)


SEARCH_SYNTAX = (
    "Searching: cat + beach (both), cat -dog (cats, no dogs), \"red hat\" (those words in a label or "
    "description), #12 + night (image 12, at night), car color:red (red among its colours).",
    "Under a result, More like this and Not this search again with your taste.",
)


class ChatStyle:
    """How a text chat (Telegram) writes commands: ``/find <words>``, photo commands on a photo."""

    front_end = "telegram"

    def usage(self, command: ChatCommand) -> str:
        text = f"/{command.name} {command.usage}".rstrip()
        if command.takes.result:
            return f"{text} (as a reply to a result)"
        if command.by_id:
            return f"{text} (on a photo), or /{command.name} #12"
        return f"{text} (on a photo)" if command.takes.photo else text

    def notes(self, *, private: bool) -> list[str]:
        notes = ["\u201cOn a photo\u201d: as the photo's caption, or as a reply to it.",
                 "Reply words to a result (\u201cat night\u201d, \u201cbut red\u201d, \u201c-people\u201d) "
                 "to refine it."]
        if not private:
            notes.append("In groups, mention me in a photo's caption, reply /match to a photo, or use /find.")
        return notes

    def send_photo(self) -> str:
        return "send me a photo"

    def how_to_add(self) -> str:
        return ("To add an image, send a photo with the caption /add label | description "
                "(or reply /add label | description to a photo).")

    def watch_note(self) -> str:
        return ("In a Telegram group I see every photo only with privacy mode off (@BotFather, Bot Settings, "
                "Group Privacy) or as an admin; otherwise only those that mention me or reply to me.")

    def refine_usage(self) -> str:
        return REFINE_USAGE

    def not_a_result(self) -> str:
        return ("That message isn't one of my results. Reply to a result (a picture with a score under it) "
                "to refine it, or send a new search.")


CHAT_STYLE = ChatStyle()


def style_of(ctx: Context) -> HelpStyle:
    """How the front end a request came from writes commands (a text chat's way when it did not say)."""
    return ctx.help_style or CHAT_STYLE


def help_text(style: HelpStyle, *, private: bool) -> str:
    """Every command of the catalogue, one line each, written the way ``style`` writes them."""
    give = style.send_photo()
    lines = [
        f"{give[:1].upper()}{give[1:]} and I'll answer with the closest image in this chat's gallery and the "
        "shared one, with a similarity score.",
        *(f"{style.usage(c)} \u2014 {c.summary}" for c in commands_for(style.front_end) if c.name != "help"),
        *style.notes(private=private),
        *SEARCH_SYNTAX,
    ]
    return "\n".join(lines)
