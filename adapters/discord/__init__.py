"""Discord, through discord.py: slash commands, attachments and mentions on the chat service."""

from adapters.discord.platform import DiscordPlatform

__all__ = ["DiscordPlatform"]
