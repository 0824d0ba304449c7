"""Thin Telegram handlers, each named after what it answers; the service does the work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from functools import partial
from typing import Any

from telegram import CallbackQuery, InputMediaPhoto, Message, Update
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, TelegramError
from telegram.ext import ContextTypes

from adapters.telegram.messages import (
    CAPTION_LIMIT,
    PLATFORM,
    TEXT_LIMIT,
    Attachment,
    Command,
    attachment_of,
    context_of,
    keyboard,
    parse_command,
    refused_file,
    result_of,
    send_reply,
    send_to,
    trimmed,
)
from core.chat import (
    FORGET_PREFIX,
    LIKE_PREFIX,
    MATCH,
    NEXT_PREFIX,
    NOT_PREFIX,
    TOP_PREFIX,
    Chat,
    ChatCommand,
    ChatService,
    CommandInput,
    Context,
    Reply,
    Takes,
    command_named,
    image_ref,
)
from core.errors import InputError
from core.media import refusal_before_download

log = logging.getLogger(__name__)
Ctx = ContextTypes.DEFAULT_TYPE
Handler = Callable[[Update, Ctx], Coroutine[Any, Any, None]]
USAGE_ADD = "Send a photo with the caption /add label | description, or reply to a photo with it."
ALERT_LIMIT = 200  # Telegram's callback answers (pop-ups) take at most 200 characters
BUTTON_PATTERN = f"^({NEXT_PREFIX}|{TOP_PREFIX}|{LIKE_PREFIX}|{NOT_PREFIX}|{FORGET_PREFIX})"


def photo_usage(command: ChatCommand) -> str:
    """How to give a photo command its photo, for a user who sent it without one."""
    if command.takes is Takes.LABELLED_PHOTO:
        return USAGE_ADD
    return f"Reply /{command.name} to a photo, or send a photo with /{command.name} as its caption."


class TelegramHandlers:
    """Handlers bound to one service; registered by :class:`TelegramPlatform`."""

    def __init__(self, service: ChatService, *, max_file_bytes: int) -> None:
        self.service = service
        self.max_file_bytes = max_file_bytes

    # -- commands sent as text --------------------------------------------------------------------

    def command(self, command: ChatCommand) -> Handler:
        """The handler of a catalogue command sent as text; a photo command takes the replied-to photo."""

        async def handle(update: Update, context: Ctx) -> None:
            text = " ".join(context.args or [])
            message = update.effective_message
            replied = message.reply_to_message if message else None
            if command.takes.result:
                if replied is None:
                    await self._answer(update, Reply(f"Reply /{command.name} to one of my results.", kind="error"))
                    return
                args = replace(CommandInput.from_text(command.takes, text), result=result_of(replied))
                await self._execute(update, context, command, args)
                return
            if not command.takes.photo:
                sender = replied.from_user if replied is not None else None
                if command.names_user and not text and sender is not None and not sender.is_bot:
                    text = str(sender.id)  # "/forget" replied to someone's message: them
                await self._execute(update, context, command, CommandInput.from_text(command.takes, text))
                return
            att = attachment_of(replied)
            if att is None and command.by_id and image_ref(text) is not None:  # /match #12
                await self._execute(update, context, command, CommandInput.from_text(command.takes, text))
                return
            if att is None:
                await self._answer(update, Reply(photo_usage(command)))
                return
            await self._photo_command(update, context, att, command, text)

        handle.__name__ = handle.__qualname__ = command.name  # logs and tracebacks name the command
        return handle

    # -- photos and files -----------------------------------------------------------------------

    async def attachment(self, update: Update, context: Ctx) -> None:
        """A photo or file: its caption decides (/add, /match, a mention); in private, a match."""
        message = update.effective_message
        att = attachment_of(message)
        if message is None or att is None or update.effective_chat is None:
            return
        parsed = parse_command(message.caption, context.bot.username)
        command = command_named(parsed.name) if parsed else None
        private = update.effective_chat.type == "private"
        # One download at most, shared by the reply and a repost check of the same message.
        download = self._downloader(context, att)
        if not private:
            ctx = context_of(update, context.bot)
            await self.service.seen(ctx)
            if self._refusal(att) is None:
                await self.service.observe(ctx, download, message_id=str(message.message_id), link=message.link,
                                           alert=partial(self._alert, message))
        if parsed and command and command.takes.photo:
            await self._photo_command(update, context, att, command, parsed.args, download)
        elif private or self._mentions_me(message, context) or self._replies_to_me(message, context):
            await self._photo_command(update, context, att, MATCH, "", download)
        # Any other group photo is none of our business.

    async def text(self, update: Update, context: Ctx) -> None:
        """Words replied to one of our results refine it; other plain text in private is searched."""
        message = update.effective_message
        if message is None or not message.text or update.effective_chat is None:
            return
        ctx = context_of(update, context.bot)
        if update.effective_chat.type != "private":
            await self.service.seen(ctx)
        if self._replies_to_me(message, context):
            await self._answer(update, await self.service.refine(ctx, result_of(message.reply_to_message),
                                                                 message.text), ctx)
        elif update.effective_chat.type == "private":
            await self._answer(update, await self.service.find(ctx, message.text), ctx)

    async def migration(self, update: Update, context: Ctx) -> None:
        """A group became a supergroup, under a new chat id: its gallery moves along.

        Telegram sends two notices (one in each chat); the first moves the gallery, the second
        finds nothing left to move.
        """
        message = update.effective_message
        if message is None:
            return
        if message.migrate_to_chat_id:
            old, new = message.chat_id, message.migrate_to_chat_id
        elif message.migrate_from_chat_id:
            old, new = message.migrate_from_chat_id, message.chat_id
        else:
            return
        await self.service.move_chat(Chat(PLATFORM, str(old), private=False), Chat(PLATFORM, str(new), private=False))

    async def unknown(self, update: Update, context: Ctx) -> None:
        await self._answer(update, Reply("I don't know that command; /help lists what I can do."))

    # -- the buttons under a result ----------------------------------------------------------------

    async def result_button(self, update: Update, context: Ctx) -> None:
        """Any button under a result. "Next match" edits the message in place; "Top N", "More like
        this" and "Not this" answer with a new message replying to the result."""
        query = update.callback_query
        if query is None or query.data is None or not isinstance(query.message, Message):
            return
        message = query.message
        ctx = context_of(update, context.bot)
        reply = await self.service.press(ctx, query.data)
        if reply is None:  # a user already told to slow down
            await query.answer()
            return
        if reply.kind in ("error", "rate_limited", "busy"):
            await query.answer(trimmed(reply.text, ALERT_LIMIT), show_alert=True)
            return
        try:
            await self._show_pressed(update, query, message, reply, ctx)
        except ChatMigrated as exc:
            # The group became a supergroup (its gallery moved along, see migration()): Telegram now
            # refuses every call naming the old group, edits of its old messages included. The answer
            # goes to the supergroup as a new message rather than into the generic apology.
            log.info("a button in upgraded group %s: answering in %s", message.chat_id, exc.new_chat_id)
            await self._remember_picture(reply, await send_to(message.get_bot(), exc.new_chat_id, reply))
            with contextlib.suppress(TelegramError):
                await query.answer()

    async def _show_pressed(self, update: Update, query: CallbackQuery, message: Message, reply: Reply,
                            ctx: Context) -> None:
        """A pressed button's answer: a new message replying to the result, or the result edited in place."""
        if not reply.replaces:
            await query.answer()
            await self._deliver(update, message, reply, quote=True, ctx=ctx)
            return
        try:
            if reply.image is not None and message.photo:
                media = InputMediaPhoto(reply.image, caption=trimmed(reply.text, CAPTION_LIMIT))
                edited = await query.edit_message_media(media, reply_markup=keyboard(reply))
                await self._remember_picture(reply, edited if isinstance(edited, Message) else None)
            elif message.photo:
                await query.edit_message_caption(trimmed(reply.text, CAPTION_LIMIT), reply_markup=keyboard(reply))
            else:
                await query.edit_message_text(trimmed(reply.text, TEXT_LIMIT), reply_markup=keyboard(reply))
        except NetworkError as exc:
            if not refused_file(exc):
                raise
            if "not modified" not in str(exc).lower():  # a double tap is harmless
                # Telegram would not put this picture in place: the match comes as a new message,
                # with send_reply's own fallbacks, rather than not at all.
                log.warning("Telegram refused to show the next match in place (%s); sending it anew", exc)
                await send_reply(message, reply, quote=True)
        await query.answer()

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

    async def _photo_command(self, update: Update, context: Ctx, att: Attachment, command: ChatCommand,
                             text: str, download: Callable[[], Awaitable[bytes]] | None = None) -> None:
        args = CommandInput.from_text(command.takes, text)
        if command.takes is Takes.LABELLED_PHOTO and not args.label:
            await self._answer(update, Reply(USAGE_ADD))  # before the download, which would be wasted
            return
        refusal = self._refusal(att)
        if refusal:
            await self._answer(update, Reply(refusal, kind="error"))
            return
        # The service downloads it, once the user's rate limit lets the request through.
        await self._execute(update, context, command, replace(args, photo=download or self._downloader(context, att)))

    def _refusal(self, att: Attachment) -> str | None:
        return refusal_before_download(att.mime_type, att.file_size, self.max_file_bytes,
                                       video_max_bytes=self.service.video_max_bytes)

    async def _execute(self, update: Update, context: Ctx, command: ChatCommand, args: CommandInput) -> None:
        ctx = context_of(update, context.bot)
        await self._answer(update, await self.service.execute(command, ctx, args), ctx)

    @staticmethod
    def _downloader(context: Ctx, att: Attachment) -> Callable[[], Awaitable[bytes]]:
        """The attachment's bytes, fetched on the first call only (later calls share them)."""
        fetched: list[bytes] = []
        lock = asyncio.Lock()

        async def download() -> bytes:
            async with lock:
                if not fetched:
                    fetched.append(await fetch())
                return fetched[0]

        async def fetch() -> bytes:
            try:
                tg_file = await context.bot.get_file(att.file_id)
                return bytes(await tg_file.download_as_bytearray())
            except BadRequest as exc:
                if "too big" in str(exc).lower():
                    raise InputError("That file is too large for me to download.") from None
                raise

        return download

    async def _answer(self, update: Update, reply: Reply | None, ctx: Context | None = None) -> None:
        message = update.effective_message
        if reply is None or message is None:
            return
        private = update.effective_chat is not None and update.effective_chat.type == "private"
        await self._deliver(update, message, reply, quote=not private, ctx=ctx)

    async def _deliver(self, update: Update, message: Message, reply: Reply, *, quote: bool,
                       ctx: Context | None = None) -> None:
        """Send a reply where it belongs: in the chat, or, for a result in a group whose results are
        private, to the asker's private chat with a one-line pointer in the group. ``ctx`` is the
        update's one Context, where the handler made it already."""
        chat, user = update.effective_chat, update.effective_user
        if (reply.kind == "result" and chat is not None and user is not None and chat.type != "private"
                and (await self.service.chat_settings(ctx or context_of(update, message.get_bot()))).private_results):
            await self._deliver_privately(message, user.id, user.first_name, reply)
            return
        await self._remember_picture(reply, await send_reply(message, reply, quote=quote))

    async def _deliver_privately(self, message: Message, user_id: int, name: str, reply: Reply) -> None:
        bot = message.get_bot()
        try:
            sent = await send_to(bot, user_id, reply)
        except Forbidden:  # they never opened a chat with the bot: Telegram won't let it write first
            await message.reply_text(
                f"{name}, results here come privately, but I can't message you yet: open a chat with me "
                f"(https://t.me/{bot.username}), press Start, then ask again.", do_quote=True)
            return
        await self._remember_picture(reply, sent)
        await message.reply_text(f"{name}, I sent you the result privately.", do_quote=True)

    @staticmethod
    async def _alert(message: Message, text: str) -> None:
        """A repost alert, as a reply to the reposted image."""
        await message.reply_text(trimmed(text, TEXT_LIMIT), do_quote=True)

    async def _remember_picture(self, reply: Reply, sent: Message | None) -> None:
        """A sent result's picture is now a photo Telegram holds: inline search may offer it."""
        if sent is not None and sent.photo and reply.kind == "result" and reply.result_id is not None:
            await self.service.remember_file(PLATFORM, reply.result_id, sent.photo[-1].file_id)

    @staticmethod
    def _mentions_me(message: Message, context: Ctx) -> bool:
        username = context.bot.username
        text = message.caption or message.text or ""
        return bool(username) and f"@{username}".lower() in text.lower()

    @staticmethod
    def _replies_to_me(message: Message, context: Ctx) -> bool:
        replied = message.reply_to_message
        return bool(replied and replied.from_user and replied.from_user.id == context.bot.id)


__all__ = ["Command", "TelegramHandlers"]
