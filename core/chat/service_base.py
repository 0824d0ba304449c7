"""The chat service's footing and its group side: the rate-limit guard, who counts as an admin,
group switches, inline search, repost watching and ``/forget``.

:class:`core.chat.service.ChatService` builds on it with the requests every chat makes (match,
find, add, results and their buttons) and the catalogue's commands.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from core.chat.config import ServiceConfig
from core.chat.context import Context, Photo, Reply, User
from core.chat.groups import GroupFeatures, InlineHit
from core.chat.ratelimit import RateLimiter
from core.chat.reposts import RepostWatcher
from core.chat.switches import ChatSettings, ChatSettingsStore
from core.chat.threads import Threads
from core.errors import BusyError, ClipbotError
from core.gallery.engine import Engine

__all__ = ["ServiceBase"]
log = logging.getLogger("core.chat.service")  # one logger for the whole service, as before the split


class ServiceBase:
    """What every request of the service stands on, and the group features built on it."""

    def __init__(self, engine: Engine, *, config: ServiceConfig | None = None,
                 limiter: RateLimiter | None = None, threads: Threads | None = None) -> None:
        self.engine = engine
        self.config = config or ServiceConfig()
        self.limiter = limiter or RateLimiter(10)
        self.threads = threads or Threads(ttl_seconds=self.config.threads.ttl_s)
        settings = ChatSettingsStore(engine.state)
        self.groups = GroupFeatures(engine, store=engine.state, threads=self.threads, settings=settings,
                                    retention_days=self.config.repost_retention_days)

        async def is_watched(chat: str) -> bool:
            return (await settings.get(chat)).watch

        self.watcher = RepostWatcher(
            engine, threshold=self.config.repost_threshold, hash_distance=self.config.repost_hash_distance,
            retention_s=self.config.repost_retention_days * 86400, alert_interval_s=self.config.repost_alert_seconds,
            is_watched=is_watched,
        )
        engine.on_close(self.watcher.aclose)

    # -- group features (core.chat.groups) ------------------------------------------------------------

    async def watch(self, ctx: Context, arg: str) -> Reply | None:
        """``/watch on|off``: repost alerts in this chat (admins switch them)."""
        return await self._guarded(ctx, lambda: self._as_admin(ctx, self.groups.watch, arg))

    async def inline(self, ctx: Context, arg: str) -> Reply | None:
        """``/inline on|off``: this chat's gallery in its members' inline searches."""
        return await self._guarded(ctx, lambda: self._as_admin(ctx, self.groups.inline, arg))

    async def results(self, ctx: Context, arg: str) -> Reply | None:
        """``/results here|private``: where this chat's results go."""
        return await self._guarded(ctx, lambda: self._as_admin(ctx, self.groups.results, arg))

    async def forget(self, ctx: Context, who: str = "") -> Reply | None:
        """``/forget``: after a confirmation button, everything the asker (or, for admins, the user
        ``who`` names) contributed in this chat is removed."""
        number = "".join(ch for ch in who if ch.isdigit())
        if who.strip() and not number:
            return Reply("Usage: /forget (you), or /forget <user id> for an admin removing someone who left.",
                         kind="error")
        target = User(ctx.user.platform, number) if number and number != ctx.user.id else None
        return await self._guarded(ctx, lambda: self._as_admin(ctx, self.groups.forget, target))

    async def chat_settings(self, ctx: Context) -> ChatSettings:
        """This chat's switches (where results go, whether to watch for reposts)."""
        return await self.groups.chat_settings(ctx)

    async def remember_file(self, platform: str, image_id: int, file_id: str) -> None:
        """A platform's id for a picture it now holds (a sent result), offered by inline search."""
        await self.groups.remember_file(platform, image_id, file_id)

    async def inline_search(self, user: User, query: str, *, member_of: Sequence[str]) -> Sequence[InlineHit]:
        """Inline results for ``user``: ``global`` plus the chats in ``member_of`` that allow it."""
        collections = await self.groups.inline_collections(member_of)
        try:
            return await self.groups.inline_search(user, query, collections)
        except ClipbotError as exc:  # a malformed query: no results rather than an error pop-up
            log.debug("inline query %r: %s", query, exc)
            return []

    async def observe(self, ctx: Context, image: Photo, *, message_id: str, link: str | None,
                      alert: Callable[[str], Awaitable[None]]) -> None:
        """An image posted in a group. With repost alerts on there, it is fingerprinted at low
        priority, after the replies under way, and ``alert`` is called with "Seen before: posted by
        Ann on 3 May" when it was posted there before. With them off nothing at all is recorded."""
        if ctx.chat.private or not (await self.groups.chat_settings(ctx)).watch:
            return
        self.watcher.submit(ctx.chat.collection, image, message_id=message_id, author=ctx.user.key,
                            author_name=ctx.user.name, link=link, on_alert=alert)

    async def seen(self, ctx: Context) -> None:
        """Someone wrote in a group: remembered for their inline search where the chat allows it.
        Nothing is recorded for a chat with inline search off."""
        if not ctx.chat.private and (await self.groups.chat_settings(ctx)).inline:
            await self.groups.settings.saw_member(ctx.user.key, ctx.chat.collection)

    async def inline_candidates(self, user: User) -> Sequence[str]:
        """Chats with inline search on where ``user`` was seen; the adapter checks membership."""
        return await self.groups.member_chats(user)

    async def _as_admin(self, ctx: Context, fn: Callable[..., Awaitable[Reply]], arg: object) -> Reply:
        return await fn(ctx, arg, is_admin=await self._is_admin(ctx))

    # -- helpers --------------------------------------------------------------------------------

    async def _guarded(self, ctx: Context, work: Callable[[], Awaitable[Reply]]) -> Reply | None:
        decision = await self.limiter.check(ctx.limit_key)
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
