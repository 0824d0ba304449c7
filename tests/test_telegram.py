"""Telegram end to end: the real python-telegram-bot Application against a fake Bot API over HTTP."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.telegram import TelegramPlatform
from adapters.telegram.messages import parse_command
from bot.composition import build_chat_engine, build_service
from bot.runner import SecretFilter, run_bot
from bot.settings import Settings
from core.gallery.engine import Engine
from core.models.clip import ClipEncoder
from core.search import fold
from tests.conftest import recompressed
from tests.fakes.telegram import BOT_USER, FakeTelegram
from tests.text_pictures import needs_reader, text_picture

TOKEN = "123456:TEST-token-for-the-fake-server"
ALICE = {"id": 11, "is_bot": False, "first_name": "Alice"}
BOB = {"id": 12, "is_bot": False, "first_name": "Bob"}
GROUP = {"id": -100123, "type": "supergroup", "title": "Friends"}
_ids = itertools.count(1)


def private(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "type": "private", "first_name": user["first_name"]}


def message(chat: dict[str, Any], sender: dict[str, Any], **content: Any) -> dict[str, Any]:
    return {"message": {"message_id": next(_ids), "date": int(time.time()), "chat": chat, "from": sender, **content}}


def command(chat: dict[str, Any], sender: dict[str, Any], text: str, **extra: Any) -> dict[str, Any]:
    length = len(text.split()[0])
    return message(chat, sender, text=text, entities=[{"type": "bot_command", "offset": 0, "length": length}],
                   **extra)


def photo(fake: FakeTelegram, file_id: str, data: bytes, size: int | None = None) -> list[dict[str, Any]]:
    fake.add_file(file_id, data, f"photos/{file_id}.jpg")
    small = {"file_id": f"{file_id}-thumb", "file_unique_id": f"t{file_id}", "width": 90, "height": 60,
             "file_size": 900}
    return [small, {"file_id": file_id, "file_unique_id": f"u{file_id}", "width": 640, "height": 427,
                    "file_size": size if size is not None else len(data)}]


@pytest.fixture
async def telegram(gallery: Engine, settings: Settings) -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram(TOKEN)
    await fake.start()
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)
    platform = TelegramPlatform(service, token=TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url,
                                max_file_bytes=20 * 1024 * 1024, poll_timeout=1)
    await platform.start()
    yield fake
    await platform.stop()
    await fake.stop()


async def test_start_registers_commands(telegram: FakeTelegram) -> None:
    [call] = telegram.sent("setMyCommands")
    assert {c["command"] for c in call.params["commands"]} >= {"find", "match", "add", "delete", "list", "stats"}


async def test_private_photo_is_matched_with_score_and_next_button(telegram: FakeTelegram,
                                                                   photos: dict[str, Path]) -> None:
    telegram.push(message(private(ALICE), ALICE, photo=photo(telegram, "p1", recompressed(photos["coffee"]))))
    [sent] = await telegram.wait_for("sendPhoto")
    caption = sent.params["caption"]
    assert caption.startswith("coffee\na cup\nScore: ") and "match 1 of 4" in caption
    assert sent.files["photo"][:3] == b"\xff\xd8\xff"
    assert [c.params["file_id"] for c in telegram.sent("getFile")] == ["p1"]  # the largest size only
    button = sent.params["reply_markup"]["inline_keyboard"][0][0]
    assert button["text"] == "Next match (2/4)"

    # The button pages in place: editMessageMedia on the same message, and the query answered.
    telegram.push({"callback_query": {
        "id": "cb1", "from": ALICE, "chat_instance": "ci", "data": button["callback_data"],
        "message": {"message_id": 555, "date": int(time.time()), "chat": private(ALICE), "from": BOT_USER,
                    "photo": [{"file_id": "x", "file_unique_id": "x", "width": 1, "height": 1}], "caption": caption},
    }})
    [edit] = await telegram.wait_for("editMessageMedia")
    await telegram.wait_for("answerCallbackQuery")
    assert edit.params["message_id"] == 555
    media = edit.params["media"]
    assert "match 2 of 4" in media["caption"] and media["type"] == "photo"
    assert edit.params["reply_markup"]["inline_keyboard"][0][0]["text"] == "Next match (3/4)"


async def test_find_in_private_and_in_group_with_bot_name(telegram: FakeTelegram) -> None:
    telegram.push(command(private(ALICE), ALICE, "/find rocket"))
    [sent] = await telegram.wait_for("sendPhoto")
    assert sent.params["caption"].startswith("rocket\non the launch pad")
    telegram.push(command(GROUP, BOB, "/find@clipbot_test_bot cat"))
    sent = (await telegram.wait_for("sendPhoto", count=2))[1]
    assert sent.params["chat_id"] == GROUP["id"] and sent.params["caption"].startswith("chelsea")
    assert sent.params["reply_parameters"]["message_id"]  # quoted in groups
    telegram.push(command(GROUP, BOB, "/find@some_other_bot cat"))
    telegram.push(command(private(ALICE), ALICE, "/stats"))  # a marker: handled after the one before
    await telegram.wait_for("sendMessage")
    assert len(telegram.sent("sendPhoto")) == 2


async def test_group_traffic_is_ignored_unless_addressed(telegram: FakeTelegram, photos: dict[str, Path]) -> None:
    data = photos["rocket"].read_bytes()
    telegram.push(message(GROUP, BOB, photo=photo(telegram, "g1", data)))  # no mention: not ours
    telegram.push(message(GROUP, BOB, text="nice rocket"))
    # /match as a reply to that photo is ours.
    original = {"message_id": 77, "date": int(time.time()), "chat": GROUP, "from": BOB,
                "photo": photo(telegram, "g2", data)}
    telegram.push(command(GROUP, ALICE, "/match", reply_to_message=original))
    [sent] = await telegram.wait_for("sendPhoto")
    assert sent.params["caption"].startswith("rocket") and "Score: 1.00" in sent.params["caption"]
    # A photo whose caption mentions the bot is ours too.
    telegram.push(message(GROUP, BOB, photo=photo(telegram, "g3", photos["chelsea"].read_bytes()),
                          caption="what is this @clipbot_test_bot?"))
    second = (await telegram.wait_for("sendPhoto", count=2))[1]
    assert second.params["caption"].startswith("chelsea")
    assert [c.params["file_id"] for c in telegram.sent("getFile")] == ["g2", "g3"]
    assert telegram.sent("sendMessage") == []


async def test_add_with_caption_stores_in_the_chat_gallery(telegram: FakeTelegram, gallery: Engine,
                                                           photos: dict[str, Path]) -> None:
    telegram.push(message(GROUP, BOB, photo=photo(telegram, "a1", photos["motorcycle"].read_bytes()),
                          caption="/add motorbike | red and shiny"))
    [sent] = await telegram.wait_for("sendMessage")
    assert "Added #" in sent.params["text"] and "motorbike" in sent.params["text"]
    [rec] = await gallery.list_images(f"telegram:{GROUP['id']}")
    assert (rec.label, rec.description, rec.added_by) == ("motorbike", "red and shiny", "telegram:12")
    # Alice in private cannot see the group's image, but the group can.
    telegram.push(command(private(ALICE), ALICE, "/find motorbike"))
    telegram.push(command(GROUP, ALICE, "/find motorbike"))
    sent_photos = await telegram.wait_for("sendPhoto", count=2)
    by_chat = {c.params["chat_id"]: c.params["caption"] for c in sent_photos}
    assert by_chat[GROUP["id"]].startswith("motorbike") and not by_chat[ALICE["id"]].startswith("motorbike")


async def test_add_as_reply_and_delete_permissions(telegram: FakeTelegram, gallery: Engine,
                                                   photos: dict[str, Path]) -> None:
    original = {"message_id": 78, "date": int(time.time()), "chat": GROUP, "from": BOB,
                "photo": photo(telegram, "r1", photos["flower"].read_bytes())}
    telegram.push(command(GROUP, BOB, "/add flower | pink", reply_to_message=original))
    await telegram.wait_for("sendMessage")
    [rec] = await gallery.list_images(f"telegram:{GROUP['id']}")
    telegram.push(command(GROUP, ALICE, f"/delete {rec.id}"))  # Alice is neither author nor admin
    denied = (await telegram.wait_for("sendMessage", count=2))[1]
    assert "Only the person who added it" in denied.params["text"]
    assert telegram.sent("getChatMember")[0].params["user_id"] == ALICE["id"]
    telegram.member_status[(GROUP["id"], ALICE["id"])] = "administrator"
    telegram.push(command(GROUP, ALICE, f"/delete {rec.id}"))
    done = (await telegram.wait_for("sendMessage", count=3))[2]
    assert done.params["text"].startswith(f"Deleted #{rec.id}")
    assert await gallery.list_images(f"telegram:{GROUP['id']}") == []


async def test_documents_checked_before_download(telegram: FakeTelegram, gallery: Engine,
                                                 photos: dict[str, Path]) -> None:
    telegram.add_file("pdf1", b"%PDF-1.4 ...", "documents/report.pdf")
    telegram.push(message(private(ALICE), ALICE, document={
        "file_id": "pdf1", "file_unique_id": "updf", "file_name": "report.pdf", "mime_type": "application/pdf",
        "file_size": 12}))
    telegram.push(message(private(ALICE), ALICE, document={
        "file_id": "big1", "file_unique_id": "ubig", "file_name": "huge.jpg", "mime_type": "image/jpeg",
        "file_size": 25 * 1024 * 1024}))
    refusals = await telegram.wait_for("sendMessage", count=2)
    texts = sorted(c.params["text"] for c in refusals)
    assert texts[0].startswith("That file is 25.0 MB; the limit is 20 MB")
    assert texts[1].startswith("That file is PDF, not an image")
    assert telegram.sent("getFile") == []  # refused from metadata alone
    # An image sent as a file is matched like a photo.
    telegram.add_file("doc-img", photos["astronaut"].read_bytes(), "documents/astronaut.png")
    telegram.push(message(private(ALICE), ALICE, document={
        "file_id": "doc-img", "file_unique_id": "uimg", "file_name": "astronaut.png", "mime_type": "image/png",
        "file_size": photos["astronaut"].stat().st_size}))
    [sent] = await telegram.wait_for("sendPhoto")
    assert sent.params["caption"].startswith("astronaut")
    assert len(await gallery.list_images()) == 4


async def test_corrupt_photo_gets_a_clear_reply(telegram: FakeTelegram, photos: dict[str, Path]) -> None:
    half = photos["rocket"].read_bytes()[:4000]
    telegram.push(message(private(ALICE), ALICE, photo=photo(telegram, "bad", half)))
    [sent] = await telegram.wait_for("sendMessage")
    assert "damaged or truncated" in sent.params["text"]


async def test_errors_reach_the_user_without_details(telegram: FakeTelegram, photos: dict[str, Path],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    telegram.fail_downloads = True  # Telegram lists the file, then fails to serve it
    with caplog.at_level(logging.ERROR):
        telegram.push(message(private(ALICE), ALICE, photo=photo(telegram, "ghost", photos["rocket"].read_bytes())))
        [sent] = await telegram.wait_for("sendMessage")
    assert sent.params["text"] == "Sorry, something went wrong on my side. Please try again."
    assert "Traceback" not in sent.params["text"]
    assert any("while handling an update" in r.getMessage() for r in caplog.records)


def test_secret_filter_blanks_tokens_in_messages_and_tracebacks() -> None:
    record = logging.LogRecord("httpx", logging.ERROR, __file__, 1, "GET %s failed", (f"/bot{TOKEN}/getMe",), None)
    try:
        raise RuntimeError(f"boom at https://api.telegram.org/bot{TOKEN}/getFile")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    SecretFilter([TOKEN]).filter(record)
    assert TOKEN not in record.getMessage() and TOKEN not in (record.exc_text or "")
    assert "<token>" in record.getMessage()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("/find red car", ("find", "red car")), ("/ADD@clipbot_test_bot cat | x", ("add", "cat | x")),
     ("/match@other_bot", None), ("hello", None), ("/match", ("match", ""))],
)
def test_parse_command(text: str, expected: tuple[str, str] | None) -> None:
    parsed = parse_command(text, "clipbot_test_bot")
    assert (None if parsed is None else (parsed.name, parsed.args)) == expected


async def test_clipbot_run_serves_telegram_and_stops_on_sigterm(
    settings: Settings, gallery: Engine, photos: dict[str, Path], clip_dir: Path
) -> None:
    await gallery.close()  # run_bot opens the same database itself
    fake = FakeTelegram(TOKEN)
    await fake.start()
    run_settings = settings.model_copy(update={
        "telegram_bot_token": __import__("pydantic").SecretStr(TOKEN), "telegram_base_url": fake.base_url,
        "telegram_base_file_url": fake.base_file_url,
    })
    task = asyncio.create_task(run_bot(run_settings))
    try:
        await fake.wait_for("setMyCommands")
        fake.push(message(private(ALICE), ALICE, photo=photo(fake, "run1", recompressed(photos["rocket"]))))
        [sent] = await fake.wait_for("sendPhoto")
        assert sent.params["caption"].startswith("rocket")
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 20) == 0
    finally:
        if not task.done():
            task.cancel()
        await fake.stop()


async def test_colors_scores_and_the_top_button(telegram: FakeTelegram, photos: dict[str, Path]) -> None:
    telegram.push(message(GROUP, BOB, photo=photo(telegram, "col", photos["coffee"].read_bytes()), caption="/colors"))
    [palette] = await telegram.wait_for("sendPhoto")
    assert palette.params["caption"].startswith("Dominant colours:") and palette.files["photo"][:4] == b"\x89PNG"
    original = {"message_id": 79, "date": int(time.time()), "chat": GROUP, "from": BOB,
                "photo": photo(telegram, "sc", photos["rocket"].read_bytes())}
    telegram.push(command(GROUP, ALICE, "/scores", reply_to_message=original))
    chart = (await telegram.wait_for("sendPhoto", count=2))[1]
    assert chart.params["caption"].startswith("Scores against 4 images")
    telegram.push(command(GROUP, ALICE, "/describe", reply_to_message=original))
    [off] = await telegram.wait_for("sendMessage")
    assert "Captions are turned off" in off.params["text"]
    telegram.push(command(private(ALICE), ALICE, "/find cat"))
    found = (await telegram.wait_for("sendPhoto", count=3))[2]
    top_button = found.params["reply_markup"]["inline_keyboard"][0][1]
    assert top_button["text"] == "Top 4"
    telegram.push({"callback_query": {
        "id": "cb2", "from": ALICE, "chat_instance": "ci", "data": top_button["callback_data"],
        "message": {"message_id": 556, "date": int(time.time()), "chat": private(ALICE), "from": BOT_USER,
                    "photo": [{"file_id": "x", "file_unique_id": "x", "width": 1, "height": 1}]},
    }})
    collage = (await telegram.wait_for("sendPhoto", count=4))[3]
    assert collage.params["caption"] == "Top 4 for cat" and collage.files["photo"][:4] == b"\x89PNG"
    await telegram.wait_for("answerCallbackQuery")


async def test_read_answers_with_the_text_in_the_photo(telegram: FakeTelegram) -> None:
    needs_reader()
    assert "read" in {c["command"] for c in telegram.sent("setMyCommands")[0].params["commands"]}
    # A photo with /read as its caption, in private.
    telegram.push(message(private(ALICE), ALICE, photo=photo(telegram, "sign", text_picture(fmt="JPEG")),
                          caption="/read"))
    [read] = await telegram.wait_for("sendMessage")
    assert read.params["text"].startswith("The text in this picture:\n")
    assert "SUNFLOWER42" in read.params["text"] and fold("WIFI PASSWORD") in fold(read.params["text"])
    # /read replied to someone's photo in a group.
    original = {"message_id": 81, "date": int(time.time()), "chat": GROUP, "from": BOB,
                "photo": photo(telegram, "sign-group", text_picture())}
    telegram.push(command(GROUP, ALICE, "/read@clipbot_test_bot", reply_to_message=original))
    replied = (await telegram.wait_for("sendMessage", count=2))[1]
    assert replied.params["chat_id"] == GROUP["id"] and "SUNFLOWER42" in replied.params["text"]
    telegram.push(command(private(ALICE), ALICE, "/help"))
    help_text = (await telegram.wait_for("sendMessage", count=3))[2]
    assert "/read" in help_text.params["text"]


async def test_read_with_reading_turned_off_says_so(settings: Settings, encoder: ClipEncoder) -> None:
    off = settings.model_copy(update={"ocr": "none", "rate_limit_per_minute": 0})  # CLIPBOT_OCR=none
    engine = build_chat_engine(off, encoder)
    await engine.start()
    fake = FakeTelegram(TOKEN)
    await fake.start()
    platform = TelegramPlatform(build_service(off, engine), token=TOKEN, base_url=fake.base_url,
                                base_file_url=fake.base_file_url, max_file_bytes=20 * 1024 * 1024, poll_timeout=1)
    await platform.start()
    try:
        fake.push(message(private(ALICE), ALICE, photo=photo(fake, "off", text_picture()), caption="/read"))
        [sent] = await fake.wait_for("sendMessage")
        assert sent.params["text"] == "Reading the text in pictures is turned off here (CLIPBOT_OCR=none)."
    finally:
        await platform.stop()
        await fake.stop()
        await engine.close()
