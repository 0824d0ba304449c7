"""Commands on one of the bot's results, as message context menus (right-click a message → Apps).

A slash command cannot point at a message, so the catalogue's Takes.RESULT commands ("Similar
images") run from a result's context menu, and Takes.RESULT_WORDS ones ("Refine with words")
open a form for the words first. The result comes from the target message's buttons; a message
that is not one of our results is passed on as ``result=None``, and the service says so.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Protocol

import discord
from discord import app_commands

from adapters.discord.messages import menu_name, result_of
from adapters.discord.views import apologize
from core.chat import ChatCommand, CommandInput, ResultRef, Takes

log = logging.getLogger(__name__)
MODAL_TIMEOUT = 15 * 60  # as long as Discord lets the interaction be answered
MODAL_TITLE_LIMIT = 45
WORDS_LIMIT = 300  # as /find's text option
WORDS_LABEL = "Your words"


class Respond(Protocol):
    """The cog's way of running a command for an interaction and following up with its reply."""

    async def __call__(self, interaction: discord.Interaction, command: ChatCommand, args: CommandInput,
                       image: discord.Attachment | None, /, *, private: bool = False) -> None: ...


def context_menu(command: ChatCommand, respond: Respond) -> app_commands.ContextMenu:
    """The message context menu entry of a catalogue command on a result."""
    if not command.takes.result:
        raise ValueError(f"/{command.name} takes no result; it is a slash command")

    async def on_message(interaction: discord.Interaction, message: discord.Message) -> None:
        ref = result_of(interaction.client, message)
        if ref is None or command.takes is Takes.RESULT:
            # Not a result: the service's answer is for the asker alone.
            await respond(interaction, command, CommandInput(result=ref), None, private=ref is None)
            return
        await interaction.response.send_modal(WordsForm(command, ref, respond))

    return app_commands.ContextMenu(name=menu_name(command), callback=on_message)


class WordsForm(discord.ui.Modal):
    """The form a Takes.RESULT_WORDS menu entry opens: one line of words for the chosen result.

    Each opening gets its own custom id: discord.py keeps modals by custom id alone, and two
    people refining the same result at once must each get their own answer.
    """

    def __init__(self, command: ChatCommand, ref: ResultRef, respond: Respond) -> None:
        super().__init__(title=menu_name(command)[:MODAL_TITLE_LIMIT], timeout=MODAL_TIMEOUT,
                         custom_id=f"{command.name}:{ref.token}:{ref.image_id}:{secrets.token_hex(4)}")
        self.command, self.ref, self.respond = command, ref, respond
        self.words: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=WORDS_LABEL, custom_id="words", placeholder=command.title[:100], max_length=WORDS_LIMIT)
        self.add_item(self.words)

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        await self.respond(interaction, self.command, CommandInput(result=self.ref, words=self.words.value), None)

    async def on_error(  # type: ignore[override]  # discord.py's Modal drops the view's item argument
            self, interaction: discord.Interaction, error: Exception, /) -> None:
        log.error("while handling the %s form", self.command.name, exc_info=error)
        await apologize(interaction)
