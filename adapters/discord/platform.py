"""Runs the Discord bot in the shared event loop: log in, sync commands, connect; close to stop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import discord
import yarl
from discord.ext import commands
from discord.http import HTTPClient, Route
from discord.webhook.async_ import AsyncWebhookAdapter, async_context

from adapters.discord.cog import ClipbotCog
from adapters.discord.embeds import EmbedMedia
from adapters.discord.views import ResultButton
from core.chat import ChatService, InFlight
from core.errors import ConfigError

log = logging.getLogger(__name__)
# Gateway close codes about sharding, as Discord documents them, with what the operator should do.
SHARD_CLOSE_CODES = {
    4010: "invalid shard (4010): check DISCORD_SHARD_IDS against DISCORD_SHARD_COUNT",
    4011: "sharding required (4011): the bot is in too many servers for one connection; set DISCORD_SHARD_COUNT",
}


def redirect(route: Route, api_base_url: str | None) -> Route:
    """Point a REST route at ``api_base_url`` instead of Discord's own API."""
    if api_base_url and route.url.startswith(Route.BASE):
        route.url = api_base_url + route.url[len(Route.BASE):]
    return route


class RedirectedHTTPClient(HTTPClient):
    """discord.py's HTTP client, sending REST calls and the gateway connection to other base URLs.

    For proxies in front of Discord (and the tests' fake Discord). discord.py keeps both URLs as
    class settings of ``Route`` and ``DiscordWebSocket``; redirecting here instead keeps every
    other client in the process, and discord.py's globals, untouched.
    """

    api_base_url: str | None = None
    gateway_url: str | None = None

    async def request(self, route: Route, **kwargs: Any) -> Any:
        return await super().request(redirect(route, self.api_base_url), **kwargs)

    async def ws_connect(self, url: str, *, compress: int = 0) -> aiohttp.ClientWebSocketResponse:
        if self.gateway_url:  # keep discord.py's query (API version, encoding, compression)
            url = str(yarl.URL(self.gateway_url).with_query(yarl.URL(url).query))
        return await super().ws_connect(url, compress=compress)


class RedirectedWebhookAdapter(AsyncWebhookAdapter):
    """Interaction responses and follow-ups go through discord.py's webhook adapter, not the client."""

    def __init__(self, api_base_url: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # discord.py leaves it unannotated
        self.api_base_url = api_base_url

    async def request(self, route: Route, *args: Any, **kwargs: Any) -> Any:
        return await super().request(redirect(route, self.api_base_url), *args, **kwargs)


class ClipBot(commands.Bot):
    """discord.py's Bot holding the chat service and the requests in flight (buttons reach both
    through ``interaction.client``)."""

    def __init__(self, service: ChatService, *, intents: discord.Intents, guild_ids: tuple[int, ...],
                 max_file_bytes: int, api_base_url: str | None = None, gateway_url: str | None = None,
                 sync_commands: bool = True, embed_media: EmbedMedia | None = None, **options: Any) -> None:
        # No prefix commands: everything is slash commands or messages addressed to the bot.
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None, **options)
        self.sync_commands = sync_commands
        self.api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self.in_flight = InFlight()  # requests being answered, drained before the connection closes
        if api_base_url or gateway_url:
            # The client, its connection state and its command tree share this one HTTP client
            # object; turning it into the redirecting kind reaches all three.
            self.http.__class__ = RedirectedHTTPClient
            assert isinstance(self.http, RedirectedHTTPClient)
            self.http.api_base_url, self.http.gateway_url = self.api_base_url, gateway_url
        self.service = service
        self.guild_ids = guild_ids
        self.max_file_bytes = max_file_bytes
        self.embed_media = embed_media

    async def setup_hook(self) -> None:
        await self.add_cog(ClipbotCog(self, self.service, max_file_bytes=self.max_file_bytes,
                                      in_flight=self.in_flight, embed_media=self.embed_media))
        self.add_dynamic_items(ResultButton)
        if not self.sync_commands:
            return
        if self.guild_ids:  # guild commands appear at once; global ones can take up to an hour
            for guild_id in self.guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()


class ShardedClipBot(ClipBot, commands.AutoShardedBot):
    """ClipBot on several gateway connections (shards); discord.py routes each event to its shard."""


