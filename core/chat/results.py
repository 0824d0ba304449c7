"""The conversation around results: replies with buttons, paging, refining by replying, feedback.

:class:`ChatService` hands every result list here. A result reply carries its thread's token in
its buttons: "Next match" and "Top N" page the stored list; "More like this" and "Not this" move
the query (Rocchio, core.search.feedback) and search again; words replied to a result combine with its
image; ``/similar`` and ``/match #12`` search for a gallery image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from core.chat.context import Button, Context, Reply
from core.chat.styles import style_of
from core.chat.texts import empty_gallery_text, expired_text, result_caption
from core.chat.threads import (
    LIKE_PREFIX,
    NEXT_PREFIX,
    NOT_PREFIX,
    TOP_PREFIX,
    ResultRef,
    Thread,
    ThreadConfig,
    Threads,
)
from core.errors import NotFoundError, StorageUnavailableError
from core.galleries import searchable
from core.gallery.engine import Engine
from core.render.previews import make_preview
from core.render.visuals import collage_png
from core.search.calibration import Calibrator
from core.search.feedback import combine, rocchio
from core.search.query import QuerySyntaxError, parse_refinement
from core.search.searcher import QueryKind, QueryPlan
from core.search.words import SearchResult, shown_path
from core.text import clean_text, shorten

log = logging.getLogger(__name__)
GONE = "That image is no longer in this gallery."


class Dialogue:
    """Result replies and everything a later message can do with them."""

    def __init__(self, engine: Engine, *, threads: Threads, config: ThreadConfig, calibrator: Calibrator,
                 top_k: int) -> None:
        self.engine = engine
        self.threads = threads
        self.config = config
        self.calibrator = calibrator
        self.top_k = top_k

    # -- the first reply --------------------------------------------------------------------------

    async def first(self, ctx: Context, results: Sequence[SearchResult], *, query: str, plan: QueryPlan | None,
                    kind: QueryKind, note: str = "", collection: str | None = None) -> Reply:
        """The best result of a new search, its thread stored for the buttons and replies.

        ``collection``: the chat gallery the search was in, when not the asking chat's (a result
        of a group, followed up in a private chat with the bot).
        """
        if not results:
            return Reply(empty_gallery_text(style_of(ctx)))
        gallery = collection or ctx.chat.collection
        weak_below = none_below = float("-inf")
        if kind != "mixed":
            thresholds = await self.calibrator.thresholds(searchable(gallery))
            weak_below, none_below = ((thresholds.image_weak, thresholds.image_none) if kind == "image"
                                      else (thresholds.text_weak, thresholds.text_none))
        thread = Thread(gallery, ctx.user.key, tuple(results), query, weak_below, none_below,
                        origin=plan.vector if plan is not None else None, plan=plan)
        return await self._store_and_show(thread, note)

    async def _store_and_show(self, thread: Thread, note: str = "") -> Reply:
        try:
            token: str | None = await self.threads.put(thread)
        except StorageUnavailableError as exc:  # the answer still goes out, without buttons
            log.warning("conversation thread not kept (%s): %s", exc.detail, exc)
            token = None
        return await self.result_reply(thread, token, 0, note=note)

    async def result_reply(self, thread: Thread, token: str | None, index: int, *, note: str = "") -> Reply:
        result = thread.results[index]
        total = len(thread.results)
        # A label or description that names what was asked for is a good answer whatever CLIP scores.
        verdict = "good"
        if not result.text_match:
            verdict = "none" if result.score < thread.none_below else "weak" if result.score < thread.weak_below \
                else "good"
        buttons: tuple[Button, ...] = ()
        if token is not None:
            if total > 1:
                nxt = (index + 1) % total
                text = f"Next match ({nxt + 1}/{total})" if nxt else "Back to best match"
                buttons = (Button(text, f"{NEXT_PREFIX}{token}:{nxt}"), Button(f"Top {total}", f"{TOP_PREFIX}{token}"))
            if thread.plan is not None:
                buttons += (Button("More like this", f"{LIKE_PREFIX}{token}:{result.id}", row=1),
                            Button("Not this", f"{NOT_PREFIX}{token}:{result.id}", row=1))
        image = await self.engine.blocking(make_preview, result.path) if result.path else None
        shown = await self.engine.blocking(shown_path, result.source_path, result.path)
        caption = result_caption(result, index, total, verdict=verdict)
        return Reply(
            f"{note}\n{caption}" if note else caption, kind="result", image=image,
            image_name=f"match-{result.id}.jpg" if image else None, score=result.score, result_id=result.id,
            buttons=buttons, path=shown,
        )

    # -- buttons ----------------------------------------------------------------------------------

    async def thread_of(self, ctx: Context, token: str) -> Thread | None:
        """The thread behind a token, if it is alive and belongs to this chat, or is the asker's own
        and asked about in their private chat with the bot (results a group sends privately)."""
        thread = await self.threads.get(token)
        if thread is None:
            return None
        if thread.collection == ctx.chat.collection or (ctx.chat.private and thread.owner == ctx.user.key):
            return thread
        return None

    async def page(self, ctx: Context, data: str) -> Reply:
        """"Next match": the same message shows the next result."""
        token, _, index_text = data.removeprefix(NEXT_PREFIX).partition(":")
        thread = await self.thread_of(ctx, token)
        if thread is None or not index_text.isdigit():
            return Reply(expired_text(style_of(ctx)), kind="error")
        reply = await self.result_reply(thread, token, int(index_text) % len(thread.results))
        return replace(reply, replaces=True)

    async def collage(self, ctx: Context, data: str) -> Reply:
        """"Top N": every result of the list on one card."""
        thread = await self.thread_of(ctx, data.removeprefix(TOP_PREFIX))
        if thread is None:
            return Reply(expired_text(style_of(ctx)), kind="error")
        title = f"Top {len(thread.results)} for {clean_text(thread.query)}"  # cut to the card's width there
        png = await self.engine.blocking(lambda: collage_png(thread.results, title=title))
        return Reply(f"Top {len(thread.results)} for {shorten(clean_text(thread.query), 200)}", kind="result",
                     image=png, image_name="top.png")

    async def feedback(self, ctx: Context, ref: ResultRef, *, liked: bool) -> Reply:
        """"More like this" / "Not this" on a result: the thread's first query moved toward the
        liked images and away from the rejected ones, and searched again without any of them."""
        thread = await self.thread_of(ctx, ref.token)
        if thread is None:
            return Reply(expired_text(style_of(ctx)), kind="error")
        if thread.plan is None or thread.origin is None:
            return Reply("This result can't be refined; search again to get one that can.", kind="error")
        liked_ids = [i for i in thread.liked if i != ref.image_id] + ([ref.image_id] if liked else [])
        rejected_ids = [i for i in thread.rejected if i != ref.image_id] + ([] if liked else [ref.image_id])
        vectors = await self.engine.vectors_for([*liked_ids, *rejected_ids])
        query = rocchio(thread.origin, liked=[vectors[i] for i in liked_ids if i in vectors],
                        rejected=[vectors[i] for i in rejected_ids if i in vectors], alpha=self.config.query_weight,
                        beta=self.config.like_weight, gamma=self.config.reject_weight)
        seen = tuple(dict.fromkeys([*thread.plan.exclude, *liked_ids, *rejected_ids]))
        plan = replace(thread.plan, vector=query, exclude=seen)
        results = await self.engine.search_plan(plan, collections=searchable(thread.collection), k=self.top_k)
        if not results:
            return Reply("That was every image that fits; there is nothing else to show.")
        note = (f"More like #{ref.image_id}:" if liked else f"Not #{ref.image_id}; the next best:")
        child = Thread(thread.collection, ctx.user.key, tuple(results), thread.query, origin=thread.origin,
                       plan=plan, liked=tuple(liked_ids), rejected=tuple(rejected_ids))
        return await self._store_and_show(child, note)

    # -- replies to a result ------------------------------------------------------------------------

    async def refine(self, ctx: Context, ref: ResultRef | None, text: str) -> Reply:
        """Words replied to a result: its image and the words, searched together (``-words`` subtract)."""
        style = style_of(ctx)
        if ref is None:
            return Reply(style.not_a_result(), kind="error")
        try:
            refinement = parse_refinement(text)
        except QuerySyntaxError:
            return Reply(style.refine_usage())
        if refinement.empty:
            return Reply(style.refine_usage())
        thread = await self.thread_of(ctx, ref.token)
        if thread is None:
            return Reply(expired_text(style_of(ctx)), kind="error")
        image = await self._visible_vector(searchable(thread.collection), ref.image_id)
        texts = [*refinement.plus, *refinement.minus]
        encoded = list(await self.engine.text_vectors(texts))
        query = combine(images=[image], plus=encoded[: len(refinement.plus)], minus=encoded[len(refinement.plus):],
                        weight=self.config.refine_text_weight)
        base = thread.plan or QueryPlan(query)
        title = f"#{ref.image_id} {refinement.describe()}"
        plan = replace(base, vector=query, words="", title=title, kind="mixed",
                       exclude=tuple(dict.fromkeys([*base.exclude, *thread.rejected, ref.image_id])))
        results = await self.engine.search_plan(plan, collections=searchable(thread.collection), k=self.top_k)
        if not results:
            return Reply("Nothing else here fits that.")
        child = Thread(thread.collection, ctx.user.key, tuple(results), title, origin=query, plan=plan,
                       rejected=thread.rejected)
        return await self._store_and_show(child, f"#{ref.image_id}, {shorten(clean_text(text), 100)}:")

    async def similar(self, ctx: Context, image_id: int, *, ref: ResultRef | None = None) -> Reply:
        """Images like a gallery image (``/match #12``, or ``/similar`` replied to a result)."""
        gallery = ctx.chat.collection
        if ref is not None:
            thread = await self.thread_of(ctx, ref.token)
            if thread is None:
                return Reply(expired_text(style_of(ctx)), kind="error")
            gallery = thread.collection
        vector = await self._visible_vector(searchable(gallery), image_id)
        plan = QueryPlan(vector, exclude=(image_id,), title=f"#{image_id}", kind="image")
        results = await self.engine.search_plan(plan, collections=searchable(gallery), k=self.top_k)
        if not results:
            return Reply(f"#{image_id} is the only image here.")
        return await self.first(ctx, results, query=f"like #{image_id}", plan=plan, kind="image",
                                note=f"Like #{image_id}:", collection=gallery)

    async def _visible_vector(self, collections: tuple[str, ...], image_id: int) -> np.ndarray:
        try:
            return (await self.engine.image_vectors([image_id], collections))[image_id]
        except NotFoundError:
            raise NotFoundError(f"There is no image #{image_id} here.") from None
