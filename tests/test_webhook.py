"""Telegram webhook mode: the real python-telegram-bot webhook server against the fake Bot API.

The fake runs as a self-hosted Bot API server in local mode (``--local``), which accepts an http
webhook on a local address; Telegram's cloud servers want https on a public address, and the fake
in its default (cloud) mode refuses such a URL just as they do (tested below).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from telegram import Bot
from telegram.error import BadRequest, Conflict, RetryAfter

from adapters.telegram import TelegramPlatform
from adapters.telegram.webhook import WebhookConfig
from bot.composition import build_platforms, build_service
from bot.settings import Settings, load_settings
from core.errors import ConfigError
from core.gallery.engine import Engine
from tests.fakes import serve_on_loopback
from tests.fakes.telegram import FakeTelegram
from tests.test_telegram import ALICE, BOB, TOKEN, command, private

SECRET = "s3cret_Token-for-the-webhook"
# PTB 22 warns about RetryAfter's int form whenever its rate limiter reads one; the warning is PTB's.
PlatformFactory = Callable[..., Awaitable[TelegramPlatform]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(name="local_api")
async def local_api_fixture() -> AsyncIterator[FakeTelegram]:
    """The fake Bot API as a self-hosted server in local mode (an http webhook on 127.0.0.1)."""
    fake = FakeTelegram(TOKEN, local_mode=True, webhook_retry_interval=0.1)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def platforms(gallery: Engine, settings: Settings) -> AsyncIterator[PlatformFactory]:
    """Start TelegramPlatforms in webhook mode (workers sharing one gallery); all stopped at the end."""
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)
    started: list[TelegramPlatform] = []

    async def make(fake: FakeTelegram, port: int, url: str | None = None) -> TelegramPlatform:
        webhook = WebhookConfig(url or f"http://127.0.0.1:{port}/telegram", SECRET, listen="127.0.0.1", port=port)
        platform = TelegramPlatform(service, token=TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url,
                                    webhook=webhook)
        started.append(platform)
        await platform.start()
        return platform

    yield make
    for platform in started:
        await platform.stop()


async def post(port: int, update: dict[str, Any], secret: str | None) -> int:
    """POST an update to a webhook listener as Telegram (or a load balancer) does; the HTTP status."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{port}/telegram", data=json.dumps(update), headers=headers) as response:
        return response.status


async def test_webhook_mode_sets_the_webhook_and_answers_what_telegram_sends(
        local_api: FakeTelegram, platforms: PlatformFactory) -> None:
    port = free_port()
    platform = await platforms(local_api, port)
    [hook] = local_api.sent("setWebhook")
    assert hook.params["url"] == f"http://127.0.0.1:{port}/telegram" and hook.params["secret_token"] == SECRET
    assert {"message", "callback_query"} <= set(hook.params["allowed_updates"])
    local_api.push(command(private(ALICE), ALICE, "/find rocket"))  # the fake POSTs it to the webhook
    [sent] = await local_api.wait_for("sendPhoto")
    assert sent.params["caption"].startswith("rocket\non the launch pad")
    assert [d.status for d in local_api.deliveries] == [200]
    assert local_api.refused("getUpdates") == [] and local_api.sent("deleteWebhook") == []  # never polled
    assert platform.application is not None
    info = await platform.application.bot.get_webhook_info()
    assert (info.url, info.pending_update_count, info.last_error_message) == (hook.params["url"], 0, None)


async def test_requests_without_the_secret_are_refused_and_never_handled(
        local_api: FakeTelegram, platforms: PlatformFactory) -> None:
    port = free_port()
    await platforms(local_api, port)
    forged = command(private(BOB), BOB, "/find rocket")
    assert await post(port, {"update_id": 900, **forged}, secret=None) == 403
    assert await post(port, {"update_id": 901, **forged}, secret="not-the-secret") == 403
    assert await post(port, {"update_id": 902, **forged}, secret=SECRET[:-1]) == 403
    # The same request with the secret is handled: a marker that the ones before were not.
    genuine = command(private(ALICE), ALICE, "/stats")
    local_api.private.saw(genuine)  # posted past the fake's push: it must still know Alice wrote to the bot
    assert await post(port, {"update_id": 903, **genuine}, secret=SECRET) == 200
    [stats] = await local_api.wait_for("sendMessage")
    assert stats.params["chat_id"] == ALICE["id"]
    await asyncio.sleep(0.3)
    assert local_api.sent("sendPhoto") == []


async def round_robin(upstreams: list[int]) -> tuple[web.AppRunner, int, list[int]]:
    """A minimal load balancer: each POST to the next worker in turn, the next one if it is down."""
    served: list[int] = []
    turn = itertools.count()

    async def forward(request: web.Request) -> web.Response:
        body, start = await request.read(), next(turn)
        async with aiohttp.ClientSession() as session:
            for i in range(len(upstreams)):
                port = upstreams[(start + i) % len(upstreams)]
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.post(f"http://127.0.0.1:{port}{request.path}", data=body,
                                            headers=request.headers) as response:
                        served.append(port)
                        return web.Response(status=response.status, body=await response.read())
        return web.Response(status=502)

    app = web.Application()
    app.router.add_post("/{path:.*}", forward)
    runner, port = await serve_on_loopback(app)
    return runner, port, served


