"""Slash commands and message listeners, each thin: parse at the edge, defer, call the service."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands
from discord.ext import commands

from adapters.discord.messages import (
    check_attachment,
    embed_and_file,
    guild_id_of,
    interaction_context,
    is_image_attachment,
    message_context,
)
from adapters.discord.views import view_for
from core.conversation import Context, Reply
from core.service import ChatService

log = logging.getLogger(__name__)
_MENTION = re.compile(r"<@!?\d+>")


class ClipbotCog(commands.Cog):
    """Every Discord command and listener of clipbot."""

    def __init__(self, bot: commands.Bot, service: ChatService, *, max_file_bytes: int) -> None:
        self.bot = bot
        self.service = service
        self.max_file_bytes = max_file_bytes

    # -- slash commands -------------------------------------------------------------------------

    @app_commands.command(name="match", description="Find the closest image to a photo")
    @app_commands.describe(image="The photo to match")
    async def match(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        await self._photo_command(interaction, image, self.service.match)

    @app_commands.command(name="describe", description="Describe a photo in words")
    @app_commands.describe(image="The photo to describe")
    async def describe(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        await self._photo_command(interaction, image, self.service.describe)

    @app_commands.command(name="colors", description="A photo's dominant colours")
    @app_commands.describe(image="The photo")
    async def colors(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        await self._photo_command(interaction, image, self.service.colors)

    @app_commands.command(name="scores", description="Score a photo against every image, as a chart")
    @app_commands.describe(image="The photo")
    async def scores(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        await self._photo_command(interaction, image, self.service.scores)

    @app_commands.command(name="find", description="Find an image by label, description or meaning")
    @app_commands.describe(text="What to look for, e.g. red car")
    async def find(self, interaction: discord.Interaction, text: app_commands.Range[str, 1, 300]) -> None:
        await interaction.response.defer(thinking=True)
        await self._follow_up(interaction, await self.service.find(interaction_context(interaction), text))

    @app_commands.command(name="add", description="Add a photo to this server's gallery")
    @app_commands.describe(image="The photo", label="A short name for it", description="More about it (optional)")
    async def add(self, interaction: discord.Interaction, image: discord.Attachment,
                  label: app_commands.Range[str, 1, 200], description: str | None = None) -> None:
        await interaction.response.defer(thinking=True)
        data = await self._read(interaction, image)
        if data is not None:
            ctx = interaction_context(interaction)
            await self._follow_up(interaction, await self.service.add(ctx, data, label, description or ""))

    @app_commands.command(name="delete", description="Delete an image you added (its # number)")
    @app_commands.describe(id="The image's number, shown under each result")
    async def delete(self, interaction: discord.Interaction, id: app_commands.Range[int, 1]) -> None:  # noqa: A002
        await interaction.response.defer(thinking=True)
        await self._follow_up(interaction, await self.service.delete(interaction_context(interaction), id))

    @app_commands.command(name="list", description="This server's images, newest first")
    async def list(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await self._follow_up(interaction, await self.service.list(interaction_context(interaction)))

    @app_commands.command(name="stats", description="Gallery sizes")
    async def stats(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await self._follow_up(interaction, await self.service.stats(interaction_context(interaction)))

    @app_commands.command(name="help", description="What this bot can do")
    async def help(self, interaction: discord.Interaction) -> None:
        reply = self.service.help(interaction_context(interaction))
        text = reply.text.replace("/add label | description \u2014 as a photo's caption or a reply to a photo",
                                  "/add image label description \u2014 add a photo to this server's gallery")
        await interaction.response.send_message(text, ephemeral=True)

    async def cog_app_command_error(self, interaction: discord.Interaction,
                                    error: app_commands.AppCommandError) -> None:
        """The one place command errors end: logged in full; the user gets a plain sentence."""
        log.error("while handling /%s", interaction.command.name if interaction.command else "?", exc_info=error)
        text = "Sorry, something went wrong on my side. Please try again."
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)

    # -- plain messages -------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """DMs, and server messages that mention the bot or reply to it."""
        if message.author.bot or self.bot.user is None:
            return
        if guild_id_of(message) is not None and not self._addressed(message):
            return
        ctx = message_context(message)
        images = [a for a in message.attachments if is_image_attachment(a)]
        attachment = images[0] if images else (message.attachments[0] if message.attachments else None)
        if attachment is not None:
            refusal = check_attachment(attachment, self.max_file_bytes)
            if refusal:
                await self._reply(message, Reply(refusal.text, kind="error"))
                return
            await self._reply(message, await self.service.match(ctx, await attachment.read()))
            return
        text = _MENTION.sub("", message.content).strip()
        if text:
            await self._reply(message, await self.service.find(ctx, text))

    # -- helpers --------------------------------------------------------------------------------

    def _addressed(self, message: discord.Message) -> bool:
        me = self.bot.user
        if me is None:
            return False
        if any(user.id == me.id for user in message.mentions):
            return True
        ref = message.reference.resolved if message.reference else None
        return isinstance(ref, discord.Message) and ref.author.id == me.id

    async def _photo_command(self, interaction: discord.Interaction, image: discord.Attachment,
                             handle: Callable[[Context, bytes], Awaitable[Reply | None]]) -> None:
        await interaction.response.defer(thinking=True)
        data = await self._read(interaction, image)
        if data is not None:
            await self._follow_up(interaction, await handle(interaction_context(interaction), data))

    async def _read(self, interaction: discord.Interaction, attachment: discord.Attachment) -> bytes | None:
        refusal = check_attachment(attachment, self.max_file_bytes)
        if refusal:
            await self._follow_up(interaction, Reply(refusal.text, kind="error"))
            return None
        return await attachment.read()

    async def _follow_up(self, interaction: discord.Interaction, reply: Reply | None) -> None:
        if reply is None:  # a rate-limited user who was already told: just clear the "thinking"
            await interaction.delete_original_response()
            return
        await interaction.followup.send(**_message_parts(reply))  # type: ignore[arg-type]

    async def _reply(self, message: discord.Message, reply: Reply | None) -> None:
        if reply is None:
            return
        await message.reply(mention_author=False, **_message_parts(reply))  # type: ignore[arg-type]


def _message_parts(reply: Reply) -> dict[str, object]:
    """Embed, optional file and optional view of a reply, as send()/reply() keyword arguments."""
    embed, file = embed_and_file(reply)
    view = view_for(reply)
    return {"embed": embed, **({"file": file} if file else {}), **({"view": view} if view else {})}
