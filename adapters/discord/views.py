"""The "Next match" button: a dynamic item, so it keeps working for messages sent before a restart."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

from adapters.discord.messages import embed_and_file, interaction_context
from core.conversation import Reply

if TYPE_CHECKING:
    from core.service import ChatService

VIEW_TIMEOUT = 600  # after this the in-memory view is dropped; the dynamic item still answers clicks


class NextMatchButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"next:[A-Za-z0-9_-]+:\d+"):
    """Pages a result message in place; its custom id is the service's page token."""

    def __init__(self, data: str, label: str = "Next match") -> None:
        super().__init__(discord.ui.Button(label=label, custom_id=data, style=discord.ButtonStyle.secondary))
        self.data = data

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button[Any],
                             match: re.Match[str], /) -> NextMatchButton:
        return cls(item.custom_id or "", item.label or "Next match")

    async def callback(self, interaction: discord.Interaction) -> None:
        service: ChatService = interaction.client.service  # type: ignore[attr-defined]
        reply = await service.page(interaction_context(interaction), self.data)
        if reply.kind == "error":
            await interaction.response.send_message(reply.text, ephemeral=True)
            return
        embed, file = embed_and_file(reply)
        await interaction.response.edit_message(
            embed=embed, attachments=[file] if file else [], view=view_for(reply)
        )


def view_for(reply: Reply) -> discord.ui.View | None:
    if not reply.buttons:
        return None
    view = discord.ui.View(timeout=VIEW_TIMEOUT)
    for button in reply.buttons:
        view.add_item(NextMatchButton(button.data, button.text))
    return view
