"""The chat service every platform adapter calls: match, find, add, delete, list, stats, help."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from core.commands import ChatCommand, CommandInput, help_text, style_of
from core.conversation import Button, Chat, Context, Photo, Reply, photo_bytes
from core.engine import Engine
from core.errors import BusyError, ClipbotError, NotFoundError, PermissionDeniedError, StorageUnavailableError
from core.galleries import GLOBAL_COLLECTION
from core.pages import ResultPage, ResultPages
from core.previews import make_preview
from core.ratelimit import RateLimiter
from core.replies import added_text, empty_gallery_text, expired_text, label_or_id, list_text, result_caption
from core.search import SearchResult, shown_path
from core.text import clean_text, plural, shorten
from core.visuals import collage_png, colors_text, palette_png, scores_png

log = logging.getLogger(__name__)
NEXT_PREFIX = "next:"
TOP_PREFIX = "top:"


@dataclass(frozen=True)
class ServiceConfig:
    """The chat behaviour settings, as plain values (``bot`` fills them from the settings)."""

    top_k: int = 5
    weak_image_score: float = 0.75
    weak_text_score: float = 0.20
    add_requires_admin: bool = False
    admin_ids: frozenset[str] = field(default_factory=frozenset)
    list_limit: int = 20
    # /add waits this long for BLIP's caption; a slower one is stored when it comes (see Engine.add_decoded).
    add_caption_seconds: float = 10.0


class ChatService:
    """Turns chat requests into engine calls and engine results into :class:`Reply` objects.

    Every method returns a reply, or ``None`` where the bot should stay silent (a user who was
    already told to slow down). Errors users can act on become replies; others propagate to
    the adapter's central error handler.
    """

    def __init__(self, engine: Engine, *, config: ServiceConfig | None = None,
                 limiter: RateLimiter | None = None, pages: ResultPages | None = None) -> None:
        self.engine = engine
        self.config = config or ServiceConfig()
        self.limiter = limiter or RateLimiter(10)
        self.pages = pages or ResultPages()

    # -- requests -------------------------------------------------------------------------------

    async def match(self, ctx: Context, image: Photo) -> Reply | None:
        """Reply with the closest image of the chat's gallery (plus ``global``) to ``image``."""
        async def work() -> Reply:
            data = await photo_bytes(image)
            results = await self.engine.search_image(data, collections=ctx.chat.searchable, k=self.config.top_k)
            return await self._first_page(ctx, results, self.config.weak_image_score, "photo")

        return await self._guarded(ctx, work)

    async def find(self, ctx: Context, text: str) -> Reply | None:
        """Reply with the best image for a text query (label/description words, then CLIP)."""
        query = text.strip()
        if not query:
            return Reply("Tell me what to look for, for example: /find red car", kind="error")

        async def work() -> Reply:
            results = await self.engine.find_text(query, collections=ctx.chat.searchable, k=self.config.top_k)
            if not results and "colo" in query.lower():
                return Reply("No image here has those colours among its dominant ones.")
            return await self._first_page(ctx, results, self.config.weak_text_score, query)

        return await self._guarded(ctx, work)

    async def describe(self, ctx: Context, image: Photo) -> Reply | None:
        """BLIP's caption of a photo."""
        async def work() -> Reply:
            caption = await self.engine.describe(await photo_bytes(image))
            return Reply(caption or "I can't put this picture into words.")

        return await self._guarded(ctx, work)

    async def colors(self, ctx: Context, image: Photo) -> Reply | None:
        """A photo's dominant colours as a list and a palette strip."""
        async def work() -> Reply:
            colors = await self.engine.colors(await photo_bytes(image))
            png = await self.engine.blocking(palette_png, colors)
            return Reply("Dominant colours:\n" + colors_text(colors), image=png, image_name="palette.png")

        return await self._guarded(ctx, work)

    async def scores(self, ctx: Context, image: Photo) -> Reply | None:
        """How a photo scores against every image this chat can see, as a bar chart."""
        async def work() -> Reply:
            results = await self.engine.scores(await photo_bytes(image), collections=ctx.chat.searchable)
            if not results:
                return Reply(empty_gallery_text(style_of(ctx)))
            title = f"Scores against {plural(len(results), 'image')}"
            png = await self.engine.blocking(lambda: scores_png(results, title=title))
            best = "\n".join(f"{r.score:.2f}  {label_or_id(r.label, r.id)}" for r in results[:3])
            return Reply(f"Scores against {plural(len(results), 'image')}, best first:\n{best}", image=png,
                         image_name="scores.png")

        return await self._guarded(ctx, work)

    async def add(self, ctx: Context, image: Photo, label: str, description: str = "") -> Reply | None:
        """Add a photo to the chat's gallery (same photo again: label and description updated)."""
        if not label.strip():
            return Reply(f"Give the photo a label. {style_of(ctx).how_to_add()}", kind="error")

        async def work() -> Reply:
            if self.config.add_requires_admin and not await self._is_admin(ctx):
                raise PermissionDeniedError("Only admins can add images in this chat.")
            # The label is checked before the photo is fetched: a refused one costs no download.
            self.engine.text_limits.label(label)
            self.engine.text_limits.description(description)
            result = await self.engine.add_image(
                await photo_bytes(image), collection=ctx.chat.collection, label=label.strip(),
                description=description.strip(), added_by=ctx.user.key,
                caption_limit_s=self.config.add_caption_seconds,
            )
            verb = "Added" if result.status == "added" else "Updated"
            return Reply(added_text(result.record, verb), kind="info", result_id=result.record.id)

        return await self._guarded(ctx, work)

    async def delete(self, ctx: Context, image_id: int) -> Reply | None:
        """Delete an image: its author, the chat's admins or bot admins only."""
        async def work() -> Reply:
            record = await self.engine.get_image(image_id)
            if record.collection not in ctx.chat.searchable:
                raise NotFoundError(f"There is no image #{image_id} in this chat.")
            if record.collection == GLOBAL_COLLECTION:
                allowed = self._is_bot_admin(ctx)
            else:
                allowed = record.added_by == ctx.user.key or await self._is_admin(ctx)
            if not allowed:
                raise PermissionDeniedError(
                    "Only the person who added it, this chat's admins or the bot's admins can delete it."
                )
            await self.engine.remove(image_id)
            return Reply(f"Deleted #{image_id} \u201c{label_or_id(record.label, image_id)}\u201d.", kind="info",
                         result_id=image_id)

        return await self._guarded(ctx, work)

    async def list(self, ctx: Context) -> Reply | None:
        """The newest images of the chat's gallery."""
        async def work() -> Reply:
            records = await self.engine.list_images(ctx.chat.collection)
            if not records:
                return Reply(empty_gallery_text(style_of(ctx)))
            return Reply(list_text(records[-self.config.list_limit:][::-1], len(records)))

        return await self._guarded(ctx, work)

    async def stats(self, ctx: Context) -> Reply | None:
        async def work() -> Reply:
            counts = await self.engine.collection_counts()
            mine, shared = counts.get(ctx.chat.collection, 0), counts.get(GLOBAL_COLLECTION, 0)
            return Reply(
                f"This chat's gallery: {plural(mine, 'image')}.\nShared gallery: {plural(shared, 'image')}.\n"
                f"Searches here look through {plural(mine + shared, 'image')}."
            )

        return await self._guarded(ctx, work)

    async def move_chat(self, old: Chat, new: Chat) -> int:
        """A chat got a new id (a Telegram group upgraded to a supergroup): its gallery moves along."""
        moved = await self.engine.move_collection(old.collection, new.collection)
        if moved:
            log.warning("moved %d image(s) from %s to %s", moved, old.collection, new.collection)
        return moved

    def help(self, ctx: Context) -> Reply:
        """Every command, written the way the asking front end writes them."""
        return Reply(help_text(style_of(ctx), private=ctx.chat.private))

    async def execute(self, command: ChatCommand, ctx: Context, args: CommandInput) -> Reply | None:
        """Run a catalogue command with the arguments its front end parsed."""
        return await command.run(self, ctx, args)

    async def page(self, ctx: Context, data: str) -> Reply:
        """The reply a "next match" button leads to, for editing the message in place."""
        token, _, index_text = data.removeprefix(NEXT_PREFIX).partition(":")
        page = await self._page_of(ctx, token)
        if page is None or not index_text.isdigit():
            return Reply(expired_text(style_of(ctx)), kind="error")
        index = int(index_text) % len(page.results)
        return await self._result_reply(page, token, index)

    async def collage(self, ctx: Context, data: str) -> Reply:
        """The reply a "top N" button leads to: every result of the list on one card."""
        page = await self._page_of(ctx, data.removeprefix(TOP_PREFIX))
        if page is None:
            return Reply(expired_text(style_of(ctx)), kind="error")
        title = f"Top {len(page.results)} for {clean_text(page.query)}"  # cut to the card's width there
        png = await self.engine.blocking(lambda: collage_png(page.results, title=title))
        return Reply(f"Top {len(page.results)} for {shorten(clean_text(page.query), 200)}", kind="result", image=png,
                     image_name="top.png")

    async def _page_of(self, ctx: Context, token: str) -> ResultPage | None:
        page = await self.pages.get(token)
        return page if page is not None and page.collection == ctx.chat.collection else None

    # -- helpers --------------------------------------------------------------------------------

    async def _guarded(self, ctx: Context, work: Callable[[], Awaitable[Reply]]) -> Reply | None:
        decision = await self.limiter.check(ctx.user.key)
        if not decision.allowed:
            if not decision.notify:
                return None
            return Reply(
                f"You're sending requests faster than I can take them; try again in "
                f"{max(1, round(decision.retry_after))} s.", kind="rate_limited",
            )
        try:
            return await work()
        except BusyError as exc:
            return Reply(str(exc), kind="busy")
        except ClipbotError as exc:
            return Reply(str(exc), kind="error")

    # Sequence, not list: inside this class ``list`` names the /list method.
    async def _first_page(self, ctx: Context, results: Sequence[SearchResult], weak_below: float,
                          query: str) -> Reply:
        if not results:
            return Reply(empty_gallery_text(style_of(ctx)))
        page = ResultPage(ctx.chat.collection, tuple(results), weak_below, query)
        try:
            token: str | None = await self.pages.put(page)
        except StorageUnavailableError as exc:  # the answer still goes out, without buttons to page it
            log.warning("result page not kept (%s): %s", exc.detail, exc)
            token = None
        return await self._result_reply(page, token, 0)

    async def _result_reply(self, page: ResultPage, token: str | None, index: int) -> Reply:
        result = page.results[index]
        total = len(page.results)
        # A label or description that names what was asked for is a good answer whatever CLIP scores.
        weak = result.score < page.weak_below and not result.text_match
        buttons: tuple[Button, ...] = ()
        if total > 1 and token is not None:
            nxt = (index + 1) % total
            text = f"Next match ({nxt + 1}/{total})" if nxt else "Back to best match"
            # The collage comes on request only: the best match alone is the fast reply.
            buttons = (Button(text, f"{NEXT_PREFIX}{token}:{nxt}"), Button(f"Top {total}", f"{TOP_PREFIX}{token}"))
        image = await self.engine.blocking(make_preview, result.path) if result.path else None
        shown = await self.engine.blocking(shown_path, result.source_path, result.path)
        return Reply(
            result_caption(result, index, total, weak=weak), kind="result", image=image,
            image_name=f"match-{result.id}.jpg" if image else None, score=result.score, result_id=result.id,
            buttons=buttons, path=shown,
        )

    def _is_bot_admin(self, ctx: Context) -> bool:
        return ctx.user.key in self.config.admin_ids or ctx.user.id in self.config.admin_ids

    async def _is_admin(self, ctx: Context) -> bool:
        if self._is_bot_admin(ctx):
            return True
        try:
            return bool(await ctx.is_chat_admin())
        except Exception:
            log.warning("could not determine admin status of %s in %s", ctx.user.key, ctx.chat.collection,
                        exc_info=True)
            return False
