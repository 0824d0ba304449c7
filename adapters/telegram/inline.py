"""Inline search: ``@yourbot red car`` in any chat lists matching images as cached photos.

Telegram sends the typed words as an inline query; the answer is a list of photos it already
holds (the file ids of results the bot sent before), from the galleries the user may see: the
shared one plus the chats with inline search on where the user is a member (checked with
Telegram, since a user who left must not see a chat's images any more).
"""

from __future__ import annotations

import asyncio
import logging

from telegram import InlineQueryResultCachedPhoto, Update
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from adapters.telegram.messages import CAPTION_LIMIT, PLATFORM, trimmed
from core.chat import ChatService, User
from core.text import clean_text, shorten

log = logging.getLogger(__name__)
CACHE_S = 10  # Telegram keeps an answer this long; results change as the gallery grows
MAX_CHATS = 20  # membership checks per query, most recently seen chats first
_MEMBER = (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.MEMBER)


class InlineSearch:
    """The inline query handler, bound to one service."""

    def __init__(self, service: ChatService) -> None:
        self.service = service

    async def inline_query(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Answer an inline query with cached photos, personal to the asker, cached briefly."""
        query = update.inline_query
        if query is None:
            return
        user = User(PLATFORM, str(query.from_user.id), query.from_user.full_name)
        candidates = list(await self.service.inline_candidates(user))[:MAX_CHATS]
        checks = await asyncio.gather(*(self._is_member(context, chat, query.from_user.id) for chat in candidates))
        member_of = [chat for chat, ok in zip(candidates, checks, strict=True) if ok]
        hits = await self.service.inline_search(user, query.query, member_of=member_of)
        results = [
            InlineQueryResultCachedPhoto(
                id=str(hit.image_id), photo_file_id=hit.file_id, title=shorten(clean_text(hit.title), 100),
                description=shorten(clean_text(hit.description), 200) or None,
                caption=trimmed(clean_text(hit.title), CAPTION_LIMIT),
            )
            for hit in hits
        ]
        await query.answer(results, cache_time=CACHE_S, is_personal=True)

    @staticmethod
    async def _is_member(context: ContextTypes.DEFAULT_TYPE, collection: str, user_id: int) -> bool:
        chat_id = collection.removeprefix(f"{PLATFORM}:")
        try:
            member = await context.bot.get_chat_member(int(chat_id), user_id)
        except (TelegramError, ValueError):
            log.debug("membership of %s in %s unknown", user_id, collection, exc_info=True)
            return False
        return member.status in _MEMBER or bool(getattr(member, "is_member", False))
