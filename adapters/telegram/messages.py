"""Between Telegram objects and the service's shapes: contexts, attachments, replies."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Message, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import BadRequest, NetworkError

from core.chat import Chat, Context, Reply, ResultRef, User, result_ref

log = logging.getLogger(__name__)
PLATFORM = "telegram"
CAPTION_LIMIT = 1024
TEXT_LIMIT = 4096
_COMMAND = re.compile(r"^/(?P<name>[A-Za-z0-9_]+)(?:@(?P<bot>[A-Za-z0-9_]+))?(?:\s+(?P<args>.*))?$", re.DOTALL)


@dataclass(frozen=True)
class Attachment:
    """A photo or file in a message, described by what Telegram tells us before any download."""

    file_id: str
    file_size: int | None
    mime_type: str | None = None
    file_name: str | None = None


@dataclass(frozen=True)
class Command:
    name: str
    args: str


def parse_command(text: str | None, bot_username: str | None) -> Command | None:
    """``/cmd args`` or ``/cmd@this_bot args``; commands addressed to another bot are not ours."""
    match = _COMMAND.match((text or "").strip())
    if not match:
        return None
    addressed = match.group("bot")
    if addressed and bot_username and addressed.lower() != bot_username.lower():
        return None
    return Command(match.group("name").lower(), (match.group("args") or "").strip())


def context_of(update: Update, bot: Bot) -> Context:
    """The service context of an update; admin status is asked of Telegram only if needed."""
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    private = chat.type == ChatType.PRIVATE

    async def is_chat_admin() -> bool:
        if private:
            return True  # a private chat's gallery belongs to its one user
        member = await bot.get_chat_member(chat.id, user.id)
        return member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)

    return Context(
        Chat(PLATFORM, str(chat.id), private=private), User(PLATFORM, str(user.id), user.full_name), is_chat_admin
    )


def attachment_of(message: Message | None) -> Attachment | None:
    """The largest size of a photo, an animation, a video, a video note, a sticker or a document;
    None when the message carries none of them."""
    if message is None:
        return None
    if message.photo:
        largest = message.photo[-1]
        return Attachment(largest.file_id, largest.file_size, "image/jpeg")
    # An animation (a GIF, which Telegram turns into an MP4) also comes with a document: it goes first.
    if message.animation:
        anim = message.animation
        return Attachment(anim.file_id, anim.file_size, anim.mime_type or "video/mp4", anim.file_name)
    if message.video:
        return Attachment(message.video.file_id, message.video.file_size, message.video.mime_type or "video/mp4",
                          message.video.file_name)
    if message.video_note:
        return Attachment(message.video_note.file_id, message.video_note.file_size, "video/mp4")
    if message.sticker:
        sticker = message.sticker
        kind = "application/x-tgsticker" if sticker.is_animated else "video/webm" if sticker.is_video else "image/webp"
        return Attachment(sticker.file_id, sticker.file_size, kind)
    if message.document:
        doc = message.document
        return Attachment(doc.file_id, doc.file_size, doc.mime_type, doc.file_name)
    return None


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """The reply's buttons, one keyboard row per :attr:`Button.row`."""
    if not reply.buttons:
        return None
    rows = sorted({b.row for b in reply.buttons})
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.text, callback_data=b.data) for b in reply.buttons
                                  if b.row == row] for row in rows])


def result_of(message: Message | None) -> ResultRef | None:
    """The result a message of ours shows, from its buttons' data (Telegram sends a replied-to
    message with its keyboard); None for any other message."""
    markup = message.reply_markup if message is not None else None
    if markup is None:
        return None
    return result_ref(str(button.callback_data) for row in markup.inline_keyboard for button in row
                      if button.callback_data is not None)


def trimmed(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def refused_file(exc: NetworkError) -> bool:
    """Telegram refused what was sent (400, or 413 for a file too large), so the same again would fail.

    A time-out or a lost connection is not a refusal: the photo may have arrived after all.
    """
    return isinstance(exc, BadRequest) or "entity too large" in str(exc).lower()


Send = Callable[..., Awaitable[Message]]


async def send_reply(message: Message, reply: Reply, *, quote: bool) -> Message:
    """Answer ``message`` (see :func:`deliver`); returns the message sent."""
    return await deliver(reply, photo=partial(message.reply_photo, do_quote=quote),
                         document=partial(message.reply_document, do_quote=quote),
                         text=partial(message.reply_text, do_quote=quote))


async def send_to(bot: Bot, chat_id: int | str, reply: Reply) -> Message:
    """Send ``reply`` to a chat of its own (a private result); Forbidden when the user never
    opened a chat with the bot."""
    return await deliver(reply, photo=partial(bot.send_photo, chat_id), document=partial(bot.send_document, chat_id),
                         text=partial(bot.send_message, chat_id))


async def deliver(reply: Reply, *, photo: Send, document: Send, text: Send) -> Message:
    """A photo with a caption and buttons, or plain text.

    A photo Telegram refuses (its size or shape rules) goes again as a document, and one it
    refuses as a document too leaves the text alone: the user always gets the result.
    """
    if reply.image is not None:
        image, name = reply.image, reply.image_name or "match.jpg"
        caption, markup = trimmed(reply.text, CAPTION_LIMIT), keyboard(reply)
        attempts: tuple[tuple[str, Callable[[], Awaitable[Message]]], ...] = (
            ("a photo", lambda: photo(photo=InputFile(image, filename=name), caption=caption, reply_markup=markup)),
            ("a document", lambda: document(document=InputFile(image, filename=name), caption=caption,
                                            reply_markup=markup)),
        )
        for what, send in attempts:
            try:
                return await send()
            except NetworkError as exc:
                if not refused_file(exc):
                    raise
                log.warning("Telegram refused %s as %s (%s)", name, what, exc)
    return await text(text=trimmed(reply.text, TEXT_LIMIT), reply_markup=keyboard(reply))
