"""What admins switch per chat (repost alerts, inline search, private results), /forget, and the
inline search itself: the service's group features, used by :class:`core.chat.service.ChatService`."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.chat.context import Button, Context, Reply, User
from core.chat.styles import style_of
from core.chat.switches import ChatSettings, ChatSettingsStore
from core.chat.threads import Threads
from core.errors import InputError, PermissionDeniedError
from core.galleries import GLOBAL_COLLECTION
from core.gallery.engine import Engine
from core.search.words import SearchResult
from core.storage.state import StateStore
from core.text import plural

log = logging.getLogger(__name__)
FORGET_PREFIX = "forget:"
FORGET_KIND = "forget"
FORGET_TTL_S = 600  # a confirmation button older than this asks again
FILE_KIND = "file"  # a platform's id of a picture it already holds: telegram:12 -> "AgACAgQ..."
INLINE_RESULTS = 20
SWITCHES = {"on": True, "off": False}


@dataclass(frozen=True)
class InlineHit:
    """One inline search result: an image the platform already holds (its file id)."""

    image_id: int
    file_id: str
    title: str
    description: str
    score: float


class GroupFeatures:
    """Chat switches, /forget and inline search over the engine and the state store."""

    def __init__(self, engine: Engine, *, store: StateStore, threads: Threads, settings: ChatSettingsStore,
                 retention_days: float = 90) -> None:
        self.engine = engine
        self.store = store
        self.threads = threads
        self.settings = settings
        self.retention_days = retention_days

    # -- switches ---------------------------------------------------------------------------------

    async def watch(self, ctx: Context, arg: str, *, is_admin: bool) -> Reply:
        """``/watch on|off`` (admins) or ``/watch`` (the state): repost alerts in this chat."""
        changed, now = await self._switch(ctx, arg, is_admin=is_admin, setting="watch", choices=SWITCHES,
                                          usage="/watch on, /watch off, or /watch to see whether it is on",
                                          refused="Only this chat's admins can switch repost alerts.")
        if not changed:
            return Reply(f"Repost alerts are {'on' if now.watch else 'off'} here. "
                         f"Admins switch them with /watch on or /watch off.")
        if not now.watch:
            return Reply("Repost alerts are off: I no longer look at the images posted here. Records of earlier "
                         f"images expire within {self.retention_days:g} days.")
        note = style_of(ctx).watch_note()
        return Reply("Repost alerts are on. From now on I remember a fingerprint of every image posted here (not the "
                     f"image itself) for {self.retention_days:g} days, and say when one was posted before."
                     + (f" {note}" if note else ""))

    async def inline(self, ctx: Context, arg: str, *, is_admin: bool) -> Reply:
        """``/inline on|off``: whether this chat's gallery can be searched inline by its members."""
        changed, now = await self._switch(ctx, arg, is_admin=is_admin, setting="inline", choices=SWITCHES,
                                          usage="/inline on, /inline off, or /inline to see whether it is on",
                                          refused="Only this chat's admins can switch inline search.")
        if not changed:
            return Reply(f"Inline search of this chat's gallery is {'on' if now.inline else 'off'}.")
        if now.inline:
            await self.settings.saw_member(ctx.user.key, ctx.chat.collection)
            return Reply("Inline search is on: members can type my name and words in any chat to find this "
                         "chat's images.")
        return Reply("Inline search is off: this chat's images only show up here.")

    async def results(self, ctx: Context, arg: str, *, is_admin: bool) -> Reply:
        """``/results here|private``: where this chat's results go."""
        changed, now = await self._switch(ctx, arg, is_admin=is_admin, setting="private_results",
                                          choices={"here": False, "private": True},
                                          usage="/results here, /results private, or /results to see where they go",
                                          refused="Only this chat's admins can change where results go.")
        if not changed:
            return Reply(f"Results go {'privately to whoever asked' if now.private_results else 'here, in the chat'}.")
        return Reply("Results now go privately to whoever asked." if now.private_results
                     else "Results now come here, in the chat.")

    async def _switch(self, ctx: Context, arg: str, *, is_admin: bool, setting: str, choices: dict[str, bool],
                      usage: str, refused: str) -> tuple[bool, ChatSettings]:
        """A switch command's word applied by an admin (``InputError`` with ``usage`` for any other
        word); no word changes nothing. Returns whether it changed and the chat's settings after."""
        word = arg.strip().lower()
        if not word:
            return False, await self.settings.get(ctx.chat.collection)
        if word not in choices:
            raise InputError(f"Usage: {usage}.")
        self._require(is_admin, refused)
        return True, await self.settings.update(ctx.chat.collection, **{setting: choices[word]})

    async def chat_settings(self, ctx: Context) -> ChatSettings:
        return await self.settings.get(ctx.chat.collection)

    # -- /forget ------------------------------------------------------------------------------------

    async def forget(self, ctx: Context, target: User | None, *, is_admin: bool) -> Reply:
        """Ask to confirm forgetting everything ``target`` (default: the asker) contributed here."""
        who = target or ctx.user
        if who.key != ctx.user.key:
            self._require(is_admin, "Only this chat's admins can make me forget someone else.")
        nonce = secrets.token_urlsafe(9)
        request = {"chat": ctx.chat.collection, "requester": ctx.user.key, "target": who.key,
                   "name": who.name or who.id}
        await self.store.put_state(FORGET_KIND, nonce, json.dumps(request), FORGET_TTL_S)
        whose = "your" if who.key == ctx.user.key else f"{who.name or who.id}'s"
        return Reply(f"Forget {whose} images, repost records and conversations in this chat? This cannot be undone.",
                     buttons=(Button("Yes, forget", f"{FORGET_PREFIX}{nonce}:yes"),
                              Button("Cancel", f"{FORGET_PREFIX}{nonce}:no")), kind="info")

    async def forget_confirmed(self, ctx: Context, data: str) -> Reply:
        """The answer to a /forget confirmation button: only the person who asked may press it."""
        nonce, _, answer = data.removeprefix(FORGET_PREFIX).partition(":")
        text = await self.store.get_state(FORGET_KIND, nonce)
        request = json.loads(text) if text else None
        if request is None or request["chat"] != ctx.chat.collection:
            return Reply("This request has expired; send /forget again.", kind="error")
        if request["requester"] != ctx.user.key:
            return Reply("Only the person who asked can answer this.", kind="error")
        await self.store.put_state(FORGET_KIND, nonce, "", 0)  # one answer per request
        if answer != "yes":
            return Reply("Nothing was forgotten.", replaces=True)
        counts = await self.erase(request["chat"], request["target"])
        whose = "your" if request["target"] == ctx.user.key else f"{request['name']}'s"
        return Reply(f"Forgot {whose} {plural(counts[0], 'image')}, {plural(counts[1], 'repost record')} and "
                     f"{plural(counts[2], 'conversation')} in this chat.", replaces=True)

    async def erase(self, chat: str, user_key: str) -> tuple[int, int, int]:
        """Remove what ``user_key`` contributed to ``chat``: images (and their files, unless another
        collection still uses them), repost records, conversation threads, membership."""
        images = [r for r in await self.engine.list_images(chat) if r.added_by == user_key]
        for record in images:
            await self.engine.remove(record.id)
        sightings = await self.engine.forget_sightings(chat, user_key)
        threads = await self.threads.forget(chat, user_key)
        await self.settings.forget_member(user_key, chat)
        log.info("forgot %s in %s: %d image(s), %d sighting(s), %d thread(s)", user_key, chat, len(images),
                 sightings, threads)
        return len(images), sightings, threads

    # -- inline search ------------------------------------------------------------------------------

    async def remember_file(self, platform: str, image_id: int, file_id: str) -> None:
        """The platform's id of a picture it already holds (a sent result), for inline answers."""
        await self.store.put_state(FILE_KIND, file_key(platform, image_id), file_id, None)

    async def inline_collections(self, member_of: Sequence[str]) -> tuple[str, ...]:
        """``global`` plus the chats among ``member_of`` (checked by the adapter) that allow inline search."""
        allowed = [c for c in member_of if (await self.settings.get(c)).inline]
        return (GLOBAL_COLLECTION, *dict.fromkeys(allowed))

    async def member_chats(self, user: User) -> list[str]:
        """Chats with inline search on where the user was seen (the adapter confirms membership)."""
        return await self.settings.chats_of(user.key)

    async def inline_search(self, user: User, query: str, collections: tuple[str, ...]) -> list[InlineHit]:
        """Images for an inline query, best first, limited to those the platform already holds."""
        if not query.strip():
            return []
        results = await self.engine.find_text(query, collections=collections, k=INLINE_RESULTS * 3)
        hits: list[InlineHit] = []
        for result in results:
            file_id = await self.store.get_state(FILE_KIND, file_key(user.platform, result.id))
            if file_id:
                hits.append(_hit(result, file_id))
            if len(hits) >= INLINE_RESULTS:
                break
        return hits

    @staticmethod
    def _require(allowed: bool, message: str) -> None:
        if not allowed:
            raise PermissionDeniedError(message)


def file_key(platform: str, image_id: int) -> str:
    """Where a platform's file id of an image is remembered (under :data:`FILE_KIND`)."""
    return f"{platform}:{image_id}"


def moved_file_key(key: str, ids: Mapping[int, int]) -> str | None:
    """A remembered file id's key in another gallery, where the same image has another id (``ids``:
    this gallery's id -> that one's); None when that gallery lacks the image."""
    platform, _, image_id = key.rpartition(":")
    moved = ids.get(int(image_id)) if image_id.isdigit() else None
    return None if moved is None else file_key(platform, moved)


def _hit(result: SearchResult, file_id: str) -> InlineHit:
    return InlineHit(result.id, file_id, result.label or f"#{result.id}", result.description, result.score)
