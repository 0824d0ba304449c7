"""``clipbot chat``: a terminal chat against the same service the platforms use."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from adapters.console.paths import looks_like_path, photo_arguments, to_path, written_path
from adapters.console.terminal import LineReader, StreamReader, TerminalReader, is_terminal
from core.chat import (
    CATALOGUE,
    LIKE_PREFIX,
    MATCH,
    NEXT_PREFIX,
    NOT_PREFIX,
    REFINE,
    TOP_PREFIX,
    Chat,
    ChatCommand,
    ChatService,
    CommandInput,
    Context,
    Reply,
    ResultRef,
    Takes,
    User,
    command_named,
    image_ref,
    result_ref,
)
from core.search import QuerySyntaxError, parse_refinement

PLATFORM = "console"
PROMPT = "you> "
WELCOME = ("clipbot console chat. Type words to search, or an image's path (or drag the file in) to match it.\n"
           "/help lists commands; Ctrl+C clears the line; /quit or Ctrl+D leaves.")
_FIND = next(c for c in CATALOGUE if c.name == "find")
# The console's stand-ins for the buttons under a result: each presses that button of the last result.
STAND_INS = {"/next": NEXT_PREFIX, "/top": TOP_PREFIX, "/more": LIKE_PREFIX, "/not": NOT_PREFIX}
_STAND_IN_OF = {prefix: word for word, prefix in STAND_INS.items()}
NOTHING_TO_PAGE = "Nothing to page through; search or match something first."
NOTHING_TO_REFINE = "Nothing to refine yet; search or match something first."
ONE_MATCH = "The last result has only one match."
REFINE_HINT = ('Give words to refine the last result with, for example "> at night", "> but red" or "> -people" '
               "(or /refine at night).")


class ConsoleStyle:
    """How the console writes commands: a photo is a file's path, ``/add PATH | label | description``."""

    front_end = PLATFORM

    def usage(self, command: ChatCommand) -> str:
        name, takes = f"/{command.name}", command.takes
        if takes is Takes.LABELLED_PHOTO:
            return f"{name} PATH | {command.usage}"
        if takes is Takes.PHOTO:
            return f"{name} PATH or {name} #12" if command.by_id else f"{name} PATH"
        if takes is Takes.RESULT:
            return f"{name} (on the last result)"
        if takes is Takes.RESULT_WORDS:
            return f"{name} {command.usage} (on the last result), or > {command.usage}"
        return f"{name} {command.usage}".rstrip()  # Takes.NOTHING, WORDS, IMAGE_ID

    def notes(self, *, private: bool) -> list[str]:
        return ["A bare PATH is matched, like /match PATH; any other text is searched, like /find.",
                "PATH may be quoted, backslash-escaped or a file:// URL, as dragging a file in writes it.",
                "The last result is the match shown last; its buttons are typed:",
                "/next, /top \u2014 its next match; all of its matches on one card",
                "/more, /not \u2014 More like this, Not this: search again with it liked, or without it",
                "> words \u2014 refine it with your words, like /refine: > at night, > but red, > -people",
                "/quit \u2014 leave (or Ctrl+D)"]

    def send_photo(self) -> str:
        return "give me an image file's path"

    def how_to_add(self) -> str:
        return "To add an image, use /add PATH | label | description."

    def watch_note(self) -> str:
        return ""

    def refine_usage(self) -> str:
        return REFINE_HINT

    def not_a_result(self) -> str:
        return NOTHING_TO_REFINE


async def _is_admin() -> bool:
    return True  # the operator at the terminal owns this gallery


def _is_file(path: Path) -> bool:
    return path.is_file()


def _refines(text: str) -> bool:
    """Whether words replied to a result say how to refine it (not empty, not a lone operator)."""
    try:
        return not parse_refinement(text).empty
    except QuerySyntaxError:
        return False


def _missing(path: Path) -> str:
    if path.is_dir():
        return f"{path} is a folder; give the path of an image file in it."
    return f"No such file: {path}"


