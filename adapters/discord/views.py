"""The "Next match" button: a dynamic item, so it keeps working for messages sent before a restart."""

from __future__ import annotations

import re
from typing import Any

import discord
from discord.utils import MISSING

from adapters.discord.messages import embed_and_file, interaction_context, service_of
from core.conversation import Reply
from core.service import TOP_PREFIX

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
