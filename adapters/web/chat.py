"""The Chat tab's conversation: messages in, the service's replies out, as Gradio chat messages.

A message is text and an optional photo. A photo alone is matched, text alone searched, and
``/command`` runs the catalogue command of that name, as on the other front ends. Replies become
chat messages whose pictures (the match, the scores chart, the palette) are files Gradio serves
inline, and whose "next match" and "top N" buttons are the message's options, clicked in the thread.
Nothing here imports Gradio.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.web.files import PictureFiles
from adapters.web.session import PLATFORM, Access, Visitor, photo_command_hint
from core.commands import CATALOGUE, MATCH, ChatCommand, CommandInput, Takes, command_named
from core.conversation import Photo, Reply
from core.images import read_image_bytes
from core.service import NEXT_PREFIX, TOP_PREFIX, ChatService

log = logging.getLogger(__name__)
_FIND = next(c for c in CATALOGUE if c.name == "find")
Message = dict[str, Any]
NOTHING_TO_PAGE = "Nothing to page through yet: drop a photo or search for something first."


def user_message(text: str, files: Sequence[str]) -> Message:
    """What the person sent, as the thread shows it: their words and their photo."""
    content: list[Any] = [{"path": f} for f in files[:1]]
    if text.strip():
        content.append(text.strip())
    return {"role": "user", "content": content or ["(empty message)"]}


def text_message(text: str) -> Message:
    return {"role": "assistant", "content": [text]}


@dataclass
class WebConversation:
    """Turns one visitor's chat input into service calls; one per web app, shared by every tab."""

    service: ChatService
    access: Access
    pictures: PictureFiles

    async def submit(self, visitor: Visitor, text: str, files: Sequence[str]) -> list[Message]:
        """The messages to add to the thread for one sent message: the visitor's, then the bot's."""
        sent = [user_message(text, files)]
        word = text.strip().split(maxsplit=1)[0].lower() if text.strip() else ""
        if word in ("/next", "/top"):  # typed stand-ins for the buttons of the last result
            data = visitor.buttons.get(word[1:])
            return sent + (await self.press(visitor, data) if data else [text_message(NOTHING_TO_PAGE)])
        reply = await self.answer(visitor, text.strip(), files)
        return sent + ([await self.message(visitor, reply)] if reply is not None else [])

    async def press(self, visitor: Visitor, data: str) -> list[Message]:
        """A result's button (a message option) was clicked: its page or its collage."""
        ctx = visitor.context(self.access)
        if data.startswith(NEXT_PREFIX):
            reply = await self.service.page(ctx, data)
        elif data.startswith(TOP_PREFIX):
            reply = await self.service.collage(ctx, data)
        else:
            return []
        return [await self.message(visitor, reply)]

    async def answer(self, visitor: Visitor, text: str, files: Sequence[str]) -> Reply | None:
        photo = self._photo(files[0]) if files else None
        word, _, rest = text.partition(" ")
        if "\n" in word:  # "/find\nred car": the command ends at the line break too
            word, _, more = word.partition("\n")
            rest = f"{more} {rest}"
        if word.startswith("/") and len(word) > 1:
            command = command_named(word[1:])
            if command is None or PLATFORM not in command.front_ends:
                return Reply("I don't know that command; /help lists them.", kind="error")
            return await self.run(visitor, command, rest, photo)
        if photo is not None:
            return await self.run(visitor, MATCH, "", photo)
        if not text:
            return Reply("Type words to search, or drop a photo on the message box.")
        return await self.run(visitor, _FIND, text, None)

    async def run(self, visitor: Visitor, command: ChatCommand, rest: str, photo: Photo | None) -> Reply | None:
        """One catalogue command, after the web's own checks: a photo attached, the right to add."""
        if command.takes.photo and photo is None:
            return Reply(photo_command_hint(command), kind="error")
        if command.takes is Takes.LABELLED_PHOTO and (refusal := visitor.add_refusal(self.access)):
            return Reply(refusal, kind="error")
        if command.takes is Takes.IMAGE_ID and not visitor.signed_in and not self.access.open_add:
            return Reply("Sign in to delete images." if self.access.users_configured
                         else "This page is read-only for visitors.", kind="error")
        args = CommandInput.from_text(command.takes, rest, photo=photo if command.takes.photo else None)
        return await self.service.execute(command, visitor.context(self.access), args)

    def _photo(self, path: str) -> Photo:
        """The uploaded file, read only once the rate limit let the request through."""
        max_bytes = self.service.engine.max_bytes

        async def read() -> bytes:
            return await asyncio.to_thread(read_image_bytes, Path(path), max_bytes=max_bytes)

        return read

    async def message(self, visitor: Visitor, reply: Reply) -> Message:
        """A reply as a chat message: its picture inline, its text, its buttons as options."""
        content: list[Any] = []
        if reply.image is not None:
            path = await self.service.engine.blocking(self.pictures.write, reply.image, reply.image_name or "card.png")
            content.append({"path": path, "alt_text": reply.text.splitlines()[0] if reply.text else "picture"})
        content.append(reply.text)
        message: Message = {"role": "assistant", "content": content}
        if reply.buttons:
            visitor.buttons = {("next" if b.data.startswith(NEXT_PREFIX) else "top"): b.data for b in reply.buttons}
            message["options"] = [{"label": b.text, "value": b.data} for b in reply.buttons]
        return message