class ConsoleChat:
    """Reads commands line by line and prints the service's replies.

    On a terminal, lines are read with readline (editing, and history kept in ``history_file``);
    from a pipe or an injected ``read_line`` (tests) they are read as they come.
    """

    def __init__(self, service: ChatService, *, history_file: Path | None = None,
                 read_line: Callable[[], str] | None = None, out: TextIO | None = None, user: str = "operator",
                 cards_dir: Path | None = None) -> None:
        self.service = service
        self.cards_dir = cards_dir or Path(tempfile.gettempdir()) / "clipbot-cards"
        self._out = out or sys.stdout
        self._reader: LineReader
        if read_line is None and out is None and is_terminal():
            self._reader = TerminalReader(history_file)
        else:
            self._reader = StreamReader(read_line or sys.stdin.readline, self._out)
        self.ctx = Context(Chat(PLATFORM, "local", private=True), User(PLATFORM, user, user), _is_admin,
                           help_style=ConsoleStyle())
        self._last: Reply | None = None
        self._cards = 0

    async def run(self) -> None:
        """Chat until end of input or /quit."""
        self._say(WELCOME)
        try:
            while True:
                try:
                    line = await self._reader.read(PROMPT)
                except KeyboardInterrupt:  # Ctrl+C drops the line being typed, not the chat
                    self._out.write("\n")
                    continue
                if line is None:
                    self._out.write("\n")
                    return
                if line.strip() in ("/quit", "/exit"):
                    return
                await self.handle(line.strip())
        finally:
            self._reader.close()

    async def handle(self, line: str) -> None:
        """Answer one line of input."""
        if not line:
            return
        if line.startswith(">"):  # a reply to the last result: refine it
            self._show(await self._run(REFINE, line[1:].strip()))
            return
        word, _, rest = line.partition(" ")
        command = command_named(word[1:]) if word.startswith("/") else None
        if command is not None and PLATFORM in command.front_ends:
            self._show(await self._run(command, rest.strip()))
        elif word in STAND_INS:
            self._show(await self._press(word))
        elif (found := await self._locate(line, labelled=False)) is not None:  # a bare path: match it
            self._show(await self._photo_command(MATCH, found[0], ""))
        elif word.startswith("/") and "/" not in word[1:]:
            self._say("I don't know that command; /help lists them.")
        elif looks_like_path(line):
            self._say(await asyncio.to_thread(_missing, to_path(written_path(line))))
        else:  # anything else is words to search for, as in a Telegram private chat
            self._show(await self._run(_FIND, line))

    async def _run(self, command: ChatCommand, rest: str) -> Reply | None:
        """A catalogue command; a photo command's first argument is the photo's path (or, for
        /match, a gallery image's number); a result command works on the last result."""
        if command.takes.result:
            return await self._on_last_result(command, rest)
        # /match #12 and /match 12 need no file: the gallery's image of that number.
        if not command.takes.photo or (command.by_id and image_ref(rest) is not None):
            return await self.service.execute(command, self.ctx, CommandInput.from_text(command.takes, rest))
        labelled = command.takes is Takes.LABELLED_PHOTO
        if not rest.partition("|")[0].strip():
            return Reply(f"Give a path to an image file, for example: /{command.name} photos/cat.jpg"
                         + (" | label | description" if labelled else ""))
        found = await self._locate(rest, labelled=labelled)
        if found is None:
            # Name the path as the operator meant it: unquoted, unescaped, decoded.
            return Reply(await asyncio.to_thread(_missing, to_path(written_path(rest, labelled=labelled))),
                         kind="error")
        return await self._photo_command(command, *found)

    async def _locate(self, text: str, *, labelled: bool) -> tuple[Path, str] | None:
        """The image file ``text`` starts with, and the text after its path."""
        for path, rest in photo_arguments(text, labelled=labelled):
            if await asyncio.to_thread(_is_file, path):
                return path, rest
        return None

    async def _photo_command(self, command: ChatCommand, path: Path, rest: str) -> Reply | None:
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            return Reply(f"Cannot read {path}: {exc.strerror or exc}", kind="error")
        args = CommandInput.from_text(command.takes, rest, photo=data)
        return await self.service.execute(command, self.ctx, args)

    async def _on_last_result(self, command: ChatCommand, rest: str) -> Reply | None:
        """/similar and /refine (and ``> words``) on the last result; ``/similar #12`` on that image."""
        if command.takes is Takes.RESULT and (image_id := image_ref(rest)) is not None:
            return await self.service.execute(command, self.ctx, CommandInput(image_id=image_id))
        ref = self._result()
        if ref is None:
            return Reply(NOTHING_TO_REFINE)
        if command.takes is Takes.RESULT_WORDS and not _refines(rest):
            return Reply(REFINE_HINT)  # before the service, which would word it for a chat with replies
        args = replace(CommandInput.from_text(command.takes, rest), result=ref)
        return await self.service.execute(command, self.ctx, args)

    async def _press(self, word: str) -> Reply | None:
        """A stand-in for a button: that button of the last result, pressed."""
        data = self._button(STAND_INS[word])
        if data is not None:
            return await self.service.press(self.ctx, data)
        if self._last is None:
            return Reply(NOTHING_TO_PAGE if word in ("/next", "/top") else NOTHING_TO_REFINE)
        if word in ("/next", "/top"):
            return Reply(ONE_MATCH)
        return Reply("The last result can't be refined; search again to get one that can.")

    def _button(self, prefix: str) -> str | None:
        buttons = self._last.buttons if self._last else ()
        return next((b.data for b in buttons if b.data.startswith(prefix)), None)

    def _result(self) -> ResultRef | None:
        """The last result shown: its thread and its image."""
        return result_ref(b.data for b in self._last.buttons) if self._last else None

    def _show(self, reply: Reply | None) -> None:
        if reply is None:
            return
        if reply.buttons or (reply.kind == "result" and reply.result_id is not None):
            self._last = reply  # the last result shown: what /next, /more, > words and /similar work on
        self._say(reply.text)
        if reply.path:
            self._say(f"  image: {reply.path}")
        elif reply.image is not None:  # a rendered card: leave it where the operator can open it
            self._say(f"  image: {self._save_card(reply.image, reply.image_name or 'card.png')}")
        for button in reply.buttons:
            typed = next((word for prefix, word in _STAND_IN_OF.items() if button.data.startswith(prefix)), None)
            self._say(f"  [{button.text}]" + (f" ({typed})" if typed else ""))

    def _save_card(self, image: bytes, name: str) -> Path:
        """A new file for each card, so the operator can still open the earlier ones."""
        self.cards_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        while True:
            self._cards += 1
            card = self.cards_dir / f"{stamp}-{self._cards}-{Path(name).name}"
            try:
                with card.open("xb") as f:  # another console may be writing cards here too
                    f.write(image)
            except FileExistsError:
                continue
            return card

    def _say(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self._out.write(f"bot> {line}\n")
        self._out.flush()
