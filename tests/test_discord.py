"""Discord: the real discord.py client, REST over HTTP to a fake API, events in Discord's payload shapes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest

from adapters.discord import DiscordPlatform
from adapters.discord.messages import DISCORD_STYLE
from bot.composition import build_service
from bot.settings import Settings
from core.chat import help_text
from core.gallery.engine import Engine
from core.search import fold
from tests.conftest import recompressed
from tests.fakes.discord import APP_ID, BOT, GUILD_ID, FakeDiscord, user
from tests.text_pictures import needs_reader, text_picture

ALICE = user("11", "alice")

BOB = user("12", "bob")
MANAGE_MESSAGES = str(1 << 13)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    original_base, original_gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    yield server
    await server.stop()
    # Pointed at the fake through its own HTTP client, never through discord.py's class settings.
    assert original_base == discord.http.Route.BASE
    assert original_gateway == discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY


@pytest.fixture
async def platform(fake: FakeDiscord, gallery: Engine, settings: Settings) -> AsyncIterator[DiscordPlatform]:
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)
    bot = DiscordPlatform(service, token="fake-discord-token", guild_ids=(int(GUILD_ID),),
                          api_base_url=fake.api_base, max_file_bytes=25 * 1024 * 1024)
    await bot.login()
    yield bot
    await bot.stop()


def dispatch(platform: DiscordPlatform, event: str, payload: dict[str, Any]) -> None:
    """Hand an event to discord.py exactly as its gateway reader does."""
    getattr(platform.bot._connection, f"parse_{event}")(payload)


def image_option(fake: FakeDiscord, data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg",
                 size: int | None = None) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    att = fake.attachment(data, name, content_type, size=size)
    return [{"name": "image", "type": 11, "value": att["id"]}], {att["id"]: att}


async def test_login_syncs_slash_commands_to_the_configured_server(fake: FakeDiscord,
                                                                   platform: DiscordPlatform) -> None:
    [sync] = fake.sent("PUT", f"/applications/{APP_ID}/guilds/{GUILD_ID}/commands")
    commands = {c["name"]: c for c in sync.entries if c.get("type", 1) == 1}
    assert set(commands) == {"match", "find", "add", "delete", "list", "stats", "help", "describe", "colors", "read",
                             "scores", "watch", "results", "forget"}
    # The group switches offer their words as choices (left out: how it is set); /forget picks a person.
    assert [(o["name"], o["type"], o.get("required", False), [c["value"] for c in o["choices"]])
            for o in commands["watch"]["options"]] == [("setting", 3, False, ["on", "off"])]
    assert [c["value"] for c in commands["results"]["options"][0]["choices"]] == ["here", "private"]
    assert [(o["name"], o["type"], o.get("required", False)) for o in commands["forget"]["options"]] == [
        ("user", 6, False)]
    # /match takes a photo or a gallery image's number: both options optional.
    assert [(o["name"], o["type"], o.get("required", False)) for o in commands["match"]["options"]] == [
        ("image", 11, False), ("id", 4, False)]
    assert [o["name"] for o in commands["add"]["options"]] == ["image", "label", "description"]
    # The commands on a result are message context menus (Apps → Similar images), with no description.
    menus = [c for c in sync.entries if c.get("type") == 3]
    assert [c["name"] for c in menus] == ["Similar images", "Refine with words"]
    assert all("description" not in c and "options" not in c for c in menus)
    assert platform.intents.message_content is False


async def test_match_defers_then_follows_up_with_embed_file_and_button(
    fake: FakeDiscord, platform: DiscordPlatform, photos: dict[str, Path]
) -> None:
    options, resolved = image_option(fake, recompressed(photos["coffee"]))
    dispatch(platform, "interaction_create", fake.slash(ALICE, "match", options, resolved))
    [follow] = await fake.wait_for("POST", f"/webhooks/{APP_ID}/")
    [defer] = fake.sent("POST", "/callback")
    assert defer.body["type"] == 5  # deferred "thinking", before any work
    assert fake.calls.index(defer) < fake.calls.index(follow)
    embed = follow.body["embeds"][0]
    assert embed["description"].startswith("coffee\na cup\nScore: ") and "match 1 of 4" in embed["description"]
    [name] = follow.files
    assert embed["image"]["url"] == f"attachment://{name}" and follow.files[name][:3] == b"\xff\xd8\xff"
    rows = [[b["label"] for b in row["components"]] for row in follow.body["components"]]
    assert rows == [["Next match (2/4)", "Top 4"], ["More like this", "Not this"]]
    button = follow.body["components"][0]["components"][0]
    assert button["custom_id"].startswith("next:")

    # Pressing "Next match" acknowledges at once (callback type 6), then redraws that message in place.
    result = follow.response["id"]  # the "thinking" message the follow-up filled
    dispatch(platform, "interaction_create", fake.press(ALICE, result, button["custom_id"]))
    [edit] = await fake.wait_for("PATCH", "/messages/@original")
    assert [c.body["type"] for c in fake.sent("POST", "/callback")] == [5, 6]
    assert "match 2 of 4" in edit.body["embeds"][0]["description"]
    assert edit.body["components"][0]["components"][0]["label"] == "Next match (3/4)"
    assert len(edit.files) == 1
    assert "match 2 of 4" in fake.messages[result]["embeds"][0]["description"]  # the same message, redrawn
    assert len(fake.messages[result]["attachments"]) == 1  # its picture replaced, not added to


async def test_find_and_gallery_isolation(fake: FakeDiscord, platform: DiscordPlatform, gallery: Engine,
                                          photos: dict[str, Path]) -> None:
    options, resolved = image_option(fake, photos["motorcycle"].read_bytes(), "bike.png", "image/png")
    options += [{"name": "label", "type": 3, "value": "motorbike"},
                {"name": "description", "type": 3, "value": "red and shiny"}]
    dispatch(platform, "interaction_create", fake.slash(BOB, "add", options, resolved))
    [added] = await fake.wait_for("POST", f"/webhooks/{APP_ID}/")
    assert "Added #" in added.body["embeds"][0]["description"]
    [rec] = await gallery.list_images(f"discord:{GUILD_ID}")
    assert (rec.label, rec.description, rec.added_by) == ("motorbike", "red and shiny", "discord:12")

    dispatch(platform, "interaction_create", fake.slash(ALICE, "find", [{"name": "text", "type": 3,
                                                                        "value": "motorbike"}]))
    dispatch(platform, "interaction_create", fake.slash(ALICE, "find", [{"name": "text", "type": 3,
                                                                        "value": "motorbike"}], guild=False))
    follows = (await fake.wait_for("POST", f"/webhooks/{APP_ID}/", count=3))[1:]
    texts = sorted(f.body["embeds"][0]["description"] for f in follows)
    assert sum(t.startswith("motorbike") for t in texts) == 1  # the server sees it, Alice's DMs do not


async def test_delete_needs_author_or_manage_messages(fake: FakeDiscord, platform: DiscordPlatform,
                                                      gallery: Engine, photos: dict[str, Path]) -> None:
    rec = (await gallery.add_image(photos["flower"], collection=f"discord:{GUILD_ID}", label="flower",
                                   added_by="discord:12")).record
    delete = [{"name": "id", "type": 4, "value": rec.id}]
    dispatch(platform, "interaction_create", fake.slash(ALICE, "delete", delete))
    [denied] = await fake.wait_for("POST", f"/webhooks/{APP_ID}/")
    assert "Only the person who added it" in denied.body["embeds"][0]["description"]
    dispatch(platform, "interaction_create", fake.slash(ALICE, "delete", delete, permissions=MANAGE_MESSAGES))
    done = (await fake.wait_for("POST", f"/webhooks/{APP_ID}/", count=2))[1]
    assert done.body["embeds"][0]["description"].startswith(f"Deleted #{rec.id}")
    assert await gallery.list_images(f"discord:{GUILD_ID}") == []


@pytest.mark.parametrize(
    ("name", "content_type", "size", "expected"),
    [("report.pdf", "application/pdf", 1000, "is PDF, not an image"),
     ("huge.jpg", "image/jpeg", 30 * 1024 * 1024, "is 30.0 MB; the limit is 25 MB")],
)
async def test_attachments_checked_before_download(fake: FakeDiscord, platform: DiscordPlatform, name: str,
                                                   content_type: str, size: int, expected: str) -> None:
    options, resolved = image_option(fake, b"%PDF-1.4", name, content_type, size=size)
    dispatch(platform, "interaction_create", fake.slash(ALICE, "match", options, resolved))
    [follow] = await fake.wait_for("POST", f"/webhooks/{APP_ID}/")
    assert expected in follow.body["embeds"][0]["description"]
    assert fake.sent("GET", "/attachments/") == []


async def test_messages_in_dms_and_addressed_server_messages(fake: FakeDiscord, platform: DiscordPlatform,
                                                             photos: dict[str, Path]) -> None:
    rocket = photos["rocket"].read_bytes()
    dispatch(platform, "message_create", fake.message(
        BOB, attachments=[fake.attachment(rocket, "r.jpg", "image/jpeg")]))  # not addressed: ignored
    dispatch(platform, "message_create", fake.message(
        ALICE, guild=False, attachments=[fake.attachment(rocket, "r.jpg", "image/jpeg")]))
    [dm_reply] = await fake.wait_for("POST", "/channels/601/messages")
    assert dm_reply.body["embeds"][0]["description"].startswith("rocket")
    assert dm_reply.body["message_reference"]["message_id"]
    chelsea = photos["chelsea"].read_bytes()
    dispatch(platform, "message_create", fake.message(
        BOB, content="<@900> what is this?", mentions=[BOT],
        attachments=[fake.attachment(chelsea, "c.png", "image/png")]))
    [mention_reply] = await fake.wait_for("POST", "/channels/600/messages")
    assert mention_reply.body["embeds"][0]["description"].startswith("chelsea")
    # A reply to the bot is addressed to it; words replied to a message that is no result say so.
    bot_message = fake.message(BOT)
    dispatch(platform, "message_create", fake.message(BOB, content="coffee", referenced=bot_message))
    second = (await fake.wait_for("POST", "/channels/600/messages", count=2))[1]
    assert second.body["embeds"][0]["description"] == DISCORD_STYLE.not_a_result()
    assert len(fake.sent("GET", "/attachments/")) == 2  # the unaddressed photo was never downloaded


async def test_command_errors_become_a_plain_follow_up(fake: FakeDiscord, platform: DiscordPlatform,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    att = fake.attachment(b"", "gone.jpg", "image/jpeg", size=100)
    del fake.attachments[att["id"]]  # the CDN no longer has it
    with caplog.at_level(logging.ERROR):
        dispatch(platform, "interaction_create", fake.slash(
            ALICE, "match", [{"name": "image", "type": 11, "value": att["id"]}], {att["id"]: att}))
        [follow] = await fake.wait_for("POST", f"/webhooks/{APP_ID}/")
    assert follow.body["content"] == "Sorry, something went wrong on my side. Please try again."
    assert follow.body["flags"] == 64  # ephemeral
    assert any("while handling /match" in r.getMessage() for r in caplog.records)


async def test_clipbot_run_serves_telegram_and_discord_together(
    settings: Settings, fake: FakeDiscord, photos: dict[str, Path]
) -> None:
    """Both platforms in one event loop, Discord over a real (fake) gateway websocket; SIGTERM stops both."""
    import asyncio
    import os
    import signal

    from pydantic import SecretStr

    from bot.runner import run_bot
    from tests.fakes.telegram import FakeTelegram
    from tests.test_telegram import ALICE as TG_ALICE
    from tests.test_telegram import TOKEN as TG_TOKEN
    from tests.test_telegram import message as tg_message
    from tests.test_telegram import photo as tg_photo
    from tests.test_telegram import private as tg_private

    telegram = FakeTelegram(TG_TOKEN)
    await telegram.start()
    run_settings = settings.model_copy(update={
        "telegram_bot_token": SecretStr(TG_TOKEN), "telegram_base_url": telegram.base_url,
        "telegram_base_file_url": telegram.base_file_url, "discord_bot_token": SecretStr("fake-discord-token"),
        "discord_api_base_url": fake.api_base, "discord_gateway_url": f"ws://127.0.0.1:{fake.port}/gateway",
    })
    engine_task = asyncio.create_task(run_bot(run_settings))
    try:
        await asyncio.wait_for(fake.identified.wait(), 30)
        await telegram.wait_for("setMyCommands")
        assert fake.sent("PUT", f"/applications/{APP_ID}/commands")  # no DISCORD_GUILD_IDS: global sync
        # run_bot holds the only engine: index through a chat, then match through the other one.
        telegram.push(tg_message(tg_private(TG_ALICE), TG_ALICE, caption="/add rocket | launch",
                                 photo=tg_photo(telegram, "run-add", photos["rocket"].read_bytes())))
        await telegram.wait_for("sendMessage")
        await fake.dispatch("MESSAGE_CREATE", fake.message(
            ALICE, guild=False, attachments=[fake.attachment(photos["coffee"].read_bytes(), "c.png", "image/png")]))
        [reply] = await fake.wait_for("POST", "/channels/601/messages")
        assert "no images yet" in reply.body["embeds"][0]["description"]
        telegram.push(tg_message(tg_private(TG_ALICE), TG_ALICE,
                                 photo=tg_photo(telegram, "run-match", recompressed(photos["rocket"]))))
        [sent] = await telegram.wait_for("sendPhoto")
        assert sent.params["caption"].startswith("rocket\nlaunch")
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(engine_task, 30) == 0
    finally:
        if not engine_task.done():
            engine_task.cancel()
        await telegram.stop()


async def test_colors_and_describe_commands(fake: FakeDiscord, platform: DiscordPlatform,
                                            photos: dict[str, Path]) -> None:
    options, resolved = image_option(fake, photos["coffee"].read_bytes(), "c.png", "image/png")
    dispatch(platform, "interaction_create", fake.slash(ALICE, "colors", options, resolved))
    [palette] = await fake.wait_for("POST", f"/webhooks/{APP_ID}/")
    assert palette.body["embeds"][0]["description"].startswith("Dominant colours:")
    assert list(palette.files) == ["palette.png"]
    options, resolved = image_option(fake, photos["coffee"].read_bytes(), "c.png", "image/png")
    dispatch(platform, "interaction_create", fake.slash(ALICE, "describe", options, resolved))
    described = (await fake.wait_for("POST", f"/webhooks/{APP_ID}/", count=2))[1]
    assert "Captions are turned off" in described.body["embeds"][0]["description"]


async def test_read_answers_with_the_text_in_the_photo(fake: FakeDiscord, platform: DiscordPlatform) -> None:
    needs_reader()
    [sync] = fake.sent("PUT", f"/applications/{APP_ID}/guilds/{GUILD_ID}/commands")
    [read] = [c for c in sync.entries if c["name"] == "read"]
    assert read["description"] == "The text in a photo"
    assert [(o["name"], o["type"], o.get("required", False), o["description"]) for o in read["options"]] == [
        ("image", 11, True, "The photo")]
    options, resolved = image_option(fake, text_picture(), "sign.png", "image/png")
    dispatch(platform, "interaction_create", fake.slash(ALICE, "read", options, resolved))
    [follow] = await fake.wait_for("POST", f"/webhooks/{APP_ID}/")
    said = follow.body["embeds"][0]["description"]
    assert said.startswith("The text in this picture:\n") and "SUNFLOWER42" in said
    assert fold("WIFI PASSWORD") in fold(said)
    assert "/read image" in help_text(DISCORD_STYLE, private=True)
