"""Reliability end to end, against fakes as strict as Telegram and Discord: every reply arrives, limits hold."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import SecretStr

from adapters.discord import DiscordPlatform
from adapters.telegram import TelegramPlatform
from bot.composition import build_chat_engine, build_service
from bot.runner import run_bot
from bot.settings import Settings
from core.gallery.engine import Engine
from core.models.clip import ClipEncoder
from tests.conftest import recompressed
from tests.fakes import RecordingEncoder
from tests.fakes.discord import APP_ID, GUILD_ID, FakeDiscord
from tests.fakes.telegram import FakeTelegram
from tests.test_discord import ALICE as DISCORD_ALICE
from tests.test_discord import dispatch, image_option
from tests.test_telegram import ALICE, BOB, GROUP, TOKEN, command, message, photo, private

APOLOGY = "Sorry, something went wrong on my side. Please try again."


async def start_telegram(fake: FakeTelegram, engine: Engine, settings: Settings, **kwargs: Any) -> TelegramPlatform:
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": kwargs.pop("per_minute", 0)}),
                            engine)
    platform = TelegramPlatform(service, token=TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url,
                                max_file_bytes=20 * 1024 * 1024, poll_timeout=1, **kwargs)
    await platform.start()
    return platform


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram(TOKEN)
    await server.start()
    yield server
    await server.stop()


def texts(fake: FakeTelegram) -> list[str]:
    return [c.params.get("text") or c.params.get("caption") or "" for c in fake.sent("sendMessage", "sendPhoto",
                                                                                       "sendDocument")]


async def test_panorama_and_long_labels_arrive_as_photos(fake: FakeTelegram, gallery: Engine, settings: Settings,
                                                         tmp_path: Path) -> None:
    pano = tmp_path / "pano.png"
    Image.new("RGB", (12000, 400), "teal").save(pano)
    await gallery.add_image(pano, label="P" * 200, description="panorama " * 110)
    platform = await start_telegram(fake, gallery, settings)
    try:
        fake.push(message(private(ALICE), ALICE, photo=photo(fake, "pano", pano.read_bytes())))
        [sent] = await fake.wait_for("sendPhoto")
        assert sent.params["caption"].splitlines()[0] == "P" * 200
        assert "Score: " in sent.params["caption"] and "match 1 of 5" in sent.params["caption"]
        assert fake.refused() == []
    finally:
        await platform.stop()


async def test_refused_photo_falls_back_to_document_then_text(fake: FakeTelegram, gallery: Engine,
                                                              settings: Settings, photos: dict[str, Path]) -> None:
    platform = await start_telegram(fake, gallery, settings)
    try:
        fake.photo_limit = 1000  # every preview is now "too big" for a photo
        fake.push(message(private(ALICE), ALICE, photo=photo(fake, "p1", recompressed(photos["coffee"]))))
        [doc] = await fake.wait_for("sendDocument")
        assert doc.params["caption"].startswith("coffee\na cup\nScore: ") and doc.files
        assert [c.method for c in fake.refused()] == ["sendPhoto"]
        fake.document_limit = 1000  # and too big for a document as well
        fake.push(message(private(BOB), BOB, photo=photo(fake, "p2", recompressed(photos["rocket"]))))
        [text] = await fake.wait_for("sendMessage")
        assert text.params["text"].startswith("rocket\non the launch pad\nScore: ")
        # A refusal is not tried again: each kind of send was refused once, then the next was tried.
        assert [c.method for c in fake.refused()] == ["sendPhoto", "sendPhoto", "sendDocument"]
        assert APOLOGY not in texts(fake)
    finally:
        await platform.stop()


async def test_next_match_that_cannot_be_shown_in_place_comes_anew(fake: FakeTelegram, gallery: Engine,
                                                                   settings: Settings,
                                                                   photos: dict[str, Path]) -> None:
    platform = await start_telegram(fake, gallery, settings)
    try:
        fake.push(message(private(ALICE), ALICE, photo=photo(fake, "p1", recompressed(photos["coffee"]))))
        [sent] = await fake.wait_for("sendPhoto")
        button = sent.params["reply_markup"]["inline_keyboard"][0][0]
        fake.photo_limit = 1000
        fake.push({"callback_query": {
            "id": "cb1", "from": ALICE, "chat_instance": "ci", "data": button["callback_data"],
            "message": {"message_id": 555, "date": int(time.time()), "chat": private(ALICE), "from": ALICE,
                        "photo": [{"file_id": "x", "file_unique_id": "x", "width": 1, "height": 1}]},
        }})
        await fake.wait_for("answerCallbackQuery")
        [again] = await fake.wait_for("sendDocument")
        assert "match 2 of 4" in again.params["caption"]
        assert [c.method for c in fake.refused()] == ["editMessageMedia", "sendPhoto"]
    finally:
        await platform.stop()


async def test_group_flood_stays_within_the_group_limit_and_every_reply_arrives(
    fake: FakeTelegram, gallery: Engine, settings: Settings
) -> None:
    # Telegram's rule (20 a minute) scaled down in time: 5 messages in any 3 s.
    fake.group_limit, fake.group_window = 5, 3.0
    platform = await start_telegram(fake, gallery, settings, group_messages_per_minute=5, group_period=3.2)
    try:
        for n in range(12):
            fake.push(command(GROUP, ALICE if n % 2 else BOB, "/find cat"))
        await fake.wait_for("sendPhoto", "sendMessage", count=12, timeout=30)
        assert fake.refused() == []  # not one 429
        assert fake.max_in_window(GROUP["id"], 3.0) <= 5
    finally:
        await platform.stop()


async def test_private_chat_gets_at_most_one_message_a_second(fake: FakeTelegram, gallery: Engine,
                                                              settings: Settings) -> None:
    platform = await start_telegram(fake, gallery, settings)
    try:
        for _ in range(3):
            fake.push(command(private(ALICE), ALICE, "/stats"))
        await fake.wait_for("sendMessage", count=3)
        assert fake.max_in_window(ALICE["id"], 0.95) == 1
    finally:
        await platform.stop()


async def test_a_flooding_user_is_told_once_and_costs_one_download(fake: FakeTelegram, gallery: Engine,
                                                                   settings: Settings,
                                                                   photos: dict[str, Path]) -> None:
    platform = await start_telegram(fake, gallery, settings, per_minute=1)
    try:
        for n in range(4):
            fake.push(message(private(ALICE), ALICE, photo=photo(fake, f"f{n}", recompressed(photos["coffee"]))))
        await fake.wait_for("sendPhoto")
        [slow_down] = await fake.wait_for("sendMessage")
        assert "faster than I can take them" in slow_down.params["text"]
        await asyncio.sleep(0.5)
        assert len(fake.sent("getFile")) == 1 and len(fake.sent("sendMessage")) == 1
    finally:
        await platform.stop()


async def test_group_upgrade_keeps_its_gallery(fake: FakeTelegram, gallery: Engine, settings: Settings,
                                               photos: dict[str, Path]) -> None:
    old = {"id": -555, "type": "group", "title": "Friends"}
    new = {"id": -1009999, "type": "supergroup", "title": "Friends"}
    platform = await start_telegram(fake, gallery, settings)
    try:
        fake.push(message(old, ALICE, caption="/add bike | red", photo=photo(fake, "b", photos["motorcycle"]
                                                                               .read_bytes())))
        [added] = await fake.wait_for("sendMessage")
        assert added.params["text"].startswith("Added #5")
        # Telegram announces the upgrade twice: in the old group and in the new supergroup.
        fake.push(message(old, ALICE, migrate_to_chat_id=new["id"]))
        fake.push(message(new, ALICE, migrate_from_chat_id=old["id"]))
        await asyncio.sleep(0.5)
        fake.push(command(new, ALICE, "/list"))
        listed = (await fake.wait_for("sendMessage", count=2))[1]
        assert "(1 image," in listed.params["text"] and "#5 bike" in listed.params["text"]
        counts = await gallery.collection_counts()
        assert counts.get("telegram:-1009999") == 1 and "telegram:-555" not in counts
        fake.push(message(new, ALICE, photo=photo(fake, "m", recompressed(photos["motorcycle"])),
                          caption="/match"))
        [matched] = await fake.wait_for("sendPhoto")
        assert matched.params["caption"].startswith("bike")  # the moved vectors are searched under the new id
    finally:
        await platform.stop()


async def test_sigterm_lets_the_reply_being_made_arrive(settings: Settings, encoder: ClipEncoder,
                                                        photos: dict[str, Path], fake: FakeTelegram) -> None:
    slow = RecordingEncoder(encoder, delay=1.5)
    run_settings = settings.model_copy(update={
        "telegram_bot_token": SecretStr(TOKEN), "telegram_base_url": fake.base_url,
        "telegram_base_file_url": fake.base_file_url, "rate_limit_per_minute": 0,
    })
    engine = build_chat_engine(run_settings, slow)
    async with build_chat_engine(run_settings, encoder) as filler:
        await filler.add_image(photos["rocket"], label="rocket")
    task = asyncio.create_task(run_bot(run_settings, engine=engine))
    try:
        await fake.wait_for("setMyCommands")
        fake.push(message(private(ALICE), ALICE, photo=photo(fake, "slow", recompressed(photos["rocket"]))))
        await fake.wait_for("download")
        await asyncio.sleep(0.3)  # decoded and in the model by now, which takes 1.5 s
        killed_at = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 30) == 0
        [sent] = fake.sent("sendPhoto")
        assert sent.params["caption"].startswith("rocket")
        [(began, ended, _)] = [span for span in slow.spans if span[2] == 1]
        assert began <= killed_at <= ended  # SIGTERM came while the photo was being encoded
        assert not engine.started  # and then the database closed
    finally:
        if not task.done():
            task.cancel()


# -- Discord ------------------------------------------------------------------------------------


@pytest.fixture
async def tight_discord(gallery: Engine, settings: Settings) -> AsyncIterator[tuple[FakeDiscord, DiscordPlatform]]:
    fake = FakeDiscord(upload_limit=2000)  # a server whose uploads are tiny: every preview is too big
    await fake.start()
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)
    platform = DiscordPlatform(service, token="fake-discord-token", guild_ids=(int(GUILD_ID),),
                               api_base_url=fake.api_base)
    await platform.login()
    yield fake, platform
    await platform.stop()
    await fake.stop()


async def test_discord_reply_over_the_upload_limit_arrives_without_its_picture(
    tight_discord: tuple[FakeDiscord, DiscordPlatform], photos: dict[str, Path]
) -> None:
    fake, platform = tight_discord
    options, resolved = image_option(fake, recompressed(photos["coffee"]))
    dispatch(platform, "interaction_create", fake.slash(DISCORD_ALICE, "match", options, resolved))
    follow_ups = await fake.wait_for("POST", f"/webhooks/{APP_ID}/")
    embed = follow_ups[-1].json["embeds"][0]  # type: ignore[index]
    assert embed["description"].startswith("coffee\na cup\nScore: ") and "image" not in embed
    assert not follow_ups[-1].files
    assert all(c.status == 413 for c in fake.refused())  # at most the one refused upload, then the text


async def test_passing_server_errors_and_429s_do_not_lose_replies(fake: FakeTelegram, gallery: Engine,
                                                                  settings: Settings,
                                                                  photos: dict[str, Path]) -> None:
    platform = await start_telegram(fake, gallery, settings)
    try:
        fake.inject("sendPhoto", "502-html")
        fake.inject("sendPhoto", "500-html")
        fake.push(message(private(ALICE), ALICE, photo=photo(fake, "p1", recompressed(photos["coffee"]))))
        [sent] = await fake.wait_for("sendPhoto", timeout=20)
        assert sent.params["caption"].startswith("coffee")
        fake.inject("sendMessage", "429")
        fake.push(command(private(BOB), BOB, "/stats"))
        [stats] = await fake.wait_for("sendMessage", timeout=20)
        assert stats.params["text"].startswith("This chat's gallery")
        assert sorted(c.status for c in fake.refused()) == [429, 500, 502]
        assert APOLOGY not in texts(fake)
    finally:
        await platform.stop()


async def test_discord_rate_limits_and_server_errors_do_not_lose_replies(
    tight_discord: tuple[FakeDiscord, DiscordPlatform]
) -> None:
    fake, platform = tight_discord
    fake.inject("/webhooks/", "429")
    dispatch(platform, "interaction_create", fake.slash(DISCORD_ALICE, "stats"))
    [follow] = await fake.wait_for("POST", f"/webhooks/{APP_ID}/", timeout=20)
    assert follow.json["embeds"][0]["description"].startswith("This chat's gallery")  # type: ignore[index]
    assert [c.status for c in fake.refused()] == [429]
