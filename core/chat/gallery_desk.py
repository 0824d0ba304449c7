"""The service's gallery side, for front ends that show the gallery itself (the web chat's Gallery
tab): the galleries a chat sees, one image, its picture file, the upload limits, and adding,
relabelling and deleting with the same rules as the chat commands.

Front ends call these instead of reaching through the service to its engine: what a chat may
see and change is decided here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from core.chat.context import Context, Reply
from core.chat.service_base import ServiceBase
from core.errors import InputError, NotFoundError, PermissionDeniedError
from core.galleries import GLOBAL_COLLECTION
from core.gallery.intake import AddResult
from core.records import ImageRecord, PictureText

__all__ = ["GalleryDesk"]
T = TypeVar("T")


class GalleryDesk(ServiceBase):
    """Browse, add to and edit the galleries a chat sees."""

    @property
    def image_max_bytes(self) -> int:
        """The largest image file accepted (``CLIPBOT_MAX_IMAGE_MB``)."""
        return self.engine.max_bytes

    @property
    def video_max_bytes(self) -> int:
        """The largest video or animation file accepted (``CLIPBOT_VIDEO_MAX_MB``)."""
        return self.engine.video_limits.max_bytes

    async def images_seen_by(self, ctx: Context) -> list[ImageRecord]:
        """Every image of the galleries the chat searches, newest first."""
        records = [r for name in ctx.chat.searchable for r in await self.engine.list_images(name)]
        return sorted(records, key=lambda r: r.id, reverse=True)

    async def count_seen_by(self, ctx: Context) -> int:
        counts = await self.engine.collection_counts()
        return sum(counts.get(name, 0) for name in ctx.chat.searchable)

    async def picture_texts(self, ctx: Context, records: Sequence[ImageRecord]) -> dict[int, PictureText]:
        """The stored text (OCR) of those of ``records`` the chat sees, by id; a picture not read
        yet is left out."""
        ids = [r.id for r in records if r.collection in ctx.chat.searchable]
        return await self.engine.texts_for(ids) if ids else {}

    async def image(self, ctx: Context, image_id: int) -> ImageRecord:
        """One image the chat sees; any other is "no image", exactly as an id that does not exist."""
        record = await self._visible(ctx, image_id)
        if record is None:
            raise NotFoundError(f"There is no image #{image_id}.")
        return record

    async def _visible(self, ctx: Context, image_id: int) -> ImageRecord | None:
        """The image if the chat sees it; None for another chat's image and for none at all alike,
        so that no answer tells which ids exist in other galleries."""
        try:
            record = await self.engine.get_image(image_id)
        except NotFoundError:
            return None
        return record if record.collection in ctx.chat.searchable else None

    async def _may_change(self, ctx: Context, record: ImageRecord) -> bool:
        """The chat platforms' rule for editing or deleting: its author or an admin; images of the
        shared gallery, bot admins only."""
        if record.collection == GLOBAL_COLLECTION:
            return self._is_bot_admin(ctx)
        return record.added_by == ctx.user.key or await self._is_admin(ctx)

    def picture_path(self, record: ImageRecord) -> str | None:
        """Where the stored picture of ``record`` is, or None."""
        return self.engine.path_of(record)

    async def off_loop(self, fn: Callable[..., T], *args: object) -> T:
        """Run blocking work (decoding, thumbnails, writing files) on the engine's threads."""
        return await self.engine.blocking(fn, *args)

    async def admit(self, ctx: Context) -> Reply | None:
        """None when the rate limit lets ``ctx``'s sender make one more request, else what to tell them."""
        decision = await self.limiter.check(ctx.limit_key)
        if decision.allowed:
            return None
        return Reply(f"Too many requests; try again in {max(1, round(decision.retry_after))} s.", kind="rate_limited")

    def check_texts(self, label: str, description: str) -> None:
        """:class:`core.errors.InputError` when a label or description is too long to store."""
        self.engine.text_limits.label(label)
        self.engine.text_limits.description(description)

    async def add_to_gallery(self, ctx: Context, data: bytes, label: str, description: str) -> AddResult:
        """Add one picture to the chat's gallery as ``ctx``'s sender (after :meth:`admit` for the batch)."""
        return await self.engine.add_image(data, collection=ctx.chat.collection, label=label.strip(),
                                           description=description.strip(), added_by=ctx.user.key)

    async def relabel(self, ctx: Context, image_id: int, label: str, description: str) -> str:
        """Change an image's label and description: its author or an admin (shared ones: bot admins)."""
        record = await self.image(ctx, image_id)
        if not await self._may_change(ctx, record):
            raise PermissionDeniedError("Only the person who added it or the bot's admins can change it."
                                        if record.collection != GLOBAL_COLLECTION
                                        else "Only the bot's admins can change images of the shared gallery.")
        if not label.strip():
            raise InputError("The label cannot be empty.")
        self.check_texts(label, description)
        await self.engine.relabel(image_id, label=label.strip(), description=description.strip())
        return f"Saved #{image_id}."

    async def filtered(self, records: Sequence[ImageRecord], keep: Callable[[ImageRecord], bool]) -> list[ImageRecord]:
        """``records`` that ``keep`` keeps, sorted out on the engine's threads (a big gallery takes a while)."""
        return await self.engine.blocking(lambda: [r for r in records if keep(r)])
