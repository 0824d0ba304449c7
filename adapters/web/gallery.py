"""The Gallery tab: browse the web and shared galleries as thumbnails, filter, add, edit, delete.

Each picture's details show the text read in it (OCR), and the listing filters by that text too.
That text comes from pictures anyone could upload: it is shown escaped, like every label.

Everything goes through the chat service's gallery side (:class:`core.chat.GalleryDesk`): adding
takes the same decoding, limits and errors as every front end (nothing stored on failure), and
relabelling and deleting follow the chat platforms' rules. Nothing here imports Gradio.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from adapters.web.files import PictureFiles
from adapters.web.markup import escape_markdown
from adapters.web.session import PLATFORM, WEB_CHAT, Access, Visitor
from adapters.web.uploads import UploadLedger
from core.chat import ChatService, Context, User
from core.errors import BusyError, ClipbotError
from core.galleries import GLOBAL_COLLECTION
from core.media import COLOR_FAMILIES, read_image_bytes
from core.records import ImageRecord, PictureText
from core.search import fold, matches_words, query_words
from core.text import clean_text, plural, shorten

PAGE_SIZE = 50
ANY_COLOR = "any colour"
COLOR_CHOICES = (ANY_COLOR, *COLOR_FAMILIES)
Progress = Callable[[int, int, str], None]
PAGE = Context(WEB_CHAT, User(PLATFORM, "page", "page"))  # browsing the page's galleries: anyone may
TEXT_SHOWN = 1500  # characters of a picture's text in its details: a scanned page holds thousands


class PictureTexts(Protocol):
    """Where the tab finds the text read in pictures (OCR): the chat service's gallery side."""

    async def picture_texts(self, ctx: Context, records: Sequence[ImageRecord]) -> dict[int, PictureText]:
        """The stored text of those of ``records`` the chat sees, by id; a picture not read yet is left out."""
        ...


@dataclass(frozen=True)
class GalleryPage:
    """One page of thumbnails: (thumbnail path, caption) pairs and the ids in the same order."""

    items: list[tuple[str, str]]
    ids: list[int]
    page: int  # 1-based, within 1..pages
    pages: int
    total: int  # images that pass the filter
    summary: str


def caption(record: ImageRecord) -> str:
    """``#12 label — description · red, white``: what the thumbnail shows under it."""
    label = shorten(clean_text(record.label), 60) or "(no label)"
    description = shorten(clean_text(record.description), 90)
    names = ", ".join(list(dict.fromkeys(str(c.get("name", "")) for c in record.color_list))[:3])
    text = f"#{record.id} {label}" + (f" \u2014 {description}" if description else "")
    return text + (f" \u00b7 {names}" if names else "")


def picture_text(text: PictureText | None) -> list[str]:
    """The text read in a picture, as the lines its details show (plain text: :func:`details` escapes it)."""
    if text is None:
        return ["Text in the picture: not read yet."]
    lines = [line for line in (clean_text(line) for line, _ in text.lines) if line]
    if not lines:
        return ["Text in the picture: no text."]
    return ["Text in the picture:", *shorten("\n".join(lines), TEXT_SHOWN).splitlines()]


def details(record: ImageRecord, text: Sequence[str] = ()) -> str:
    """The selected image, in full: what the edit panel (a Markdown component) shows above its
    fields; ``text`` is :func:`picture_text`'s lines, shown one per line, escaped as everything else."""
    colors = ", ".join(f"{c.get('name')} {c.get('hex')} ({c.get('percent')}%)" for c in record.color_list)
    where = "the shared gallery" if record.collection == GLOBAL_COLLECTION else "the web gallery"
    who = f", added by {record.added_by}" if record.added_by else ""
    shown = escape_markdown(f"#{record.id} in {where}{who}, {record.width}x{record.height}.\n"
                            f"Colours: {colors or 'none computed'}.")
    # Two spaces end a Markdown line: the picture's lines stay lines, in a paragraph of their own.
    return shown + ("\n\n" + "  \n".join(escape_markdown(line) for line in text) if text else "")


def text_words(text: str) -> list[str]:
    """The words typed in the text filter, folded as stored text is (no case, accents, punctuation)."""
    return [word for word in (fold(part) for part in text.split()) if word]


def matches(record: ImageRecord, words: list[str], color: str, in_text: Sequence[str] = (),
            texts: dict[int, PictureText] | None = None) -> bool:
    """Whether ``record`` passes the filters: every word in its label or description, its colour,
    and every one of ``in_text`` (folded) in its stored text (``texts``; a picture not read passes none)."""
    if color and color != ANY_COLOR and color not in record.color_families.split():
        return False
    if in_text:
        text = (texts or {}).get(record.id)
        if text is None or not all(word in text.folded for word in in_text):
            return False
    return not words or matches_words(words, record.label, record.description)


