"""The chat service every platform adapter calls: match, find, add, delete, list, stats, help."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from core.chat.catalogue import DELETE_USAGE, ChatCommand
from core.chat.config import ServiceConfig
from core.chat.context import Chat, CommandInput, Context, Photo, Reply, photo_bytes
from core.chat.gallery_desk import GalleryDesk
from core.chat.groups import FORGET_PREFIX
from core.chat.ratelimit import RateLimiter
from core.chat.results import Dialogue
from core.chat.styles import help_text, style_of
from core.chat.texts import added_text, empty_gallery_text, expired_text, label_or_id, list_text, read_text
from core.chat.threads import (
    LIKE_PREFIX,
    NEXT_PREFIX,
    NOT_PREFIX,
    TOP_PREFIX,
    ResultRef,
    Threads,
    result_ref,
)
from core.errors import NotFoundError, PermissionDeniedError
from core.galleries import GLOBAL_COLLECTION
from core.gallery.engine import Engine
from core.render.visuals import colors_text, palette_png, scores_png
from core.search.query import FIND_USAGE
from core.search.searcher import QueryPlan
from core.text import plural

__all__ = ["LIKE_PREFIX", "NEXT_PREFIX", "NOT_PREFIX", "TOP_PREFIX", "ChatService", "ServiceConfig"]
log = logging.getLogger(__name__)


class ChatService(GalleryDesk):
    """Turns chat requests into engine calls and engine results into :class:`Reply` objects.

    Every method returns a reply, or ``None`` where the bot should stay silent (a user who was
    already told to slow down). Errors users can act on become replies; others propagate to
    the adapter's central error handler.
    """

    def __init__(self, engine: Engine, *, config: ServiceConfig | None = None,
                 limiter: RateLimiter | None = None, threads: Threads | None = None) -> None:
        super().__init__(engine, config=config, limiter=limiter, threads=threads)
        self.calibrator = engine.calibrator(self.config.calibration, fallback_image=self.config.weak_image_score,
                                            fallback_text=self.config.weak_text_score)
        self.dialogue = Dialogue(engine, threads=self.threads, config=self.config.threads,
                                 calibrator=self.calibrator, top_k=self.config.top_k)

    # -- requests -------------------------------------------------------------------------------

    async def match(self, ctx: Context, image: Photo) -> Reply | None:
        """Reply with the closest image of the chat's gallery (plus ``global``) to ``image``."""
        async def work() -> Reply:
            # A video or animation is searched frame by frame; its best frame is what feedback moves.
            results, vector = await self.engine.match_media(await photo_bytes(image), collections=ctx.chat.searchable,
                                                            k=self.config.top_k)
            plan = QueryPlan(vector, title="photo", kind="image")
            return await self.dialogue.first(ctx, results, query="photo", plan=plan, kind="image")

        return await self._guarded(ctx, work)

    async def find(self, ctx: Context, text: str) -> Reply | None:
        """Reply with the best images for a query (``cat + beach -dog "red hat" #12 color:red``):
        label and description words first, then CLIP's meaning."""
        query = text.strip()
        if not query:
            return Reply(f"Tell me what to look for, for example: /find red car\n{FIND_USAGE}", kind="error")

        async def work() -> Reply:
            plan = await self.engine.plan_query(query, collections=ctx.chat.searchable,
                                                weight=self.config.threads.refine_text_weight)
            results = await self.engine.search_plan(plan, collections=ctx.chat.searchable, k=self.config.top_k)
            if not results and plan.families:
                # Pictures indexed moments ago may still wait for their colour pass: say so, not "none".
                waiting = sum([len(await self.engine.awaiting_colors(c)) for c in ctx.chat.searchable])
                later = (f" {waiting} picture(s) here have no colours yet; they match colour filters once "
                         "their colour pass has run.") if waiting else ""
                return Reply(f"No image here has those colours among its dominant ones.{later}")
            if not results and plan.phrases:
                quoted = ", ".join(f"\u201c{p}\u201d" for p in plan.phrases)
                return Reply(f"No image here has {quoted} in its label or description.")
            return await self.dialogue.first(ctx, results, query=query, plan=plan, kind=plan.kind)

        return await self._guarded(ctx, work)

    async def similar(self, ctx: Context, image_id: int) -> Reply | None:
        """Images like gallery image ``image_id`` (``/match #12``), if this chat can see it."""
        return await self._guarded(ctx, lambda: self.dialogue.similar(ctx, image_id))

    async def similar_to_result(self, ctx: Context, ref: ResultRef | None) -> Reply | None:
        """``/similar`` replied to one of the bot's results: images like the one it shows."""
        if ref is None:
            return Reply(style_of(ctx).not_a_result(), kind="error")
        return await self._guarded(ctx, lambda: self.dialogue.similar(ctx, ref.image_id, ref=ref))

    async def refine(self, ctx: Context, ref: ResultRef | None, text: str) -> Reply | None:
        """Words replied to a result: search again for its image combined with them."""
        if ref is not None and not text.strip():
            return Reply(style_of(ctx).refine_usage())
        return await self._guarded(ctx, lambda: self.dialogue.refine(ctx, ref, text))

    async def press(self, ctx: Context, data: str) -> Reply | None:
        """A result's button: the next match (``replaces`` the message), the top-N card, or
        "More like this" / "Not this" (a new result, from the thread moved by the feedback)."""
        if data.startswith(FORGET_PREFIX):
            return await self.groups.forget_confirmed(ctx, data)
        if data.startswith(NEXT_PREFIX):
            return await self.dialogue.page(ctx, data)
        if data.startswith(TOP_PREFIX):
            return await self.dialogue.collage(ctx, data)
        ref = result_ref([data])
        if ref is None:
            return Reply(expired_text(style_of(ctx)), kind="error")
        return await self._guarded(ctx, lambda: self.dialogue.feedback(ctx, ref, liked=data.startswith(LIKE_PREFIX)))

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

    async def read(self, ctx: Context, image: Photo) -> Reply | None:
        """The text in a photo (OCR), line by line."""
        async def work() -> Reply:
            return Reply(read_text(await self.engine.read_picture(await photo_bytes(image))))

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
            record = await self._visible(ctx, image_id)
            if record is None:
                raise NotFoundError(f"There is no image #{image_id} in this chat.")
            if not await self._may_change(ctx, record):
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
            text = (f"This chat's gallery: {plural(mine, 'image')}.\nShared gallery: {plural(shared, 'image')}.\n"
                    f"Searches here look through {plural(mine + shared, 'image')}.")
            if mine + shared:
                await self.engine.ready()
                thresholds = await self.calibrator.thresholds(ctx.chat.searchable)
                text += "\n" + thresholds.describe()
            return Reply(text)

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

    # -- the catalogue's commands, each a method of the service that runs it (as discord.py's Cogs) ----

    async def execute(self, command: ChatCommand, ctx: Context, args: CommandInput) -> Reply | None:
        """Run a catalogue command with the arguments its front end parsed: ``command_<name>``."""
        run: Callable[[Context, CommandInput], Awaitable[Reply | None]] = getattr(self, f"command_{command.name}")
        return await run(ctx, args)

    async def command_find(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.find(ctx, a.words)

    async def command_match(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await (self.similar(ctx, a.image_id) if a.image_id is not None else self.match(ctx, a.require_photo()))

    async def command_similar(self, ctx: Context, a: CommandInput) -> Reply | None:
        if a.image_id is not None:
            return await self.similar(ctx, a.image_id)
        return await self.similar_to_result(ctx, a.result)

    async def command_refine(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.refine(ctx, a.result, a.words)

    async def command_add(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.add(ctx, a.require_photo(), a.label, a.description)

    async def command_describe(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.describe(ctx, a.require_photo())

    async def command_colors(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.colors(ctx, a.require_photo())

    async def command_read(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.read(ctx, a.require_photo())

    async def command_scores(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.scores(ctx, a.require_photo())

    async def command_delete(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.delete(ctx, a.image_id) if a.image_id is not None else Reply(DELETE_USAGE, kind="error")

    async def command_list(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.list(ctx)

    async def command_stats(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.stats(ctx)

    async def command_watch(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.watch(ctx, a.words)

    async def command_inline(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.inline(ctx, a.words)

    async def command_results(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.results(ctx, a.words)

    async def command_forget(self, ctx: Context, a: CommandInput) -> Reply | None:
        return await self.forget(ctx, a.words)

    async def command_help(self, ctx: Context, a: CommandInput) -> Reply | None:
        return self.help(ctx)
