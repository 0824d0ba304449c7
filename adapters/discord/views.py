"""Replies on Discord: a result's buttons (dynamic items, so they keep working for messages sent
before a restart), and sending a reply within the upload limit."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import discord
from discord.utils import MISSING

from adapters.discord.messages import embed_and_file, interaction_context, service_of
from core.chat import FORGET_PREFIX, LIKE_PREFIX, NEXT_PREFIX, NOT_PREFIX, TOP_PREFIX, ChatService, InFlight, Reply

log = logging.getLogger(__name__)
VIEW_TIMEOUT = 600  # after this the in-memory view is dropped; the dynamic item still answers clicks
APOLOGY = "Sorry, something went wrong on my side. Please try again."
RESTARTING = "I'm restarting; try again in a minute."
# Replies that concern the one who asked: shown to them alone where an interaction allows it.
PRIVATE_KINDS = ("error", "busy", "rate_limited")
_TOKEN = r"[A-Za-z0-9_-]{1,32}"
# Every button core.chat.results puts under a result: "next:T:2", "top:T", "like:T:12", "not:T:12", and
# the answers to /forget's question (core.chat.groups): "forget:N:yes", "forget:N:no".
RESULT_BUTTONS = (rf"(?:{NEXT_PREFIX}|{LIKE_PREFIX}|{NOT_PREFIX}){_TOKEN}:\d{{1,18}}|{TOP_PREFIX}{_TOKEN}"
                  rf"|{FORGET_PREFIX}{_TOKEN}:(?:yes|no)")


def button_style(data: str) -> discord.ButtonStyle:
    """Red for the button that erases something ("Yes, forget"), grey for the rest."""
    if data.startswith(FORGET_PREFIX) and data.endswith(":yes"):
        return discord.ButtonStyle.danger
    return discord.ButtonStyle.secondary


class ResultButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=RESULT_BUTTONS):
    """Any button of a result, or of /forget's question; the service's ``press`` says what it does.

    "Next match" and /forget's answers redraw the message they are on; "Top N", "More like this"
    and "Not this" answer with a new message, to the presser alone under an ephemeral result or
    where the server's results are private. The press is acknowledged at once (a deferred update:
    no "thinking" message to take over), since feedback runs a search; errors go to the presser alone.
    """

    def __init__(self, data: str, label: str = "Results", *, row: int | None = None) -> None:
        super().__init__(discord.ui.Button(label=label, custom_id=data, style=button_style(data)), row=row)
        self.data = data

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> ResultButton:
        label = (item.label if isinstance(item, discord.ui.Button) else None) or "Results"
        return cls(match.string, label)

    async def callback(self, interaction: discord.Interaction) -> None:
        in_flight = getattr(interaction.client, "in_flight", None)
        if isinstance(in_flight, InFlight) and in_flight.closing:
            await interaction.response.send_message(RESTARTING, ephemeral=True)
            return
        if isinstance(in_flight, InFlight):
            async with in_flight.track():
                await self._press(interaction)
        else:
            await self._press(interaction)

    async def _press(self, interaction: discord.Interaction) -> None:
        try:
            await interaction.response.defer()
            service = service_of(interaction)
            reply = await service.press(interaction_context(interaction), self.data)
            if reply is None:  # a rate-limited user who was already told: the press is acknowledged
                return
            if reply.kind in PRIVATE_KINDS:
                await interaction.followup.send(reply.text, ephemeral=True)
            elif reply.replaces:
                await send_fitting(edit_of(interaction), reply, interaction.filesize_limit)
            else:
                await send_fitting(interaction.followup.send, reply, interaction.filesize_limit,
                                   ephemeral=await press_private(service, interaction, reply))
        except Exception:
            log.exception("while answering the button %s", self.data)
            await apologize(interaction)


async def press_private(service: ChatService, interaction: discord.Interaction, reply: Reply) -> bool:
    """Whether a button's new message goes to the presser alone: under an ephemeral result, or a
    result in a server whose results are private (``/results private``)."""
    message = interaction.message
    if message is not None and message.flags.ephemeral:
        return True
    return (reply.kind == "result" and interaction.guild_id is not None
            and (await service.chat_settings(interaction_context(interaction))).private_results)


def edit_of(interaction: discord.Interaction) -> Callable[..., Awaitable[Any]]:
    """``send_fitting``'s ``send`` that redraws the message a button was on (its picture replaced;
    its buttons too, or none left when the new reply has none: "Forgot your 2 images.")."""
    async def edit(*, embed: discord.Embed, file: discord.File | None = None, view: Any = MISSING) -> None:
        await interaction.edit_original_response(embed=embed, attachments=[file] if file else [],
                                                 view=None if view is MISSING else view)

    return edit


async def apologize(interaction: discord.Interaction) -> None:
    """The plain sentence a user gets when answering them failed on our side (logged by the caller)."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(APOLOGY, ephemeral=True)
        else:
            await interaction.response.send_message(APOLOGY, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not apologize for a failed interaction", exc_info=True)


def view_for(reply: Reply) -> discord.ui.View | None:
    """The reply's buttons, row by row as core laid them out."""
    if not reply.buttons:
        return None
    view = discord.ui.View(timeout=VIEW_TIMEOUT)
    for button in reply.buttons:
        view.add_item(ResultButton(button.data, button.text, row=button.row))
    return view


def upload_limit(guild: discord.Guild | None) -> int:
    """The largest attachment a message may carry there: the server's boost level decides."""
    return guild.filesize_limit if guild is not None else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES


async def send_fitting(send: Callable[..., Awaitable[Any]], reply: Reply, limit: int, **kwargs: Any) -> Any:
    """Send ``reply`` with ``send`` (a reply, a follow-up or an edit): embed, picture and buttons;
    returns what ``send`` returned (the message sent, where it says).

    A picture over the upload limit, or one Discord still refuses as too large (413), is left
    out: the embed with the label and score always arrives.
    """
    embed, file = embed_and_file(reply)
    view = view_for(reply) or MISSING  # MISSING is discord.py's "not given"
    if file is not None and reply.image is not None and len(reply.image) > limit:
        log.warning("%s is over the %d-byte upload limit there; sending the text alone", file.filename, limit)
        embed, file = embed_and_file(replace(reply, image=None))
    try:
        return await send(embed=embed, file=file or MISSING, view=view, **kwargs)
    except discord.HTTPException as exc:
        if file is None or exc.status != 413:
            raise
        log.warning("Discord refused %s as too large; sending the text alone", file.filename)
        embed, _ = embed_and_file(replace(reply, image=None))
        return await send(embed=embed, view=view, **kwargs)