async def test_two_workers_share_one_token_behind_a_load_balancer(
        local_api: FakeTelegram, platforms: PlatformFactory) -> None:
    ports = [free_port(), free_port()]
    runner, lb_port, served = await round_robin(ports)
    try:
        url = f"http://127.0.0.1:{lb_port}/telegram"
        first, second = await asyncio.gather(*(platforms(local_api, p, url) for p in ports))
        # Both set the same webhook: Telegram allows one setWebhook a second, and "already set" after.
        assert [c.params["url"] for c in local_api.sent("setWebhook")] == [url, url]
        for word in ("rocket", "coffee", "chelsea", "astronaut"):
            local_api.push(command(private(ALICE), ALICE, f"/find {word}"))
        await local_api.wait_for("sendPhoto", count=4)
        assert sorted(served) == sorted(ports * 2)  # each worker answered two
        # One worker stops: the webhook stays (no deleteWebhook), the other takes everything.
        await first.stop()
        assert local_api.sent("deleteWebhook") == [] and local_api.webhook is not None
        local_api.push(command(private(ALICE), ALICE, "/find cat"))
        await local_api.wait_for("sendPhoto", count=5)
        assert served[-1] == ports[1] and second.application is not None
    finally:
        await runner.cleanup()


async def test_stop_releases_the_port_and_a_new_start_serves_it_again(
        local_api: FakeTelegram, platforms: PlatformFactory) -> None:
    port = free_port()
    platform = await platforms(local_api, port)
    assert port_is_open(port)
    await platform.stop()
    assert not port_is_open(port)
    # Updates sent meanwhile wait at Telegram (failed deliveries are retried) for the next start.
    local_api.push(command(private(ALICE), ALICE, "/find rocket"))
    await asyncio.sleep(0.3)
    assert local_api.last_error is not None and local_api.deliveries[-1].status == 0
    await platforms(local_api, port)
    [sent] = await local_api.wait_for("sendPhoto")
    assert sent.params["caption"].startswith("rocket")


async def test_telegrams_cloud_refusing_the_url_stops_the_start_with_its_reason(platforms: PlatformFactory) -> None:
    cloud = FakeTelegram(TOKEN)  # Telegram's own servers: https only
    await cloud.start()
    try:
        port = free_port()
        with pytest.raises(ConfigError, match=r"(?i)Telegram refused TELEGRAM_WEBHOOK_URL http://127\.0\.0\.1:\d+/"
                                              r"telegram: bad webhook: an https url must be provided for webhook$"):
            await platforms(cloud, port)
        assert not port_is_open(port)
    finally:
        await cloud.stop()


