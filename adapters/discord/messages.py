"""Between discord.py objects and the service's shapes: contexts, attachments, replies."""

from __future__ import annotations

import io

import discord

from core.commands import ChatCommand, Takes
from core.conversation import Chat, Context, Reply, User
from core.images import refusal_before_download
from core.service import ChatService
from core.threads import ResultRef, result_ref

PLATFORM = "discord"
EMBED_LIMIT = 4096
ACCENT = discord.Colour.from_rgb(88, 101, 242)


def chat_of(guild_id: int | None, user_id: int) -> Chat:
    """A server's gallery is ``discord:<guild id>``; each user's DMs have their own."""
    if guild_id is None:
        return Chat(PLATFORM, f"dm-{user_id}", private=True)
    return Chat(PLATFORM, str(guild_id), private=False)


# How each kind of input is given: a slash command's options (the callbacks in cog.py declare
# them), or, for commands on one of the bot's results, the message context menu (menus.py).
OPTIONS = {
    Takes.NOTHING: "", Takes.WORDS: "text", Takes.PHOTO: "image",
    Takes.LABELLED_PHOTO: "image label [description]", Takes.IMAGE_ID: "id",
    Takes.RESULT: "Right-click (or long-press) a result \u2192 Apps \u2192 {menu}",
    Takes.RESULT_WORDS: "Right-click (or long-press) a result \u2192 Apps \u2192 {menu}, then type your words",
}
# Context menu names read as a menu entry, not a command: "Similar images", not "similar".
# A command missing here is named after itself ("Refine"); Discord allows 1-32 characters.
MENU_NAME_LIMIT = 32


def menu_name(command: ChatCommand) -> str:
    """The message context menu entry of a command on a result (Takes.RESULT, Takes.RESULT_WORDS)."""
    return (command.menu or command.name.capitalize())[:MENU_NAME_LIMIT]


class DiscordStyle:
    """How Discord writes commands in help: slash commands with named options, and the context
    menu entries of the commands on a result."""

    front_end = PLATFORM

    def usage(self, command: ChatCommand) -> str:
        if command.takes.result:
            return OPTIONS[command.takes].format(menu=menu_name(command))
        text = f"/{command.name} {OPTIONS[command.takes]}".rstrip()
        return f"{text}, or /{command.name} id" if command.by_id else text

    def notes(self, *, private: bool) -> list[str]:
        return ["In DMs, send me a photo to match it; in servers, mention me with a photo or reply to my messages.",
                "Reply to one of my results with words (at night, but red, -people) to refine it; in servers, "
                "keep the reply's @mention on so that I can read it."]

    def send_photo(self) -> str:
        return "send me a photo"

    def how_to_add(self) -> str:
        return "To add an image, use /add image label [description]."


DISCORD_STYLE = DiscordStyle()


def service_of(interaction: discord.Interaction) -> ChatService:
    """The chat service of the bot an interaction reached (buttons have no other way to it)."""
    service = getattr(interaction.client, "service", None)
    if not isinstance(service, ChatService):
        raise TypeError(f"{type(interaction.client).__name__} carries no chat service")
    return service


def interaction_context(interaction: discord.Interaction) -> Context:
    """Context of a slash command or button; admin means Manage Messages in that channel."""
    user = interaction.user
    permissions = interaction.permissions  # resolved by Discord and sent with every interaction

    async def is_chat_admin() -> bool:
        return interaction.guild_id is None or permissions.manage_messages

    return Context(chat_of(interaction.guild_id, user.id), User(PLATFORM, str(user.id), user.display_name),
                   is_chat_admin, help_style=DISCORD_STYLE)


def guild_id_of(message: discord.Message) -> int | None:
    """The server a message was sent in, None in DMs (also when the server is not cached)."""
    return message.guild.id if message.guild else getattr(message.channel, "guild_id", None)


def message_context(message: discord.Message) -> Context:
    """Context of a plain message; there admin status is never needed (no /delete by message)."""
    author = message.author
    return Context(chat_of(guild_id_of(message), author.id), User(PLATFORM, str(author.id), author.display_name),
                   help_style=DISCORD_STYLE)


def button_data(message: discord.Message) -> list[str]:
    """The custom ids of a message's buttons, row by row (core.threads.result_ref reads them)."""
    rows = getattr(message, "components", ())  # discord.py leaves it unset when Discord sent none
    return [custom_id for row in rows for child in getattr(row, "children", ())
            if isinstance(custom_id := getattr(child, "custom_id", None), str)]


def result_of(client: discord.Client, message: discord.Message) -> ResultRef | None:
    """The result a message of this bot shows (None: someone else's message, or not a result)."""
    me = client.user
    if me is None or message.author.id != me.id:
        return None
    return result_ref(button_data(message))


def check_attachment(attachment: discord.Attachment, max_bytes: int) -> str | None:
    """Why we will not download an attachment, judged from its metadata alone."""
    return refusal_before_download(attachment.content_type, attachment.size, max_bytes, attachment.filename)


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

