"""Replies on Discord: the "Next match" and "Top" buttons (dynamic items, so they keep working for
messages sent before a restart), and sending a reply within the server's upload limit."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import discord
from discord.utils import MISSING

from adapters.discord.messages import embed_and_file, interaction_context, service_of
from core.conversation import Reply
from core.service import TOP_PREFIX

log = logging.getLogger(__name__)
VIEW_TIMEOUT = 600  # after this the in-memory view is dropped; the dynamic item still answers clicks


class NextMatchButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"next:[A-Za-z0-9_-]+:\d+"):
    """Pages a result message in place; its custom id is the service's page token."""

    def __init__(self, data: str, label: str = "Next match") -> None:
        super().__init__(discord.ui.Button(label=label, custom_id=data, style=discord.ButtonStyle.secondary))
        self.data = data

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> NextMatchButton:
        return cls(match.string, _label(item, "Next match"))

    async def callback(self, interaction: discord.Interaction) -> None:
        service = service_of(interaction)
        reply = await service.page(interaction_context(interaction), self.data)
        if reply.kind == "error":
            await interaction.response.send_message(reply.text, ephemeral=True)
            return
        embed, file = embed_and_file(reply)
        await interaction.response.edit_message(
            embed=embed, attachments=[file] if file else [], view=view_for(reply)
        )


class TopButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"top:[A-Za-z0-9_-]+"):
    """Sends every result of the list as one collage, in a new message (the match stays)."""

    def __init__(self, data: str, label: str = "Top results") -> None:
        super().__init__(discord.ui.Button(label=label, custom_id=data, style=discord.ButtonStyle.secondary))
        self.data = data

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> TopButton:
        return cls(match.string, _label(item, "Top results"))

    async def callback(self, interaction: discord.Interaction) -> None:
        service = service_of(interaction)
        await interaction.response.defer(thinking=True)  # rendering the collage takes a moment
        reply = await service.collage(interaction_context(interaction), self.data)
        embed, file = embed_and_file(reply)
        await interaction.followup.send(embed=embed, file=file or MISSING)


def _label(item: discord.ui.Item[Any], default: str) -> str:
    """The pressed button's label, kept when the message is redrawn."""
    return (item.label if isinstance(item, discord.ui.Button) else None) or default


def view_for(reply: Reply) -> discord.ui.View | None:
    if not reply.buttons:
        return None
    view = discord.ui.View(timeout=VIEW_TIMEOUT)
    for button in reply.buttons:
        kind = TopButton if button.data.startswith(TOP_PREFIX) else NextMatchButton
        view.add_item(kind(button.data, button.text))
    return view


def upload_limit(guild: discord.Guild | None) -> int:
    """The largest attachment a message may carry there: the server's boost level decides."""
    return guild.filesize_limit if guild is not None else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES


async def send_fitting(send: Callable[..., Awaitable[Any]], reply: Reply, limit: int, **kwargs: Any) -> None:
    """Send ``reply`` with ``send`` (a reply or a follow-up): embed, picture and buttons.

    A picture over the upload limit, or one Discord still refuses as too large (413), is left
    out: the embed with the label and score always arrives.
    """
    embed, file = embed_and_file(reply)
    view = view_for(reply) or MISSING  # MISSING is discord.py's "not given"
    if file is not None and reply.image is not None and len(reply.image) > limit:
        log.warning("%s is over this server's %d-byte upload limit; sending the text alone", file.filename, limit)
        embed, file = embed_and_file(replace(reply, image=None))
    try:
        await send(embed=embed, file=file or MISSING, view=view, **kwargs)
    except discord.HTTPException as exc:
        if file is None or exc.status != 413:
            raise
        log.warning("Discord refused %s as too large; sending the text alone", file.filename)
        embed, _ = embed_and_file(replace(reply, image=None))
        await send(embed=embed, view=view, **kwargs)
