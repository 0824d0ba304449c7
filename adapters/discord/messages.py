"""Between discord.py objects and the service's shapes: contexts, attachments, replies."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Awaitable, Callable

import discord

from core.chat import Chat, ChatCommand, ChatService, Context, Reply, ResultRef, Takes, User, result_ref
from core.media import VIDEO_MIME_TYPES, refusal_before_download

PLATFORM = "discord"
EMBED_LIMIT = 4096
ACCENT = discord.Colour.from_rgb(88, 101, 242)
# A catalogue command whose text usage is a choice of words ("on|off") gets a slash option offering them.
_CHOICES = re.compile(r"[a-z]+(?:\|[a-z]+)+")
CHOICE_OPTION = "setting"
USER_OPTION = "user"


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
        if command.takes is Takes.WORDS and command.names_user:
            return f"/{command.name} [{USER_OPTION}]"
        if choices_of(command):
            return f"/{command.name} [{command.usage}]"
        text = f"/{command.name} {OPTIONS[command.takes]}".rstrip()
        return f"{text}, or /{command.name} id" if command.by_id else text

    def notes(self, *, private: bool) -> list[str]:
        return ["In DMs, send me a photo, a GIF or a video to match it; in servers, mention me with one or reply "
                "to my messages.",
                "Reply to one of my results with words (at night, but red, -people) to refine it; in servers, "
                "keep the reply's @mention on so that I can read it."]

    def send_photo(self) -> str:
        return "send me a photo, a GIF or a video"

    def how_to_add(self) -> str:
        return "To add an image, use /add image label [description]."

    def watch_note(self) -> str:
        return ("I see the images of every channel I can read; a channel I can't read is not watched. "
                "Messages that neither mention me nor reply to me need the Message Content intent "
                "(CLIPBOT_DISCORD_MESSAGE_CONTENT=true) for their attachments.")

    def refine_usage(self) -> str:
        return ('Reply to a result with words to refine it, or right-click it > Apps > Refine with words; '
                'for example "at night", "but red" or "-people".')

    def not_a_result(self) -> str:
        return ("That message isn't one of my results. Reply to a result (a picture with a score under it), "
                "or right-click it > Apps, to refine it; or send a new search.")


DISCORD_STYLE = DiscordStyle()


def choices_of(command: ChatCommand) -> tuple[str, ...]:
    """The words a Takes.WORDS command chooses between ("on", "off"), from its usage; () for free words."""
    if command.takes is not Takes.WORDS or not _CHOICES.fullmatch(command.usage):
        return ()
    return tuple(command.usage.split("|"))


def service_of(interaction: discord.Interaction) -> ChatService:
    """The chat service of the bot an interaction reached (buttons have no other way to it)."""
    service = getattr(interaction.client, "service", None)
    if not isinstance(service, ChatService):
        raise TypeError(f"{type(interaction.client).__name__} carries no chat service")
    return service


def is_moderator(permissions: discord.Permissions) -> bool:
    """A server's admin for clipbot: Manage Server or Manage Messages (Administrator has both)."""
    return permissions.administrator or permissions.manage_guild or permissions.manage_messages


def interaction_context(interaction: discord.Interaction) -> Context:
    """Context of a slash command or button; admin means Manage Server or Manage Messages there."""
    user = interaction.user
    permissions = interaction.permissions  # resolved by Discord and sent with every interaction

    async def is_chat_admin() -> bool:
        return interaction.guild_id is None or is_moderator(permissions)

    return Context(chat_of(interaction.guild_id, user.id), User(PLATFORM, str(user.id), user.display_name),
                   is_chat_admin, help_style=DISCORD_STYLE)


def guild_id_of(message: discord.Message) -> int | None:
    """The server a message was sent in, None in DMs (also when the server is not cached)."""
    return message.guild.id if message.guild else getattr(message.channel, "guild_id", None)


def message_context(message: discord.Message) -> Context:
    """Context of a plain message; there admin status is never needed (admin commands are slash commands)."""
    author = message.author
    return Context(chat_of(guild_id_of(message), author.id), User(PLATFORM, str(author.id), author.display_name),
                   help_style=DISCORD_STYLE)


def button_data(message: discord.Message) -> list[str]:
    """The custom ids of a message's buttons, row by row (core.chat.threads.result_ref reads them)."""
    rows = getattr(message, "components", ())  # discord.py leaves it unset when Discord sent none
    return [custom_id for row in rows for child in getattr(row, "children", ())
            if isinstance(custom_id := getattr(child, "custom_id", None), str)]


def result_of(client: discord.Client, message: discord.Message) -> ResultRef | None:
    """The result a message of this bot shows (None: someone else's message, or not a result)."""
    me = client.user
    if me is None or message.author.id != me.id:
        return None
    return result_ref(button_data(message))


def jump_url(message: discord.Message) -> str:
    """The link to a message, also where discord.py does not hold its server (discord.py's own
    ``jump_url`` then says ``@me``, a DM's link)."""
    guild_id = guild_id_of(message)
    where = guild_id if guild_id is not None else "@me"
    return f"https://discord.com/channels/{where}/{message.channel.id}/{message.id}"


def check_attachment(attachment: discord.Attachment, max_bytes: int, video_max_bytes: int | None = None) -> str | None:
    """Why we will not download an attachment, judged from its metadata alone: photos, GIFs and
    MP4/WebM videos pass (the service tells them apart by content), up to ``max_bytes``
    (``video_max_bytes`` for a video, when smaller)."""
    return refusal_before_download(attachment.content_type, attachment.size, max_bytes, attachment.filename,
                                   video_max_bytes=video_max_bytes)


def is_media_attachment(attachment: discord.Attachment) -> bool:
    """A photo, GIF or video by what Discord says of it (an attachment without a type: by its size in pixels)."""
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    return (content_type.startswith("image/") or content_type in VIDEO_MIME_TYPES
            or (not content_type and attachment.width is not None))


def shared_read(attachment: discord.Attachment) -> Callable[[], Awaitable[bytes]]:
    """``attachment.read`` that downloads once however often it is called (a match and a repost
    check of one attachment); the bytes live as long as the function does."""
    download: asyncio.Future[bytes] | None = None

    async def read() -> bytes:
        nonlocal download
        if download is None:
            download = asyncio.ensure_future(attachment.read())
        return await asyncio.shield(download)

    return read


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

