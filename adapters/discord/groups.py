"""Server channels as groups: private results (``/results private``) and repost alerts (``/watch on``).

Private results: a slash command's result is an ephemeral follow-up (the "thinking" message is
ephemeral from the start, so the switch is read before deferring), and a result asked for by a
message (a mention or a reply with a photo) goes by direct message, with a one-line pointer in
the channel, or, when the user's DMs are closed to the bot, a sentence saying how to open them.

Repost alerts: every photo, GIF and video of a server message (its own, a forwarded message's, and
the media of its GIF links: adapters/discord/embeds.py) is handed to the service's
``observe``, which returns at once (the repost watcher runs after the replies under way) and
records nothing where the channel's server does not watch. Discord has no inline search, so the
service's ``seen`` (membership for inline search) is not called here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import discord

from adapters.discord.messages import (
    check_attachment,
    guild_id_of,
    interaction_context,
    jump_url,
    message_context,
)
from adapters.discord.views import send_fitting, upload_limit
from core.chat import ChatCommand, ChatService, Reply

log = logging.getLogger(__name__)
# Discord's JSON error code for a user who does not accept direct messages from the bot.
CANNOT_MESSAGE_USER = 50007
SENT_PRIVATELY = "{name}, I sent you the result in a direct message: {link}"
DMS_CLOSED = ("{name}, results here come privately, but Discord won't let me message you: allow direct "
              "messages from this server's members (click the server's name \u2192 Privacy Settings \u2192 "
              "Direct Messages), then ask again.")

Read = Callable[[], Awaitable[bytes]]


def gives_results(command: ChatCommand) -> bool:
    """Whether private results hide this command's answer (the catalogue says)."""
    return command.gives_results


async def private_for(service: ChatService, interaction: discord.Interaction, command: ChatCommand) -> bool:
    """Whether a command's reply goes to the asker alone because the server's results are private
    (asked before deferring: an ephemeral "thinking" message cannot be made public later)."""
    if interaction.guild_id is None or not gives_results(command):
        return False
    return (await service.chat_settings(interaction_context(interaction))).private_results


async def goes_privately(service: ChatService, message: discord.Message, reply: Reply) -> bool:
    """Whether the reply to a server message is a result for the asker's DMs."""
    return (reply.kind == "result" and guild_id_of(message) is not None
            and (await service.chat_settings(message_context(message))).private_results)


async def deliver_privately(message: discord.Message, reply: Reply) -> None:
    """Send a result to the author of ``message`` by DM, and a pointer to it in the channel; with
    their DMs closed to the bot, the channel hears how to open them."""
    name = message.author.display_name
    try:
        sent = await send_fitting(message.author.send, reply, upload_limit(None))
    except discord.Forbidden as exc:
        if exc.code != CANNOT_MESSAGE_USER:
            raise
        log.info("results are private in %s, but %s does not take DMs", guild_id_of(message), message.author.id)
        await message.reply(DMS_CLOSED.format(name=name), mention_author=False)
        return
    link = sent.jump_url if isinstance(sent, discord.Message) else "your DMs"
    await message.reply(SENT_PRIVATELY.format(name=name, link=link), mention_author=False)


async def observe(service: ChatService, message: discord.Message, media: Sequence[tuple[discord.Attachment, Read]],
                  *, max_bytes: int, video_max_bytes: int | None, embedded: Sequence[Read] = ()) -> None:
    """Hand a server message's photos, GIFs and videos to the repost watcher (it returns at once;
    nothing is recorded where the server does not watch). An alert replies to the message.
    ``embedded``: downloads of the GIF links' media (adapters/discord/embeds.py), already allowed."""
    if not (media or embedded) or guild_id_of(message) is None:
        return
    ctx, link = message_context(message), jump_url(message)

    async def alert(text: str) -> None:
        try:
            await message.reply(text, mention_author=False, allowed_mentions=discord.AllowedMentions.none(),
                                suppress_embeds=True)
        except discord.HTTPException as exc:  # the message deleted meanwhile, or no right to write there
            log.warning("could not post a repost alert under message %s in %s: %s", message.id,
                        message.channel.id, exc)

    reads = [read for attachment, read in media
             # too large, or no picture: not downloaded for a fingerprint either
             if check_attachment(attachment, max_bytes, video_max_bytes) is None]
    for read in [*reads, *embedded]:
        try:
            await service.observe(ctx, read, message_id=str(message.id), link=link, alert=alert)
        except Exception:  # a repost check must never cost the message's own answer
            log.exception("could not queue the repost check of message %s", message.id)