@dataclass
class GalleryView:
    """What the Gallery tab's buttons do; one per web app."""

    service: ChatService
    access: Access
    pictures: PictureFiles
    page_size: int = PAGE_SIZE
    uploads: UploadLedger | None = None  # where refused uploads are deleted at once
    texts: PictureTexts | None = None  # the pictures' stored text: None, none shown or filtered by

    async def records(self) -> list[ImageRecord]:
        """Every image the page shows (the web gallery and the shared one), newest first."""
        return await self.service.images_seen_by(PAGE)

    async def count(self) -> int:
        return await self.service.count_seen_by(PAGE)

    async def page(self, words: str = "", color: str = ANY_COLOR, page: int = 1, text: str = "") -> GalleryPage:
        """Page ``page`` of the images that match ``words`` (every one of them), ``color`` and
        ``text`` (every word of it in the text read in the picture)."""
        everything = await self.records()
        wanted, in_text = query_words(words), text_words(text or "")
        # The stored text of every image only when it is filtered by: a big gallery holds a lot.
        texts = await self.texts.picture_texts(PAGE, everything) if in_text and self.texts is not None else {}
        found = await self.service.filtered(everything, lambda r: matches(r, wanted, color, in_text, texts))
        pages = max(1, math.ceil(len(found) / self.page_size))
        page = min(max(1, page), pages)
        shown = found[(page - 1) * self.page_size: page * self.page_size]
        thumbs = await asyncio.gather(*(self._thumbnail(r) for r in shown))
        items = [(thumb, caption(r)) for r, thumb in zip(shown, thumbs, strict=True) if thumb]
        ids = [r.id for r, thumb in zip(shown, thumbs, strict=True) if thumb]
        filtered = bool(wanted) or bool(in_text) or (color and color != ANY_COLOR)
        if not everything:
            summary = "The gallery is empty: add images below, or ask the operator to run `clipbot index`."
        elif filtered:
            summary = f"{plural(len(found), 'image')} of {len(everything)} match."
        else:
            summary = f"{plural(len(everything), 'image')}, newest first."
        if pages > 1:
            summary += f" Page {page} of {pages}."
        return GalleryPage(items, ids, page, pages, len(found), summary)

    async def _thumbnail(self, record: ImageRecord) -> str | None:
        return await self.service.off_loop(self.pictures.thumbnail, self.service.picture_path(record), record.sha256)

    async def describe(self, image_id: int) -> ImageRecord:
        """An image of this page's galleries; any other is "no image", exactly as an id that does not exist."""
        return await self.service.image(PAGE, image_id)

    async def text_of(self, record: ImageRecord) -> list[str]:
        """The text read in ``record``'s picture, as :func:`details` shows it (nothing without a source)."""
        if self.texts is None:
            return []
        found = await self.texts.picture_texts(PAGE, [record])
        return picture_text(found.get(record.id))

    async def add(self, visitor: Visitor, files: Sequence[Path], label: str, description: str,
                  progress: Progress | None = None) -> str:
        """Add uploaded files to the web gallery, one by one; a report line per file that failed.

        ``label`` empty: each file's name is its label. The whole batch is one request for the
        rate limit: a family adding its holiday photos is not flooding the bot.
        """
        if not files:
            return "Choose one or more images first."
        refusal = visitor.add_refusal(self.access)
        if refusal:
            if self.uploads is not None:  # uploaded to be added, and refused: not kept for an hour
                for path in files:
                    await asyncio.to_thread(self.uploads.discard, path)
            return refusal
        try:
            self.service.check_texts(label, description)
        except ClipbotError as exc:
            return str(exc)
        ctx = visitor.context(self.access)
        refused = await self.service.admit(ctx)  # the whole batch is one request
        if refused is not None:
            return refused.text
        added, updated, problems = 0, 0, []
        for n, path in enumerate(files):
            name = path.name
            if progress is not None:
                progress(n, len(files), f"Adding {name}")
            try:
                data = await asyncio.to_thread(read_image_bytes, path, max_bytes=self.service.image_max_bytes)
                result = await self.service.add_to_gallery(ctx, data, label.strip() or Path(name).stem, description)
            except BusyError as exc:
                problems.append(f"{name}: {exc}")
                break
            except ClipbotError as exc:
                problems.append(f"{name}: {exc}")
                if self.uploads is not None:
                    await asyncio.to_thread(self.uploads.discard, path)
                continue
            if result.status == "added":
                added += 1
            else:
                updated += 1
        if progress is not None:
            progress(len(files), len(files), "Done")
        parts = [f"Added {plural(added, 'image')}"] + ([f"updated {updated} already there"] if updated else [])
        report = ", ".join(parts) + "."
        if problems:
            report += f" Not added ({len(problems)}):\n" + "\n".join(problems)
        return report

    async def edit(self, visitor: Visitor, image_id: int, label: str, description: str) -> str:
        """Change an image's label and description: its author or an admin (shared ones: bot admins)."""
        try:
            record = await self.describe(image_id)
            refusal = visitor.change_refusal(self.access, collection=record.collection, added_by=record.added_by,
                                             image_id=image_id)
            if refusal:
                return refusal
            return await self.service.relabel(visitor.context(self.access), image_id, label, description)
        except ClipbotError as exc:
            return str(exc)

    async def delete(self, visitor: Visitor, image_id: int) -> str:
        """Delete through the chat service, whose rules the chat platforms follow too."""
        try:
            record = await self.describe(image_id)
        except ClipbotError as exc:
            return str(exc)
        refusal = visitor.change_refusal(self.access, collection=record.collection, added_by=record.added_by,
                                         image_id=image_id)
        if refusal:
            return refusal
        reply = await self.service.delete(visitor.context(self.access), image_id)
        return reply.text if reply is not None else "Too many requests; try again in a moment."
