"""``clipbot chat``: a terminal chat against the same service the platforms use."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from adapters.console.paths import looks_like_path, photo_arguments, to_path, written_path
from adapters.console.terminal import LineReader, StreamReader, TerminalReader, is_terminal
from core.commands import CATALOGUE, MATCH, ChatCommand, CommandInput, Takes, command_named
from core.conversation import Chat, Context, Reply, User
from core.service import NEXT_PREFIX, TOP_PREFIX, ChatService

PLATFORM = "console"
PROMPT = "you> "
WELCOME = ("clipbot console chat. Type words to search, or an image's path (or drag the file in) to match it.\n"
           "/help lists commands; Ctrl+C clears the line; /quit or Ctrl+D leaves.")
_FIND = next(c for c in CATALOGUE if c.name == "find")


class ConsoleStyle:
    """How the console writes commands: a photo is a file's path, ``/add PATH | label | description``."""

    front_end = PLATFORM

    def usage(self, command: ChatCommand) -> str:
        if command.takes is Takes.LABELLED_PHOTO:
            return f"/{command.name} PATH | {command.usage}"
        if command.takes.photo:
            return f"/{command.name} PATH"
        return f"/{command.name} {command.usage}".rstrip()

    def notes(self, *, private: bool) -> list[str]:
        return ["A bare PATH is matched, like /match PATH; any other text is searched, like /find.",
                "PATH may be quoted, backslash-escaped or a file:// URL, as dragging a file in writes it.",
                "/next, /top \u2014 the next match of the last result; all of them on one card",
                "/quit \u2014 leave (or Ctrl+D)"]

    def send_photo(self) -> str:
        return "give me an image file's path"

    def how_to_add(self) -> str:
        return "To add an image, use /add PATH | label | description."


async def _is_admin() -> bool:
    return True  # the operator at the terminal owns this gallery


def _is_file(path: Path) -> bool:
    return path.is_file()


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
        word, _, rest = line.partition(" ")
        command = command_named(word[1:]) if word.startswith("/") else None
        if command is not None and PLATFORM in command.front_ends:
            self._show(await self._run(command, rest.strip()))
        elif word in ("/next", "/top"):  # the console's stand-ins for the result buttons
            data = self._button(NEXT_PREFIX if word == "/next" else TOP_PREFIX)
            if data is None:
                self._say("Nothing to page through; search or match something first.")
            elif word == "/next":
                self._show(await self.service.page(self.ctx, data))
            else:
                self._show(await self.service.collage(self.ctx, data))
        elif (found := await self._locate(line, labelled=False)) is not None:  # a bare path: match it
            self._show(await self._photo_command(MATCH, found[0], ""))
        elif word.startswith("/") and "/" not in word[1:]:
            self._say("I don't know that command; /help lists them.")
        elif looks_like_path(line):
            self._say(await asyncio.to_thread(_missing, to_path(written_path(line))))
        else:  # anything else is words to search for, as in a Telegram private chat
            self._show(await self._run(_FIND, line))

    async def _run(self, command: ChatCommand, rest: str) -> Reply | None:
        """A catalogue command; a photo command's first argument is the photo's path."""
        if not command.takes.photo:
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

    def _button(self, prefix: str) -> str | None:
        buttons = self._last.buttons if self._last else ()
        return next((b.data for b in buttons if b.data.startswith(prefix)), None)

    def _show(self, reply: Reply | None) -> None:
        if reply is None:
            return
        if reply.buttons:
            self._last = reply
        self._say(reply.text)
        if reply.path:
            self._say(f"  image: {reply.path}")
        elif reply.image is not None:  # a rendered card: leave it where the operator can open it
            self._say(f"  image: {self._save_card(reply.image, reply.image_name or 'card.png')}")
        for button in reply.buttons:
            command = "/next" if button.data.startswith(NEXT_PREFIX) else "/top"
            self._say(f"  [{button.text}] ({command})")

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
