"""Discord sharding: several processes split the bot's servers, each IDENTIFYing with its own shard."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import discord
import pytest
from pydantic import SecretStr

from adapters.discord import DiscordPlatform
from adapters.discord.platform import ClipBot, ShardedClipBot
from bot.composition import build_platforms, build_service
from bot.settings import Settings, load_settings
from core.chat.service import ChatService
from core.errors import ConfigError
from core.gallery.engine import Engine
from tests.fakes.discord import (
    APP_ID,
    FakeDiscord,
    Identify,
    fake_fixture,  # noqa: F401  (the fixture `fake`)
    user,
)

ALICE = user("11", "alice")
SHARD_1_GUILD = str(1 << 22)  # (id >> 22) % 2 == 1: Discord sends its events to shard 1 of 2


@pytest.fixture
def service(gallery: Engine, settings: Settings) -> ChatService:
    return build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)


def worker(service: ChatService, fake: FakeDiscord, **shards: Any) -> DiscordPlatform:
    return DiscordPlatform(service, token="fake-discord-token", api_base_url=fake.api_base,
                           gateway_url=fake.gateway_url, **shards)


async def wait_until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_two_workers_each_identify_with_their_own_shard(fake: FakeDiscord, service: ChatService) -> None:
    workers = [worker(service, fake, shard_count=2, shard_ids=(0,)), worker(service, fake, shard_count=2,
                                                                              shard_ids=(1,))]
    seen: list[list[str]] = [[], []]
    for platform, messages in zip(workers, seen, strict=True):
        assert isinstance(platform.bot, ShardedClipBot)

        async def record(message: discord.Message, messages: list[str] = messages) -> None:
            messages.append(message.content)

        platform.bot.add_listener(record, "on_message")
    try:
        await asyncio.gather(*(w.start() for w in workers))
        # Both started together: Discord takes one IDENTIFY per 5 s per bucket (max_concurrency 1), so
        # one of them hears "invalid session" and discord.py identifies again 5 s later.
        await wait_until(lambda: len(fake.identifies) == 2)
        assert sorted(i.shard for i in fake.identifies) == [(0, 2), (1, 2)]
        assert fake.invalid_sessions <= 1 and fake.gateway_closes == []
        assert all(i.intents == workers[0].intents.value for i in fake.identifies)
        # The application's commands are registered once, by the worker running shard 0.
        assert len(fake.sent("PUT", f"/applications/{APP_ID}/commands")) == 1
        await wait_until(lambda: all(w.bot.is_ready() for w in workers))
        # Discord routes a server's events to its shard, and DMs to shard 0.
        await fake.dispatch("MESSAGE_CREATE", fake.message(ALICE, content="in a DM", guild=False))
        shard_1_message = fake.message(ALICE, content="in shard 1's server")
        shard_1_message["guild_id"] = SHARD_1_GUILD
        await fake.dispatch("MESSAGE_CREATE", shard_1_message)
        await wait_until(lambda: seen[0] and seen[1])
        assert seen == [["in a DM"], ["in shard 1's server"]]
    finally:
        for platform in workers:
            await platform.stop()


async def test_without_shard_settings_the_bot_is_unsharded(fake: FakeDiscord, service: ChatService) -> None:
    platform = worker(service, fake)
    assert type(platform.bot) is ClipBot
    try:
        await platform.start()
        await wait_until(lambda: len(fake.identifies) == 1)
        assert fake.identifies == [Identify((0, 1), platform.intents.value)]
    finally:
        await platform.stop()


def discord_settings(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(update={"discord_bot_token": SecretStr("fake-discord-token"), **update})


@pytest.mark.parametrize(("count", "ids", "problem"), [
    (None, "0", "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT"),
    (2, "2", r"DISCORD_SHARD_IDS \[2\] out of range: shard ids run from 0 to DISCORD_SHARD_COUNT - 1 \(1\)"),
    (2, "0,x", "DISCORD_SHARD_IDS must be comma-separated shard numbers"),
    (2, "-1", "DISCORD_SHARD_IDS must be comma-separated shard numbers"),
    (3, "1, 1", "DISCORD_SHARD_IDS names a shard twice"),
])
async def test_a_bad_shard_plan_is_one_config_error(settings: Settings, service: ChatService, count: int | None,
                                                    ids: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        build_platforms(discord_settings(settings, discord_shard_count=count, discord_shard_ids=ids), service)
    assert "\n" not in str(info.value)


async def test_shard_settings_reach_the_platform(settings: Settings, service: ChatService,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    [platform] = build_platforms(discord_settings(settings, discord_shard_count=4, discord_shard_ids="3, 1"), service)
    assert isinstance(platform, DiscordPlatform) and isinstance(platform.bot, ShardedClipBot)
    assert (platform.bot.shard_count, platform.bot.shard_ids) == (4, [3, 1])
    assert platform.bot.sync_commands is False  # shard 0 runs elsewhere
    [every] = build_platforms(discord_settings(settings, discord_shard_count=2), service)
    assert isinstance(every, DiscordPlatform) and isinstance(every.bot, ShardedClipBot)
    assert every.bot.shard_ids is None and every.bot.sync_commands
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "0")
    with pytest.raises(ConfigError, match="DISCORD_SHARD_COUNT"):
        load_settings(None)


# -- the fake gateway is as strict as Discord's about shards ------------------------------------------------------

async def identify(fake: FakeDiscord, data: dict[str, Any]) -> tuple[int | None, dict[str, Any] | None]:
    """IDENTIFY over a raw websocket: the close code (None if still open) and the first frame after HELLO."""
    async with aiohttp.ClientSession() as session, session.ws_connect(fake.gateway_url) as ws:
        hello = await ws.receive_json()
        assert hello["op"] == 10
        await ws.send_str(json.dumps({"op": 2, "d": {"token": "fake-discord-token", "intents": 1,
                                                     "properties": {}, **data}}))
        msg = await ws.receive(timeout=5)
        frame = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else None
        return ws.close_code, frame


@pytest.mark.parametrize("shard", [[2, 2], [5, 2], [-1, 2], [0, 0], ["0", 2], [0], [True, 2], "0,2"])
async def test_fake_closes_invalid_shards_with_4010(fake: FakeDiscord, shard: Any) -> None:
    code, frame = await identify(fake, {"shard": shard})
    assert (code, frame, fake.gateway_closes, fake.identifies) == (4010, None, [4010], [])


async def test_fake_requires_sharding_and_rate_limits_identifies() -> None:
    fake = FakeDiscord(required_shards=2, recommended_shards=2, max_concurrency=2)
    await fake.start()
    try:
        assert (await identify(fake, {}))[0] == 4011  # unsharded, like a bot in too many servers
        assert (await identify(fake, {"shard": [0, 1]}))[0] == 4011
        code, ready = await identify(fake, {"shard": [1, 2]})
        assert code is None and ready is not None and ready["t"] == "READY" and ready["d"]["shard"] == [1, 2]
        # Bucket 1 % 2 just identified: shard 3 of 4 shares it, and is told to identify again later.
        code, frame = await identify(fake, {"shard": [3, 4]})
        assert (code, frame, fake.invalid_sessions) == (None, {"op": 9, "d": False}, 1)
        assert (await identify(fake, {"shard": [0, 2]}))[1]["t"] == "READY"  # type: ignore[index]  # bucket 0
        async with aiohttp.ClientSession() as session, session.get(f"{fake.api_base}/gateway/bot") as response:
            body = await response.json()
        assert body["shards"] == 2 and body["session_start_limit"]["max_concurrency"] == 2
    finally:
        await fake.stop()


async def test_discord_closing_a_bad_shard_is_reported(fake: FakeDiscord, service: ChatService,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    # A plan the platform refuses never reaches Discord; built by hand it does, and Discord says 4010.
    bot = ShardedClipBot(service, intents=discord.Intents.default(), guild_ids=(), max_file_bytes=1,
                         api_base_url=fake.api_base, gateway_url=fake.gateway_url, shard_count=2, shard_ids=[2],
                         sync_commands=False)
    try:
        await bot.login("fake-discord-token")
        with pytest.raises(discord.ConnectionClosed) as info:
            await asyncio.wait_for(bot.connect(reconnect=True), 30)
        assert info.value.code == 4010 and fake.gateway_closes == [4010]
    finally:
        await bot.close()
    # The platform names the settings to fix when Discord closes with a shard code.
    fake.required_shards = 2
    platform = worker(service, fake, shard_count=1)
    caplog.set_level(logging.ERROR, "adapters.discord.platform")
    try:
        await platform.start()
        await wait_until(lambda: 4011 in fake.gateway_closes)
        await wait_until(lambda: "sharding required (4011)" in caplog.text)
        assert "set DISCORD_SHARD_COUNT" in caplog.text
    finally:
        await platform.stop()
