"""Slash commands, context menus and message listeners, each thin: parse at the edge, defer, call the service.

Every command comes from the catalogue: a slash command whose options follow what it takes, or,
for commands on a result, a message context menu (menus.py). A reply to one of the bot's results
refines it with the reply's words.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from adapters.discord.embeds import EmbedMedia, attachments_of, embed_media_urls, embeds_of
from adapters.discord.groups import Read, deliver_privately, goes_privately, observe, private_for
from adapters.discord.menus import Respond, context_menu
from adapters.discord.messages import (
    CHOICE_OPTION,
    DISCORD_STYLE,
    PLATFORM,
    button_data,
    check_attachment,
    choices_of,
    guild_id_of,
    interaction_context,
    is_media_attachment,
    menu_name,
    message_context,
    shared_read,
)
from adapters.discord.views import APOLOGY, RESTARTING, send_fitting, upload_limit
from core.chat import ChatCommand, ChatService, CommandInput, InFlight, Reply, Takes, commands_for, result_ref

log = logging.getLogger(__name__)
_MENTION = re.compile(r"<@!?\d+>")
# Without the message-content intent Discord blanks server messages that do not mention the bot.
UNREAD_REPLY = ("I can't read replies here that don't mention me: reply again with @ON left on above the "
                "message box.")


def slash_command(command: ChatCommand, respond: Respond) -> app_commands.Command[Any, ..., None]:
    """The slash command of a catalogue entry: its options come from what the command takes."""
    takes = command.takes
    if takes.result:
        raise ValueError(f"/{command.name} needs a result, which a slash command cannot point at; "
                         "it is a message context menu")
    # One callback shape per kind of input: discord.py reads the options from the signature.
    offered: tuple[str, ...] = ()  # the values of a choice option (/watch on|off)
    if takes is Takes.PHOTO and command.by_id:
        async def photo_or_id(interaction: discord.Interaction, image: discord.Attachment | None = None,
                              id: app_commands.Range[int, 1] | None = None) -> None:
            await respond(interaction, command, CommandInput(image_id=id), image)

        callback: Callable[..., Coroutine[Any, Any, None]] = photo_or_id
        described = {"image": "The photo", "id": "Or the number of a gallery image, shown under each result"}
    elif takes is Takes.PHOTO:
        async def photo(interaction: discord.Interaction, image: discord.Attachment) -> None:
            await respond(interaction, command, CommandInput(), image)

        callback = photo
        described = {"image": "The photo"}
    elif takes is Takes.LABELLED_PHOTO:
        async def labelled_photo(interaction: discord.Interaction, image: discord.Attachment,
                                 label: app_commands.Range[str, 1, 200], description: str | None = None) -> None:
            await respond(interaction, command, CommandInput(label=label, description=description or ""), image)

        callback = labelled_photo
        described = {"image": "The photo", "label": "A short name for it", "description": "More about it (optional)"}
    elif takes is Takes.WORDS and command.names_user:
        # Discord picks a person better than words can name one: their id goes to the service.
        async def someone(interaction: discord.Interaction, user: discord.User | None = None) -> None:
            await respond(interaction, command, CommandInput(words=str(user.id) if user else ""), None)

        callback = someone
        described = {"user": "Someone else (admins only); leave it out for yourself"}
    elif takes is Takes.WORDS and choices_of(command):
        offered = choices_of(command)

        async def choice(interaction: discord.Interaction, setting: str | None = None) -> None:
            await respond(interaction, command, CommandInput(words=setting or ""), None)

        callback = choice
        described = {CHOICE_OPTION: "Leave it out to see how it is set here"}
    elif takes is Takes.WORDS:
        async def words(interaction: discord.Interaction, text: app_commands.Range[str, 1, 300]) -> None:
            await respond(interaction, command, CommandInput(words=text), None)

        callback = words
        described = {"text": "What to look for, e.g. red car"}
    elif takes is Takes.IMAGE_ID:
        async def image_id(interaction: discord.Interaction, id: app_commands.Range[int, 1]) -> None:
            await respond(interaction, command, CommandInput(image_id=id), None)

        callback = image_id
        described = {"id": "The image's number, shown under each result"}
    else:
        async def nothing(interaction: discord.Interaction) -> None:
            await respond(interaction, command, CommandInput(), None)

        callback = nothing
        described = {}
    slash: app_commands.Command[Any, ..., None] = app_commands.Command(
        name=command.name, description=command.title[:100], callback=callback)
    if offered:
        slash = app_commands.choices(**{CHOICE_OPTION: [app_commands.Choice(name=c, value=c) for c in offered]})(slash)
    return app_commands.describe(**described)(slash) if described else slash


class ClipbotCog(commands.Cog):
    """Every Discord command and listener of clipbot: the catalogue's slash commands, DMs and mentions."""

    def __init__(self, bot: commands.Bot, service: ChatService, *, max_file_bytes: int,
                 in_flight: InFlight, embed_media: EmbedMedia | None = None) -> None:
        self.bot = bot
        self.embed_media = embed_media or EmbedMedia()  # where GIF links' media may be fetched from
        self.service = service
        self.max_file_bytes = max_file_bytes
        self.video_max_bytes = service.video_max_bytes  # a video's own limit, when smaller
        self.in_flight = in_flight  # drained by DiscordPlatform.stop before the connection closes

    async def cog_load(self) -> None:
        for command in commands_for(PLATFORM):
            if command.takes.result:
                self.bot.tree.add_command(context_menu(command, self.respond))
            else:
                self.bot.tree.add_command(slash_command(command, self.respond))
        self.bot.tree.error(self.on_app_command_error)

    async def cog_unload(self) -> None:
        for command in commands_for(PLATFORM):
            if command.takes.result:
                self.bot.tree.remove_command(menu_name(command), type=discord.AppCommandType.message)
            else:
                self.bot.tree.remove_command(command.name)

    # -- slash commands, context menus and their forms ------------------------------------------

    async def respond(self, interaction: discord.Interaction, command: ChatCommand, args: CommandInput,
                      image: discord.Attachment | None, /, *, private: bool = False) -> None:
        """Defer ("thinking"), read the attachment, run the command, follow up with its reply
        (seen by the asker alone for ``asker_only`` commands, results where the server's results
        are private, or when ``private``)."""
        if self.in_flight.closing:
            await interaction.response.send_message(RESTARTING, ephemeral=True)
            return
        problem = missing_input(command, args, image)
        if problem:  # answered at once, to the asker alone: nothing was run
            await interaction.response.send_message(problem, ephemeral=True)
            return
        async with self.in_flight.track():
            private = private or command.asker_only or await private_for(self.service, interaction, command)
            await self._respond(interaction, command, args, image, private)

    async def _respond(self, interaction: discord.Interaction, command: ChatCommand, args: CommandInput,
                       image: discord.Attachment | None, private: bool) -> None:
        await interaction.response.defer(thinking=True, ephemeral=private)
        if image is not None:
            refusal = check_attachment(image, self.max_file_bytes, self.video_max_bytes)
            if refusal:
                await self._follow_up(interaction, Reply(refusal, kind="error"), ephemeral=private)
                return
            args = replace(args, photo=image.read)  # read by the service, past the rate limit
        reply = await self.service.execute(command, interaction_context(interaction), args)
        await self._follow_up(interaction, reply, ephemeral=private)

    async def on_app_command_error(self, interaction: discord.Interaction,
                                   error: app_commands.AppCommandError) -> None:
        """The one place command errors end: logged in full; the user gets a plain sentence."""
        log.error("while handling /%s", interaction.command.name if interaction.command else "?", exc_info=error)
        text = APOLOGY
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)

    # -- plain messages -------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """DMs, server messages that mention the bot or reply to it, and, for repost alerts, the
        photos and videos of every server message Discord lets the bot read."""
        if message.author.bot or self.bot.user is None or self.in_flight.closing:
            return
        async with self.in_flight.track():
            await self._on_message(message)

    async def _on_message(self, message: discord.Message) -> None:
        in_server = guild_id_of(message) is not None
        # One download per attachment serves both its match and its repost check. A forwarded
        # message's attachments count as the message's own.
        media = [(a, shared_read(a)) for a in attachments_of(message) if is_media_attachment(a)]
        if in_server and not self._addressed(message):
            await self._observe(message, media, embeds_of(message))
            return
        try:
            await self._answer(message, media)
        finally:  # after the answer, so that a repost check never holds it up
            if in_server:
                await self._observe(message, media, embeds_of(message))

    @commands.Cog.listener()
    async def on_message_edit(self, before: discord.Message, after: discord.Message) -> None:
        """Discord often shows a link's GIF some moments after the message came: its embeds arrive
        in an edit. Those new since ``before`` are checked for reposts (the attachments were)."""
        if after.author.bot or self.in_flight.closing or guild_id_of(after) is None:
            return
        shown = {url for embed in embeds_of(before) for url in embed_media_urls(embed)}
        fresh = [e for e in embeds_of(after) if not shown.intersection(embed_media_urls(e))]
        if fresh:
            async with self.in_flight.track():
                await self._observe(after, [], fresh)

    async def _observe(self, message: discord.Message, media: list[tuple[discord.Attachment, Read]],
                       embeds: list[discord.Embed]) -> None:
        await observe(self.service, message, media, max_bytes=self.max_file_bytes,
                      video_max_bytes=self.video_max_bytes, embedded=self._embedded(message, embeds))

    def _embedded(self, message: discord.Message, embeds: list[discord.Embed]) -> list[Read]:
        """Downloads of the embeds' media, each embed's first URL on the allow-list; the others are
        never fetched (a user chose them: see adapters/discord/embeds.py)."""
        reads: list[Read] = []
        for embed in embeds:
            urls = embed_media_urls(embed)
            allowed = [url for url in urls if self.embed_media.allows(url)]
            if allowed:
                reads.append(self.embed_media.reader(allowed[0], self.max_file_bytes, self.video_max_bytes))
            elif urls:
                log.debug("message %s: embed media %s not on the allow-list, not fetched", message.id, urls[0])
        return reads

    async def _answer(self, message: discord.Message, media: list[tuple[discord.Attachment, Read]]) -> None:
        ctx = message_context(message)
        if media or message.attachments:
            # A photo, GIF or video first; another file is refused by its type (or, with no type
            # given, read and judged by its content).
            attachment, read = media[0] if media else (message.attachments[0], message.attachments[0].read)
            refusal = check_attachment(attachment, self.max_file_bytes, self.video_max_bytes)
            if refusal:
                await self._reply(message, Reply(refusal, kind="error"))
                return
            await self._reply(message, await self.service.match(ctx, read))
            return
        text = _MENTION.sub("", message.content).strip()
        replied = await self._replied_to_me(message)
        if replied is not None:  # words for one of our messages: a refinement if it is a result
            if not text and not self._readable(message):
                await self._reply(message, Reply(UNREAD_REPLY, kind="error"))
                return
            ref = result_ref(button_data(replied))
            await self._reply(message, await self.service.refine(ctx, ref, text))
            return
        if text:
            await self._reply(message, await self.service.find(ctx, text))

    # -- helpers --------------------------------------------------------------------------------

    def _addressed(self, message: discord.Message) -> bool:
        me = self.bot.user
        if me is None:
            return False
        if any(user.id == me.id for user in message.mentions):
            return True
        ref = message.reference
        resolved = ref.resolved if ref is not None and ref.type is discord.MessageReferenceType.reply else None
        return isinstance(resolved, discord.Message) and resolved.author.id == me.id

    def _readable(self, message: discord.Message) -> bool:
        """Whether Discord sent this message's text: always in DMs and to a bot mentioned in it,
        in servers otherwise only with the message-content intent."""
        me = self.bot.user
        return (self.bot.intents.message_content or guild_id_of(message) is None
                or (me is not None and any(user.id == me.id for user in message.mentions)))

    async def _replied_to_me(self, message: discord.Message) -> discord.Message | None:
        """The message of this bot that ``message`` replies to (not forwards), if any."""
        ref, me = message.reference, self.bot.user
        if ref is None or ref.message_id is None or me is None or ref.type is not discord.MessageReferenceType.reply:
            return None
        replied = ref.resolved or ref.cached_message
        if replied is None:  # Discord did not include it: ask for it
            try:
                replied = await message.channel.fetch_message(ref.message_id)
            except discord.HTTPException:
                log.warning("could not fetch message %s, replied to in %s", ref.message_id, message.channel.id)
                return None
        return replied if isinstance(replied, discord.Message) and replied.author.id == me.id else None

    async def _follow_up(self, interaction: discord.Interaction, reply: Reply | None, *,
                         ephemeral: bool = False) -> None:
        if reply is None:  # a rate-limited user who was already told: just clear the "thinking"
            await interaction.delete_original_response()
            return
        await send_fitting(interaction.followup.send, reply, interaction.filesize_limit, ephemeral=ephemeral)

    async def _reply(self, message: discord.Message, reply: Reply | None) -> None:
        """Answer a message: in the channel, or, for a result where the server's results are
        private, by DM with a pointer in the channel."""
        if reply is None:
            return
        if await goes_privately(self.service, message, reply):
            await deliver_privately(message, reply)
            return
        await send_fitting(message.reply, reply, upload_limit(message.guild), mention_author=False)


def missing_input(command: ChatCommand, args: CommandInput, image: discord.Attachment | None) -> str | None:
    """Why a photo command cannot run with what it was given (its options are optional with ``by_id``)."""
    if not command.takes.photo or (image is None) != (args.image_id is None) or args.photo is not None:
        return None
    usage = DISCORD_STYLE.usage(command)
    if image is not None:
        return f"Give an image or an image number, not both: {usage}."
    return f"Give me an image, or the number of one of the gallery's images: {usage}."