def parse_shard_ids(text: str) -> tuple[int, ...] | None:
    """``DISCORD_SHARD_IDS`` ("0,1") as numbers; None when empty."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not all(part.isdigit() for part in parts):
        raise ConfigError(f"DISCORD_SHARD_IDS must be comma-separated shard numbers (e.g. 0,1), not {text!r}.")
    return tuple(int(part) for part in parts) or None


def check_shards(shard_count: int | None, shard_ids: tuple[int, ...] | None) -> None:
    """Refuse a shard plan Discord would refuse (close code 4010) before connecting at all."""
    if shard_ids is not None and shard_count is None:
        raise ConfigError("DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT: the number of shards across all processes.")
    if shard_count is None:
        return
    if shard_count < 1:
        raise ConfigError(f"DISCORD_SHARD_COUNT must be at least 1, not {shard_count}.")
    if shard_ids is not None:
        if not shard_ids:
            raise ConfigError("DISCORD_SHARD_IDS is empty; leave it unset to run every shard here.")
        bad = [i for i in shard_ids if not 0 <= i < shard_count]
        if bad:
            raise ConfigError(f"DISCORD_SHARD_IDS {bad} out of range: shard ids run from 0 to DISCORD_SHARD_COUNT - 1 "
                              f"({shard_count - 1}).")
        if len(set(shard_ids)) != len(shard_ids):
            raise ConfigError(f"DISCORD_SHARD_IDS names a shard twice: {list(shard_ids)}.")


def make_intents(message_content: bool) -> discord.Intents:
    """Default intents; mentions, DMs and replies that ping the bot carry attachments without the
    privileged message-content intent. With it, replies that do not ping work too."""
    intents = discord.Intents.default()
    intents.message_content = message_content
    return intents


class DiscordPlatform:
    """One Discord bot; ``start()`` returns once logged in, ``stop()`` closes it cleanly.

    With ``shard_count`` it runs the shards ``shard_ids`` of that many (all of them when None), so
    that several processes can split a bot's servers: Discord sends each server's events to shard
    ``(server id >> 22) % shard_count``, and DMs to shard 0. Without it, one unsharded connection.
    """

    name = "discord"

    def __init__(self, service: ChatService, *, token: str, guild_ids: tuple[int, ...] = (),
                 max_file_bytes: int = 25 * 1024 * 1024, message_content: bool = False,
                 api_base_url: str | None = None, gateway_url: str | None = None, stop_timeout: float = 30,
                 shard_count: int | None = None, shard_ids: tuple[int, ...] | None = None,
                 embed_media: EmbedMedia | None = None) -> None:
        """``embed_media``: where GIF links' media may be fetched from (default: Tenor's, Giphy's
        and Discord's media hosts, over HTTPS); tests point it at their fake."""
        check_shards(shard_count, shard_ids)
        self._token = token
        self._stop_timeout = stop_timeout
        self.intents = make_intents(message_content)
        self.shard_count, self.shard_ids = shard_count, shard_ids
        common: dict[str, Any] = {"intents": self.intents, "guild_ids": guild_ids, "max_file_bytes": max_file_bytes,
                                  "api_base_url": api_base_url, "gateway_url": gateway_url, "embed_media": embed_media}
        if shard_count is None:
            self.bot: ClipBot = ClipBot(service, **common)
        else:
            # Slash commands are the application's, not a shard's: one process (the one with shard 0)
            # registers them, instead of every worker overwriting them at each start.
            self.bot = ShardedClipBot(service, **common, shard_count=shard_count,
                                      shard_ids=list(shard_ids) if shard_ids is not None else None,
                                      sync_commands=shard_ids is None or 0 in shard_ids)
        self._gateway: asyncio.Task[None] | None = None

    async def login(self) -> None:
        """Log in over REST and sync the slash commands (no gateway connection yet)."""
        log.warning("Discord intents: message_content=%s, guilds=%s, guild_messages=%s, dm_messages=%s",
                    self.intents.message_content, self.intents.guilds, self.intents.guild_messages,
                    self.intents.dm_messages)
        if self.bot.api_base_url:
            # discord.py picks its webhook adapter from a context variable, made for this: set
            # here, it holds for the gateway task started next and every interaction it handles.
            async_context.set(RedirectedWebhookAdapter(self.bot.api_base_url))
        try:
            await self.bot.login(self._token)
        except discord.LoginFailure:
            await self.bot.close()
            raise ConfigError("Discord refused DISCORD_BOT_TOKEN; copy the bot token from the Developer Portal.") \
                from None
        except (aiohttp.ClientError, discord.HTTPException, OSError) as exc:
            await self.bot.close()
            raise ConfigError(f"Cannot reach Discord ({exc}); check the network.") from None

    async def start(self) -> None:
        """Log in, then connect to the gateway in the background; idempotent."""
        if self._gateway is not None:
            return
        await self.login()
        self._gateway = asyncio.create_task(self.bot.connect(reconnect=True), name="discord-gateway")
        self._gateway.add_done_callback(_report_gateway_end)
        if self.shard_count is None:
            log.warning("Discord bot %s is connecting", self.bot.user)
        else:
            ids = list(self.shard_ids) if self.shard_ids is not None else "all"
            log.warning("Discord bot %s is connecting: shards %s of %d", self.bot.user, ids, self.shard_count)

    async def stop(self) -> None:
        """Turn new requests away, let those being answered send their replies (up to
        ``stop_timeout`` seconds), then close the connection; safe to call twice."""
        if not await self.bot.in_flight.drain(self._stop_timeout):
            log.warning("Discord: %d request(s) still running after %.0f s were cut off", self.bot.in_flight.count,
                        self._stop_timeout)
        await self.bot.close()
        if self._gateway is not None:
            await asyncio.gather(self._gateway, return_exceptions=True)
            self._gateway = None


def _report_gateway_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if isinstance(exc, discord.PrivilegedIntentsRequired):
            log.error("Discord refused the message-content intent: enable it for the bot in the Developer "
                      "Portal, or set CLIPBOT_DISCORD_MESSAGE_CONTENT=false")
        elif isinstance(exc, discord.ConnectionClosed) and exc.code in SHARD_CLOSE_CODES:
            log.error("Discord closed the connection: %s", SHARD_CLOSE_CODES[exc.code])
        else:
            log.error("the Discord connection ended", exc_info=exc)
