"""Thin Telegram handlers, each named after what it answers; the service does the work."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram import CallbackQuery, InputMediaPhoto, Message, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import ContextTypes

from adapters.telegram.messages import (
    CAPTION_LIMIT,
    TEXT_LIMIT,
    Attachment,
    Command,
    attachment_of,
    context_of,
    keyboard,
    parse_command,
    refusal_before_download,
    send_reply,
    trimmed,
)
from core.conversation import Context, Reply
from core.service import ChatService

log = logging.getLogger(__name__)
Ctx = ContextTypes.DEFAULT_TYPE
USAGE_ADD = "Send a photo with the caption /add label | description, or reply to a photo with it."
# Commands that take one photo (as its caption or as a reply to it), and the service method for each.
PHOTO_COMMANDS = {"match": "match", "describe": "describe", "colors": "colors", "colours": "colors",
                  "scores": "scores"}


def split_label(args: str) -> tuple[str, str]:
    """``label | description`` (the description is optional)."""
    label, _, description = args.partition("|")
    return label.strip(), description.strip()


class TelegramHandlers:
    """Handlers bound to one service; registered by :class:`TelegramPlatform`."""

    def __init__(self, service: ChatService, *, max_file_bytes: int) -> None:
        self.service = service
        self.max_file_bytes = max_file_bytes

    # -- commands sent as text --------------------------------------------------------------------

    async def start(self, update: Update, context: Ctx) -> None:
        await self._answer(update, self.service.help(context_of(update, context.bot)))

    help = start

    async def find(self, update: Update, context: Ctx) -> None:
        ctx = context_of(update, context.bot)
        await self._answer(update, await self.service.find(ctx, " ".join(context.args or [])))

    async def match(self, update: Update, context: Ctx) -> None:
        """``/match`` as a reply to a photo."""
        await self._on_replied_photo(update, context, "match")

    async def describe(self, update: Update, context: Ctx) -> None:
        """``/describe`` as a reply to a photo: BLIP's caption."""
        await self._on_replied_photo(update, context, "describe")

    async def colors(self, update: Update, context: Ctx) -> None:
        """``/colors`` as a reply to a photo: dominant colours and a palette strip."""
        await self._on_replied_photo(update, context, "colors")

    async def scores(self, update: Update, context: Ctx) -> None:
        """``/scores`` as a reply to a photo: every image's score as a chart."""
        await self._on_replied_photo(update, context, "scores")

    async def add(self, update: Update, context: Ctx) -> None:
        """``/add label | description`` as a reply to a photo."""
        message = update.effective_message
        replied = message.reply_to_message if message else None
        att = attachment_of(replied)
        if att is None:
            await self._answer(update, Reply(USAGE_ADD))
            return
        await self._add_attachment(update, context, att, " ".join(context.args or []))

    async def delete(self, update: Update, context: Ctx) -> None:
        args = context.args or []
        if len(args) != 1 or not args[0].lstrip("#").isdigit():
            await self._answer(update, Reply("Usage: /delete <id>, with the # number shown under a result."))
            return
        ctx = context_of(update, context.bot)
        await self._answer(update, await self.service.delete(ctx, int(args[0].lstrip("#"))))

    async def list(self, update: Update, context: Ctx) -> None:
        await self._answer(update, await self.service.list(context_of(update, context.bot)))

    async def stats(self, update: Update, context: Ctx) -> None:
        await self._answer(update, await self.service.stats(context_of(update, context.bot)))

    # -- photos and files -----------------------------------------------------------------------

    async def attachment(self, update: Update, context: Ctx) -> None:
        """A photo or file: its caption decides (/add, /match, a mention); in private, a match."""
        message = update.effective_message
        att = attachment_of(message)
        if message is None or att is None or update.effective_chat is None:
            return
        command = parse_command(message.caption, context.bot.username)
        private = update.effective_chat.type == "private"
        if command and command.name == "add":
            await self._add_attachment(update, context, att, command.args)
        elif command and command.name in PHOTO_COMMANDS:
            await self._photo_command(update, context, att, command.name)
        elif private or self._mentions_me(message, context) or self._replies_to_me(message, context):
            await self._photo_command(update, context, att, "match")
        # Any other group photo is none of our business.

    async def text(self, update: Update, context: Ctx) -> None:
        """Plain text in private, or a reply to one of our messages in a group: search for it."""
        message = update.effective_message
        if message is None or not message.text or update.effective_chat is None:
            return
        if update.effective_chat.type == "private" or self._replies_to_me(message, context):
            await self._answer(update, await self.service.find(context_of(update, context.bot), message.text))

    async def unknown(self, update: Update, context: Ctx) -> None:
        await self._answer(update, Reply("I don't know that command; /help lists what I can do."))

    # -- the "next match" button ----------------------------------------------------------------

    async def next_match(self, update: Update, context: Ctx) -> None:
        """The "Next match" button: the message is edited in place to show the next result."""
        pressed = await self._button(update, context, self.service.page)
        if pressed is None:
            return
        query, message, reply = pressed
        try:
            if reply.image is not None and message.photo:
                media = InputMediaPhoto(reply.image, caption=trimmed(reply.text, CAPTION_LIMIT))
                await query.edit_message_media(media, reply_markup=keyboard(reply))
            elif message.photo:
                await query.edit_message_caption(trimmed(reply.text, CAPTION_LIMIT), reply_markup=keyboard(reply))
            else:
                await query.edit_message_text(trimmed(reply.text, TEXT_LIMIT), reply_markup=keyboard(reply))
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():  # a double tap is harmless
                raise
        await query.answer()

    async def top(self, update: Update, context: Ctx) -> None:
        """The "Top N" button: the whole result list as one collage, in a new message."""
        pressed = await self._button(update, context, self.service.collage)
        if pressed is not None:
            query, message, reply = pressed
            await query.answer()
            await send_reply(message, reply, quote=True)

    async def _button(self, update: Update, context: Ctx, answer: Callable[[Context, str], Awaitable[Reply]]
                      ) -> tuple[CallbackQuery, Message, Reply] | None:
        """The service's answer to a pressed button; an expired one is told in a pop-up."""
        query = update.callback_query
        if query is None or query.data is None or not isinstance(query.message, Message):
            return None
        reply = await answer(context_of(update, context.bot), query.data)
        if reply.kind == "error":
            await query.answer(reply.text, show_alert=True)
            return None
        return query, query.message, reply

    # -- errors -----------------------------------------------------------------------------------

    async def error(self, update: object, context: Ctx) -> None:
        """The one place errors end: logged in full, and the user hears something went wrong."""
        log.error("while handling an update", exc_info=context.error)
        if isinstance(update, Update) and update.effective_chat is not None:
            try:
                await context.bot.send_message(
                    update.effective_chat.id, "Sorry, something went wrong on my side. Please try again."
                )
            except TelegramError:
                log.warning("could not tell the user about the error", exc_info=True)

    # -- helpers ----------------------------------------------------------------------------------

    async def _on_replied_photo(self, update: Update, context: Ctx, name: str) -> None:
        replied = update.effective_message.reply_to_message if update.effective_message else None
        att = attachment_of(replied)
        if att is None:
            await self._answer(update, Reply(f"Reply /{name} to a photo, or send a photo with /{name} as its caption."))
            return
        await self._photo_command(update, context, att, name)

    async def _photo_command(self, update: Update, context: Ctx, att: Attachment, name: str) -> None:
        data = await self._download(update, context, att)
        if data is not None:
            ctx = context_of(update, context.bot)
            await self._answer(update, await getattr(self.service, PHOTO_COMMANDS[name])(ctx, data))

    async def _add_attachment(self, update: Update, context: Ctx, att: Attachment, args: str) -> None:
        label, description = split_label(args)
        if not label:
            await self._answer(update, Reply(USAGE_ADD))
            return
        data = await self._download(update, context, att)
        if data is not None:
            ctx: Context = context_of(update, context.bot)
            await self._answer(update, await self.service.add(ctx, data, label, description))

    async def _download(self, update: Update, context: Ctx, att: Attachment) -> bytes | None:
        refusal = refusal_before_download(att, self.max_file_bytes)
        if refusal:
            await self._answer(update, Reply(refusal, kind="error"))
            return None
        try:
            tg_file = await context.bot.get_file(att.file_id)
            return bytes(await tg_file.download_as_bytearray())
        except BadRequest as exc:
            if "too big" in str(exc).lower():
                await self._answer(update, Reply("That file is too large for me to download.", kind="error"))
                return None
            raise

    async def _answer(self, update: Update, reply: Reply | None) -> None:
        message = update.effective_message
        if reply is None or message is None:
            return
        private = update.effective_chat is not None and update.effective_chat.type == "private"
        await send_reply(message, reply, quote=not private)

    @staticmethod
    def _mentions_me(message: Message, context: Ctx) -> bool:
        username = context.bot.username
        text = message.caption or message.text or ""
        return bool(username) and f"@{username}".lower() in text.lower()

    @staticmethod
    def _replies_to_me(message: Message, context: Ctx) -> bool:
        replied = message.reply_to_message
        return bool(replied and replied.from_user and replied.from_user.id == context.bot.id)


__all__ = ["Command", "TelegramHandlers", "split_label"]
