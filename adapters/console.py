"""``clipbot chat``: a terminal chat against the same service the platforms use."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from core.commands import MATCH, ChatCommand, CommandInput, Takes, command_named
from core.conversation import Chat, Context, Reply, User
from core.service import NEXT_PREFIX, TOP_PREFIX, ChatService

PLATFORM = "console"
PROMPT = "you> "


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
        return ["A bare PATH is matched, like /match PATH.",
                "/next, /top \u2014 the next match of the last result; all of them on one card",
                "/quit \u2014 leave"]


async def _is_admin() -> bool:
    return True  # the operator at the terminal owns this gallery


def _is_file(path: str) -> bool:
    return Path(path).expanduser().is_file()


def _read(path: str) -> bytes:
    return Path(path).expanduser().read_bytes()


class ConsoleChat:
    """Reads commands line by line and prints the service's replies."""

    def __init__(self, service: ChatService, *, read_line: Callable[[], str] | None = None,
                 out: TextIO | None = None, user: str = "operator", cards_dir: Path | None = None) -> None:
        self.service = service
        self.cards_dir = cards_dir or Path(tempfile.gettempdir()) / "clipbot-cards"
        self._read_line = read_line or sys.stdin.readline
        self._out = out or sys.stdout
        self.ctx = Context(Chat(PLATFORM, "local", private=True), User(PLATFORM, user, user), _is_admin,
                           help_style=ConsoleStyle())
        self._last: Reply | None = None

    async def run(self) -> None:
        """Chat until end of input or /quit."""
        self._say("clipbot console chat. /help lists commands, /quit leaves.")
        while True:
            self._out.write(PROMPT)
            self._out.flush()
            line = await asyncio.to_thread(self._read_line)
            if not line:
                self._out.write("\n")
                return
            if line.strip() in ("/quit", "/exit"):
                return
            await self.handle(line.strip())

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
                self._say("Nothing to page through; /match or /find first.")
            elif word == "/next":
                self._show(await self.service.page(self.ctx, data))
            else:
                self._show(await self.service.collage(self.ctx, data))
        elif await asyncio.to_thread(_is_file, line):  # a bare path is a photo to match
            self._show(await self._run(MATCH, line))
        else:
            self._say("I don't know that command; /help lists them.")

    async def _run(self, command: ChatCommand, rest: str) -> Reply | None:
        """A catalogue command; a photo command's first argument is the photo's path."""
        if not command.takes.photo:
            return await self.service.execute(command, self.ctx, CommandInput.from_text(command.takes, rest))
        path, _, more = rest.partition("|")
        path = path.strip()
        if not path:
            return Reply(f"Give a path to an image file, for example: /{command.name} photos/cat.jpg")
        try:
            data = await asyncio.to_thread(_read, path)
        except OSError:
            return Reply(f"No such file: {path}", kind="error")
        args = CommandInput.from_text(command.takes, more, photo=data)
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
            card = self.cards_dir / (reply.image_name or "card.png")
            card.parent.mkdir(parents=True, exist_ok=True)
            card.write_bytes(reply.image)
            self._say(f"  image: {card}")
        for button in reply.buttons:
            command = "/next" if button.data.startswith(NEXT_PREFIX) else "/top"
            self._say(f"  [{button.text}] ({command})")

    def _say(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self._out.write(f"bot> {line}\n")
        self._out.flush()
