"""The Gallery tab: browse the web and shared galleries as thumbnails, filter, add, edit, delete.

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

from adapters.web.files import PictureFiles
from adapters.web.markup import escape_markdown
from adapters.web.session import PLATFORM, WEB_CHAT, Access, Visitor
from adapters.web.uploads import UploadLedger
from core.chat import ChatService, Context, User
from core.errors import BusyError, ClipbotError
from core.galleries import GLOBAL_COLLECTION
from core.media import COLOR_FAMILIES, read_image_bytes
from core.records import ImageRecord
from core.search import matches_words, query_words
from core.text import clean_text, plural, shorten

PAGE_SIZE = 50
ANY_COLOR = "any colour"
COLOR_CHOICES = (ANY_COLOR, *COLOR_FAMILIES)
Progress = Callable[[int, int, str], None]
PAGE = Context(WEB_CHAT, User(PLATFORM, "page", "page"))  # browsing the page's galleries: anyone may


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


def details(record: ImageRecord) -> str:
    """The selected image, in full: what the edit panel (a Markdown component) shows above its fields."""
    colors = ", ".join(f"{c.get('name')} {c.get('hex')} ({c.get('percent')}%)" for c in record.color_list)
    where = "the shared gallery" if record.collection == GLOBAL_COLLECTION else "the web gallery"
    who = f", added by {record.added_by}" if record.added_by else ""
    return escape_markdown(f"#{record.id} in {where}{who}, {record.width}x{record.height}.\n"
                           f"Colours: {colors or 'none computed'}.")


def matches(record: ImageRecord, words: list[str], color: str) -> bool:
    if color and color != ANY_COLOR and color not in record.color_families.split():
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

    async def records(self) -> list[ImageRecord]:
        """Every image the page shows (the web gallery and the shared one), newest first."""
        return await self.service.images_seen_by(PAGE)

    async def count(self) -> int:
        return await self.service.count_seen_by(PAGE)

    async def page(self, words: str = "", color: str = ANY_COLOR, page: int = 1) -> GalleryPage:
        """Page ``page`` of the images that match ``words`` (every one of them) and ``color``."""
        everything = await self.records()
        wanted = query_words(words)
        found = await self.service.filtered(everything, lambda r: matches(r, wanted, color))
        pages = max(1, math.ceil(len(found) / self.page_size))
        page = min(max(1, page), pages)
        shown = found[(page - 1) * self.page_size: page * self.page_size]
        thumbs = await asyncio.gather(*(self._thumbnail(r) for r in shown))
        items = [(thumb, caption(r)) for r, thumb in zip(shown, thumbs, strict=True) if thumb]
        ids = [r.id for r, thumb in zip(shown, thumbs, strict=True) if thumb]
        filtered = bool(wanted) or (color and color != ANY_COLOR)
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
