"""``clipbot chat``: a terminal chat against the same service the platforms use."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from core.conversation import Chat, Context, Reply, User
from core.service import NEXT_PREFIX, TOP_PREFIX, ChatService

PLATFORM = "console"
PROMPT = "you> "
CONSOLE_HELP = """Commands:
/match PATH (or just PATH)      the closest images to a photo, with scores
/find WORDS                     images by label, description or meaning
/next  /top                     the next match of the last result; all of them on one card
/describe PATH  /colors PATH  /scores PATH   a caption, dominant colours, every score as a chart
/add PATH | label | description add a photo to the console gallery
/delete ID   /list   /stats   /quit"""


async def _is_admin() -> bool:
    return True  # the operator at the terminal owns this gallery


class ConsoleChat:
    """Reads commands line by line and prints the service's replies."""

    def __init__(self, service: ChatService, *, read_line: Callable[[], str] | None = None,
                 out: TextIO | None = None, user: str = "operator", cards_dir: Path | None = None) -> None:
        self.service = service
        self.cards_dir = cards_dir or Path(tempfile.gettempdir()) / "clipbot-cards"
        self._read_line = read_line or sys.stdin.readline
        self._out = out or sys.stdout
        self.ctx = Context(Chat(PLATFORM, "local", private=True), User(PLATFORM, user, user), _is_admin)
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
        command, _, rest = line.partition(" ")
        rest = rest.strip()
        svc, ctx = self.service, self.ctx
        if command == "/find":
            self._show(await svc.find(ctx, rest))
        elif command in ("/match", "/describe", "/colors", "/scores"):
            handle = getattr(svc, command[1:])
            self._show(await self._with_file(rest, lambda data: handle(ctx, data)))
        elif command == "/add":
            path, _, meta = rest.partition("|")
            label, _, description = meta.partition("|")
            self._show(await self._with_file(path.strip(), lambda data: svc.add(ctx, data, label, description)))
        elif command == "/delete":
            self._show(await svc.delete(ctx, int(rest)) if rest.isdigit() else Reply("Usage: /delete <id>"))
        elif command == "/list":
            self._show(await svc.list(ctx))
        elif command == "/stats":
            self._show(await svc.stats(ctx))
        elif command in ("/next", "/top"):
            data = self._button(NEXT_PREFIX if command == "/next" else TOP_PREFIX)
            if data is None:
                self._say("Nothing to page through; /match or /find first.")
            else:
                self._show(await (svc.page(ctx, data) if command == "/next" else svc.collage(ctx, data)))
        elif command in ("/help", "/start"):
            self._say(CONSOLE_HELP)
        elif Path(line).expanduser().is_file():  # a bare path is a photo to match
            self._show(await self._with_file(line, lambda data: svc.match(ctx, data)))
        else:
            self._say("I don't know that command; /help lists them.")

    async def _with_file(self, path: str, send: Callable[[bytes], object]) -> Reply | None:
        if not path:
            return Reply("Give a path to an image file, for example: /match photos/cat.jpg")
        try:
            data = await asyncio.to_thread(Path(path).expanduser().read_bytes)
        except OSError:
            return Reply(f"No such file: {path}", kind="error")
        return await send(data)  # type: ignore[no-any-return, misc]

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
