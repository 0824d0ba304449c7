"""Between discord.py objects and the service's shapes: contexts, attachments, replies."""

from __future__ import annotations

import io
from dataclasses import dataclass

import discord

from core.conversation import Chat, Context, Reply, User
from core.images import SUPPORTED_TEXT

PLATFORM = "discord"
EMBED_LIMIT = 4096
ACCENT = discord.Colour.from_rgb(88, 101, 242)


def chat_of(guild_id: int | None, user_id: int) -> Chat:
    """A server's gallery is ``discord:<guild id>``; each user's DMs have their own."""
    if guild_id is None:
        return Chat(PLATFORM, f"dm-{user_id}", private=True)
    return Chat(PLATFORM, str(guild_id), private=False)


def interaction_context(interaction: discord.Interaction) -> Context:
    """Context of a slash command or button; admin means Manage Messages in that channel."""
    user = interaction.user
    permissions = interaction.permissions  # resolved by Discord and sent with every interaction

    async def is_chat_admin() -> bool:
        return interaction.guild_id is None or permissions.manage_messages

    return Context(chat_of(interaction.guild_id, user.id), User(PLATFORM, str(user.id), user.display_name),
                   is_chat_admin)


def guild_id_of(message: discord.Message) -> int | None:
    """The server a message was sent in, None in DMs (also when the server is not cached)."""
    return message.guild.id if message.guild else getattr(message.channel, "guild_id", None)


def message_context(message: discord.Message) -> Context:
    """Context of a plain message; there admin status is never needed (no /delete by message)."""
    author = message.author
    return Context(chat_of(guild_id_of(message), author.id), User(PLATFORM, str(author.id), author.display_name))


@dataclass(frozen=True)
class Refusal:
    text: str


def check_attachment(attachment: discord.Attachment, max_bytes: int) -> Refusal | None:
    """Why we will not download an attachment, judged from its metadata alone."""
    content_type = (attachment.content_type or "").split(";")[0].strip()
    if content_type and not content_type.startswith("image/"):
        kind = content_type.split("/")[-1].upper()
        return Refusal(f"{attachment.filename} is {kind}, not an image; send a {SUPPORTED_TEXT} image.")
    if attachment.size > max_bytes:
        return Refusal(f"{attachment.filename} is {attachment.size / 1024 / 1024:.1f} MB; the limit is "
                       f"{max_bytes / 1024 / 1024:.0f} MB. Send a smaller image.")
    return None


def is_image_attachment(attachment: discord.Attachment) -> bool:
    content_type = attachment.content_type or ""
    return content_type.startswith("image/") or (not content_type and attachment.width is not None)


def embed_and_file(reply: Reply) -> tuple[discord.Embed, discord.File | None]:
    """An embed holding the reply text, with the image attached and shown inside it."""
    text = reply.text if len(reply.text) <= EMBED_LIMIT else reply.text[: EMBED_LIMIT - 1] + "\u2026"
    colour = discord.Colour.red() if reply.kind in ("error", "busy", "rate_limited") else ACCENT
    embed = discord.Embed(description=text, colour=colour)
    if reply.image is None:
        return embed, None
    name = reply.image_name or "match.jpg"
    embed.set_image(url=f"attachment://{name}")
    return embed, discord.File(io.BytesIO(reply.image), filename=name)