def webhook_settings(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(update={"telegram_bot_token": SecretStr(TOKEN),
                                       "telegram_webhook_url": "https://bot.example.com/telegram", **update})


@pytest.mark.parametrize(("secret", "problem"), [
    (None, "TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_WEBHOOK_URL"),
    ("has space", "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z a-z 0-9 _ -"),
    ("ä", "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters"),
    ("x" * 257, "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters"),
])
async def test_webhook_needs_a_secret_of_telegrams_characters(settings: Settings, gallery: Engine,
                                                              secret: str | None, problem: str) -> None:
    service = build_service(settings, gallery)
    bad = webhook_settings(settings, telegram_webhook_secret=SecretStr(secret) if secret is not None else None)
    with pytest.raises(ConfigError, match=problem) as info:
        build_platforms(bad, service)
    assert "\n" not in str(info.value) and (secret is None or secret not in str(info.value))


async def test_webhook_settings_reach_the_platform(settings: Settings, gallery: Engine,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    service = build_service(settings, gallery)
    [platform] = build_platforms(webhook_settings(settings, telegram_webhook_secret=SecretStr("x" * 256),
                                                  telegram_webhook_port=88), service)
    assert isinstance(platform, TelegramPlatform) and platform.webhook is not None
    assert (platform.webhook.path, platform.webhook.listen, platform.webhook.port) == ("/telegram", "127.0.0.1", 88)
    assert "x" * 256 not in repr(platform.webhook)
    [polling] = build_platforms(settings.model_copy(update={"telegram_bot_token": SecretStr(TOKEN)}), service)
    assert isinstance(polling, TelegramPlatform) and polling.webhook is None
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_URL must be a full https:// URL"):
        build_platforms(webhook_settings(settings, telegram_webhook_url="bot.example.com",
                                         telegram_webhook_secret=SecretStr(SECRET)), service)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_PORT", "70000")
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_PORT"):
        load_settings(None)


# -- the fake is as strict as the Bot API about webhooks -----------------------------------------------------------

@pytest.fixture
async def bot_factory() -> AsyncIterator[Callable[..., Awaitable[tuple[FakeTelegram, Bot]]]]:
    stack = contextlib.AsyncExitStack()

    async def make(**options: Any) -> tuple[FakeTelegram, Bot]:
        fake = FakeTelegram(TOKEN, **options)
        await fake.start()
        stack.push_async_callback(fake.stop)
        bot = Bot(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url)
        await stack.enter_async_context(bot)
        return fake, bot

    async with stack:
        yield make


async def test_fake_refuses_get_updates_while_a_webhook_is_set(bot_factory: Any) -> None:
    fake, bot = await bot_factory(local_mode=True)
    assert await bot.get_updates(timeout=0) == ()
    assert await bot.set_webhook("http://127.0.0.1:9/hook", secret_token=SECRET)
    with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active; use deleteWebhook"):
        await bot.get_updates(timeout=0)
    assert [c.status for c in fake.refused("getUpdates")] == [409]
    assert await bot.delete_webhook()
    assert await bot.get_updates(timeout=0) == ()
    assert (await bot.get_webhook_info()).url == ""


async def test_fake_allows_one_set_webhook_a_second_and_checks_the_secret(bot_factory: Any) -> None:
    fake, bot = await bot_factory()
    url = "https://bot.example.com:8443/telegram"
    assert await bot.set_webhook(url, secret_token=SECRET)
    with pytest.raises(RetryAfter):  # even with nothing changed: the limit is checked first
        await bot.set_webhook(url, secret_token=SECRET)
    await asyncio.sleep(1.05)
    assert await bot.set_webhook(url, secret_token=SECRET)  # "Webhook is already set"
    for secret in ("x" * 257, "a b", "tok="):
        await asyncio.sleep(1.05)
        with pytest.raises(BadRequest):
            await bot.set_webhook("https://other.example.com/hook", secret_token=secret)
    assert [c.description for c in fake.refused("setWebhook")] == [
        "Too Many Requests: retry after 1", "Bad Request: secret token is too long"] + [
        "Bad Request: secret token contains unallowed characters"] * 2
    assert (await bot.get_webhook_info()).url == url


async def test_fake_in_cloud_mode_wants_https_on_telegrams_ports_at_a_public_address(bot_factory: Any) -> None:
    fake, bot = await bot_factory(webhook_retry_interval=0.1)
    bad = "Bad Request: bad webhook: "
    refusals = {  # the descriptions as the Bot API server words them (PTB lowercases its copy)
        "http://bot.example.com/hook": bad + "An HTTPS URL must be provided for webhook",
        "https://bot.example.com:8080/hook": bad + "Webhook can be set up only on ports 80, 88, 443 or 8443",
        "https://127.0.0.1/hook": bad + "IP address 127.0.0.1 is reserved",
        "https://localhost:8443/hook": bad + "IP address 127.0.0.1 is reserved",
        "https://192.168.1.5:88/hook": bad + "IP address 192.168.1.5 is reserved",
        "https:///hook": "Bad Request: invalid webhook URL specified",
    }
    for url in refusals:
        with pytest.raises(BadRequest):
            await bot.set_webhook(url)
        await asyncio.sleep(1.05)
    assert [c.description for c in fake.refused("setWebhook")] == list(refusals.values())
    assert await bot.set_webhook("https://bot.example.com/hook")
    assert (await bot.get_webhook_info()).url == "https://bot.example.com/hook"


async def test_fake_keeps_undelivered_updates_and_reports_why(bot_factory: Any) -> None:
    fake, bot = await bot_factory(local_mode=True, webhook_retry_interval=0.05)
    port = free_port()  # nobody listens there
    assert await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token=SECRET)
    fake.push(command(private(ALICE), ALICE, "/stats"))
    await asyncio.sleep(0.3)
    info = await bot.get_webhook_info()
    assert info.pending_update_count == 1 and info.last_error_message and info.last_error_date
    assert len(fake.deliveries) >= 2 and {d.status for d in fake.deliveries} == {0}  # tried again
    # A listener that answers 403 (a wrong secret) is an error too; the update waits on.
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=403)

    app = web.Application()
    app.router.add_post("/hook", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.sleep(0.3)
        info = await bot.get_webhook_info()
        assert info.last_error_message == "Wrong response from the webhook: 403 Forbidden"
        assert info.pending_update_count == 1
        assert await bot.delete_webhook(drop_pending_updates=True)
        assert (await bot.get_webhook_info()).pending_update_count == 0
    finally:
        await runner.cleanup()


async def test_polling_after_a_webhook_deletes_it_first(local_api: FakeTelegram, gallery: Engine,
                                                        settings: Settings) -> None:
    bot = Bot(TOKEN, base_url=local_api.base_url)
    async with bot:
        await bot.set_webhook("http://127.0.0.1:9/hook", secret_token=SECRET)
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)
    polling = TelegramPlatform(service, token=TOKEN, base_url=local_api.base_url,
                               base_file_url=local_api.base_file_url, poll_timeout=1)
    await polling.start()
    try:
        assert local_api.sent("deleteWebhook") and local_api.webhook is None
        local_api.push(command(private(ALICE), ALICE, "/stats"))
        await local_api.wait_for("sendMessage")
        assert local_api.refused("getUpdates") == []
    finally:
        await polling.stop()
