"""The Chat tab's conversation: messages in, the service's replies out, as Gradio chat messages.

A message is text and an optional photo. A photo alone is matched, text alone searched, and
``/command`` runs the catalogue command of that name, as on the other front ends. Replies become
chat messages whose pictures (the match, the scores chart, the palette) are files Gradio serves
inline, and whose buttons ("Next match", "Top N", "More like this", "Not this") are the message's
options, clicked in the thread. The visitor's last result is what ``/next``, ``/more``, ``/similar``,
``/refine`` and a message starting with ``>`` work on. Nothing here imports Gradio.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from adapters.web.files import PictureFiles
from adapters.web.markup import escape_html
from adapters.web.session import NOTHING_TO_REFINE, PLATFORM, REFINE_HINT, Access, Visitor, photo_command_hint
from adapters.web.uploads import UploadLedger
from core.chat import (
    CATALOGUE,
    MATCH,
    REFINE,
    ChatCommand,
    ChatService,
    CommandInput,
    Photo,
    Reply,
    Takes,
    command_named,
    image_ref,
)
from core.media import read_image_bytes
from core.search import QuerySyntaxError, parse_refinement

log = logging.getLogger(__name__)
_FIND = next(c for c in CATALOGUE if c.name == "find")
Message = dict[str, Any]
# Typed stand-ins for the buttons of the last result, and the kind of button each presses.
STAND_INS = {"/next": "next", "/top": "top", "/more": "like", "/not": "not"}
NOTHING_TO_PAGE = "Nothing to page through yet: drop a photo or search for something first."
ONE_MATCH = "The last result has only one match."


def user_message(text: str, files: Sequence[Path], *, refused: bool = False) -> Message:
    """What the person sent, as the thread shows it: their words and their photo (its name, once
    the photo was refused and deleted)."""
    content: list[Any] = [f"({f.name})" if refused else {"path": str(f)} for f in files[:1]]
    if text.strip():
        content.append(escape_html(text.strip()))
    return {"role": "user", "content": content or ["(empty message)"]}


def text_message(text: str) -> Message:
    """A bot message of plain text (Gradio renders a message's text as HTML: it is escaped)."""
    return {"role": "assistant", "content": [escape_html(text)]}


@dataclass
class WebConversation:
    """Turns one visitor's chat input into service calls; one per web app, shared by every tab."""

    service: ChatService
    access: Access
    pictures: PictureFiles
    uploads: UploadLedger | None = None  # where refused uploads are deleted at once

    async def submit(self, visitor: Visitor, text: str, files: Sequence[Path]) -> list[Message]:
        """The messages to add to the thread for one sent message: the visitor's, then the bot's.

        ``files`` are uploads this visitor's browser made (checked by the caller, see
        :meth:`adapters.web.uploads.UploadLedger.owned`); a photo the reply refuses is deleted.
        """
        word = text.strip().split(maxsplit=1)[0].lower() if text.strip() else ""
        if word in STAND_INS:  # typed stand-ins for the buttons of the last result
            data = visitor.buttons.get(STAND_INS[word])
            sent = [user_message(text, files)]
            return sent + (await self.press(visitor, data) if data else [text_message(self._no_button(visitor, word))])
        reply = await self.answer(visitor, text.strip(), files)
        refused = bool(files) and reply is not None and reply.kind == "error"
        if refused and self.uploads is not None:
            await asyncio.to_thread(self.uploads.discard, files[0])
        sent = [user_message(text, files, refused=refused and self.uploads is not None)]
        return sent + ([await self.message(visitor, reply)] if reply is not None else [])

    async def press(self, visitor: Visitor, data: str) -> list[Message]:
        """A result's button (a message option) was clicked. Every answer comes as a new message,
        "Next match" too (it ``replaces`` the result where a platform can edit it in place)."""
        reply = await self.service.press(visitor.context(self.access), data)
        return [await self.message(visitor, reply)] if reply is not None else []

    async def answer(self, visitor: Visitor, text: str, files: Sequence[Path]) -> Reply | None:
        photo = self._photo(files[0]) if files else None
        if text.startswith(">"):  # a reply to the last result: refine it
            return await self.run(visitor, REFINE, text[1:].strip(), None)
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
        """One catalogue command, after the web's own checks: a photo attached (or, for /match, a
        gallery image's number), a last result to work on, the right to add."""
        if command.takes.result:
            return await self._on_last_result(visitor, command, rest)
        if command.takes.photo and photo is None and not (command.by_id and image_ref(rest) is not None):
            return Reply(photo_command_hint(command), kind="error")
        if command.takes is Takes.LABELLED_PHOTO and (refusal := visitor.add_refusal(self.access)):
            return Reply(refusal, kind="error")
        if command.takes is Takes.IMAGE_ID and not visitor.signed_in and not self.access.open_add:
            return Reply("Sign in to delete images." if self.access.users_configured
                         else "This page is read-only for visitors.", kind="error")
        args = CommandInput.from_text(command.takes, rest, photo=photo if command.takes.photo else None)
        return await self.service.execute(command, visitor.context(self.access), args)

    async def _on_last_result(self, visitor: Visitor, command: ChatCommand, rest: str) -> Reply | None:
        """/similar and /refine (and "> words") on the visitor's last result; /similar #12 on that image."""
        ctx = visitor.context(self.access)
        if command.takes is Takes.RESULT and (image_id := image_ref(rest)) is not None:
            return await self.service.execute(command, ctx, CommandInput(image_id=image_id))
        if visitor.result is None:
            return Reply(NOTHING_TO_REFINE)
        if command.takes is Takes.RESULT_WORDS and not _refines(rest):
            return Reply(REFINE_HINT)  # before the service, which would word it for a chat with replies
        return await self.service.execute(command, ctx, replace(CommandInput.from_text(command.takes, rest),
                                                                result=visitor.result))

    @staticmethod
    def _no_button(visitor: Visitor, word: str) -> str:
        """Why a typed stand-in for a button has nothing to press."""
        paging = word in ("/next", "/top")
        if not visitor.buttons:
            return NOTHING_TO_PAGE if paging else NOTHING_TO_REFINE
        return ONE_MATCH if paging else "The last result can't be refined; search again to get one that can."

    def _photo(self, path: Path) -> Photo:
        """The uploaded file, read only once the rate limit let the request through."""
        max_bytes = self.service.image_max_bytes

        async def read() -> bytes:
            return await asyncio.to_thread(read_image_bytes, path, max_bytes=max_bytes)

        return read

    async def message(self, visitor: Visitor, reply: Reply) -> Message:
        """A reply as a chat message: its picture inline, its text, its buttons as options."""
        content: list[Any] = []
        if reply.image is not None:
            path = await self.service.off_loop(self.pictures.write, reply.image, reply.image_name or "card.png")
            # A fixed alt text: no attribute of the page is ever made from a label.
            content.append({"path": path, "alt_text": "The matching picture" if reply.kind == "result" else "Picture"})
        content.append(escape_html(reply.text))
        message: Message = {"role": "assistant", "content": content}
        if reply.buttons or (reply.kind == "result" and reply.result_id is not None):
            visitor.shown(reply.buttons)  # the last result now, whatever it was before
        if reply.buttons:
            message["options"] = [{"label": b.text, "value": b.data} for b in reply.buttons]
        return message


def _refines(text: str) -> bool:
    """Whether words replied to a result say how to refine it (not empty, not a lone operator)."""
    try:
        return not parse_refinement(text).empty
    except QuerySyntaxError:
        return False
