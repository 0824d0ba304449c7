"""The conversation on Telegram: refine by replying, More like this / Not this, /similar, /match #12,
the /find syntax, isolation between users and chats, expiry. Real python-telegram-bot against the
fake Bot API; replies carry the replied-to message as Telegram sends it (with its keyboard)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.telegram import TelegramPlatform
from bot.composition import build_service
from bot.settings import Settings
from core.gallery.engine import Engine
from tests.fakes.telegram import Call, FakeTelegram
from tests.test_telegram import ALICE, BOB, GROUP, TOKEN, command, message, photo, private


async def start(gallery: Engine, settings: Settings, **changes: Any) -> tuple[FakeTelegram, TelegramPlatform]:
    fake = FakeTelegram(TOKEN)
    await fake.start()
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0, **changes}), gallery)
    platform = TelegramPlatform(service, token=TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url,
                                max_file_bytes=20 * 1024 * 1024, poll_timeout=1)
    await platform.start()
    return fake, platform


@pytest.fixture
async def telegram(gallery: Engine, settings: Settings) -> AsyncIterator[FakeTelegram]:
    fake, platform = await start(gallery, settings)
    yield fake
    await platform.stop()
    await fake.stop()


def buttons(sent: Call) -> dict[str, str]:
    """A sent result's buttons by their text's first word: Next, Top, More, Not."""
    rows = sent.params["reply_markup"]["inline_keyboard"]
    return {b["text"].split()[0]: b["callback_data"] for row in rows for b in row}


def shown_id(sent: Call) -> int:
    """The image a result shows: the #id in its caption's last line."""
    return int(sent.params["caption"].splitlines()[-1].split("#")[1].split()[0])


def press(fake: FakeTelegram, user: dict[str, Any], sent: Call, data: str) -> None:
    fake.push({"callback_query": {"id": f"cb{time.monotonic_ns()}", "from": user, "chat_instance": "ci",
                                  "data": data, "message": sent.result}})


async def next_photo(fake: FakeTelegram, count: int) -> Call:
    return (await fake.wait_for("sendPhoto", count=count))[count - 1]


async def test_result_buttons_come_in_two_rows(telegram: FakeTelegram, photos: dict[str, Path]) -> None:
    telegram.push(command(private(ALICE), ALICE, "/find rocket"))
    sent = await next_photo(telegram, 1)
    rows = sent.params["reply_markup"]["inline_keyboard"]
    assert [[b["text"] for b in row] for row in rows] == [["Next match (2/4)", "Top 4"],
                                                         ["More like this", "Not this"]]
    assert all(len(b["callback_data"].encode()) <= 64 for row in rows for b in row)


async def test_a_reply_with_words_refines_the_result_and_can_be_refined_again(
        telegram: FakeTelegram, photos: dict[str, Path]) -> None:
    telegram.push(message(private(ALICE), ALICE, photo=photo(telegram, "p1", photos["coffee"].read_bytes())))
    first = await next_photo(telegram, 1)
    telegram.push(message(private(ALICE), ALICE, text="at night", reply_to_message=first.result))
    refined = await next_photo(telegram, 2)
    assert refined.params["caption"].startswith(f"#{shown_id(first)}, at night:")
    assert shown_id(refined) != shown_id(first)  # the refined image itself is not shown back
    assert set(buttons(refined)) == {"Next", "Top", "More", "Not"}
    # The new result is in the same thread: it can be refined again, with a subtraction.
    telegram.push(message(private(ALICE), ALICE, text="but not blurry", reply_to_message=refined.result))
    again = await next_photo(telegram, 3)
    assert again.params["caption"].startswith(f"#{shown_id(refined)}, but not blurry:")
    assert shown_id(again) not in (shown_id(refined),)


async def test_not_this_never_brings_a_rejected_image_back(telegram: FakeTelegram) -> None:
    telegram.push(command(private(ALICE), ALICE, "/find rocket"))
    first = await next_photo(telegram, 1)
    seen = [shown_id(first)]
    current = first
    for n in range(2, 5):  # three rejections in a row, each on the newest result
        press(telegram, ALICE, current, buttons(current)["Not"])
        pressed, current = current, await next_photo(telegram, n)
        assert current.params["caption"].startswith(f"Not #{seen[-1]}; the next best:")
        # A new message, replying to the result the button was on.
        assert current.params["reply_parameters"]["message_id"] == pressed.result["message_id"]
        assert shown_id(current) not in seen
        seen.append(shown_id(current))
    press(telegram, ALICE, current, buttons(current)["Not"])  # every image of the four rejected
    [*_, done] = await telegram.wait_for("sendMessage")
    assert "nothing else to show" in done.params["text"]


async def test_more_like_this_answers_with_a_new_result(telegram: FakeTelegram) -> None:
    telegram.push(command(private(ALICE), ALICE, "/find cat"))
    first = await next_photo(telegram, 1)
    press(telegram, ALICE, first, buttons(first)["More"])
    more = await next_photo(telegram, 2)
    assert more.params["caption"].startswith(f"More like #{shown_id(first)}:")
    assert shown_id(more) != shown_id(first)
    await telegram.wait_for("answerCallbackQuery")
    assert not telegram.sent("editMessageMedia")  # the result stays; the answer is a new message


async def test_two_users_refining_one_result_in_a_group_never_mix(telegram: FakeTelegram) -> None:
    telegram.push(command(GROUP, ALICE, "/find rocket"))
    result = await next_photo(telegram, 1)
    press(telegram, BOB, result, buttons(result)["Not"])
    bob_1 = await next_photo(telegram, 2)
    press(telegram, BOB, bob_1, buttons(bob_1)["Not"])
    bob_2 = await next_photo(telegram, 3)
    assert len({shown_id(result), shown_id(bob_1), shown_id(bob_2)}) == 3
    # Alice rejects the same first result: Bob's second rejection is not hers, so she sees the
    # image Bob turned down.
    press(telegram, ALICE, result, buttons(result)["Not"])
    alice_1 = await next_photo(telegram, 4)
    assert shown_id(alice_1) == shown_id(bob_1)


async def test_other_chats_cannot_use_a_result(telegram: FakeTelegram, gallery: Engine,
                                              photos: dict[str, Path]) -> None:
    telegram.push(command(private(ALICE), ALICE, "/find rocket"))
    result = await next_photo(telegram, 1)
    elsewhere = dict(result.result, chat=GROUP)  # the same buttons, pressed in another chat
    telegram.push({"callback_query": {"id": "x1", "from": BOB, "chat_instance": "ci",
                                      "data": buttons(result)["Not"], "message": elsewhere}})
    [alert] = await telegram.wait_for("answerCallbackQuery")
    assert alert.params["show_alert"] and "expired" in alert.params["text"]
    telegram.push(message(GROUP, BOB, text="at night", reply_to_message=elsewhere))
    [answer] = await telegram.wait_for("sendMessage")
    assert "expired" in answer.params["text"]


async def test_threads_expire(gallery: Engine, settings: Settings) -> None:
    fake, platform = await start(gallery, settings, thread_hours=0.3 / 3600)  # 0.3 s
    try:
        fake.push(command(private(ALICE), ALICE, "/find rocket"))
        result = await next_photo(fake, 1)
        await asyncio.sleep(0.5)
        press(fake, ALICE, result, buttons(result)["Next"])
        [alert] = await fake.wait_for("answerCallbackQuery")
        assert alert.params["show_alert"] and "expired" in alert.params["text"]
        fake.push(message(private(ALICE), ALICE, text="at night", reply_to_message=result.result))
        [answer] = await fake.wait_for("sendMessage")
        assert "These results have expired" in answer.params["text"]
        assert not fake.sent("editMessageMedia") and len(fake.sent("sendPhoto")) == 1
    finally:
        await platform.stop()
        await fake.stop()


async def test_replies_that_cannot_refine_get_a_clear_sentence(telegram: FakeTelegram) -> None:
    telegram.push(command(private(ALICE), ALICE, "/stats"))
    [stats] = await telegram.wait_for("sendMessage")
    telegram.push(message(private(ALICE), ALICE, text="at night", reply_to_message=stats.result))
    answer = (await telegram.wait_for("sendMessage", count=2))[1]
    assert "isn't one of my results" in answer.params["text"]
    telegram.push(command(private(ALICE), ALICE, "/find rocket"))
    result = await next_photo(telegram, 1)
    telegram.push(message(private(ALICE), ALICE, text="?!", reply_to_message=result.result))  # no words
    hint = (await telegram.wait_for("sendMessage", count=3))[2]
    assert hint.params["text"].startswith("Reply to a result with words")
    telegram.push(message(private(ALICE), ALICE, text="+", reply_to_message=result.result))
    usage = (await telegram.wait_for("sendMessage", count=4))[3]
    assert usage.params["text"].startswith("Reply to a result with words")
    assert len(telegram.sent("sendPhoto")) == 1  # nothing was searched


async def test_similar_as_a_reply_and_match_by_number(telegram: FakeTelegram, gallery: Engine,
                                                      photos: dict[str, Path]) -> None:
    telegram.push(command(GROUP, ALICE, "/find rocket"))
    result = await next_photo(telegram, 1)
    telegram.push(command(GROUP, BOB, "/similar", reply_to_message=result.result))
    similar = await next_photo(telegram, 2)
    assert similar.params["caption"].startswith(f"Like #{shown_id(result)}:")
    assert shown_id(similar) != shown_id(result)
    telegram.push(command(GROUP, BOB, f"/match #{shown_id(result)}"))
    by_number = await next_photo(telegram, 3)
    assert shown_id(by_number) == shown_id(similar)
    # An image of another chat's gallery is "not here", exactly as a number that does not exist.
    other = await gallery.add_image(photos["motorcycle"], collection="telegram:-100999", label="their motorcycle")
    telegram.push(command(GROUP, BOB, f"/match #{other.record.id}"))
    telegram.push(command(GROUP, BOB, "/match #99999"))
    telegram.push(command(GROUP, BOB, "/similar"))  # not a reply
    answers = await telegram.wait_for("sendMessage", count=3)
    assert sorted(a.params["text"] for a in answers) == sorted([
        f"There is no image #{other.record.id} here.", "There is no image #99999 here.",
        "Reply /similar to one of my results."])  # updates are handled concurrently


async def test_find_syntax_and_its_usage_line(telegram: FakeTelegram) -> None:
    telegram.push(command(private(ALICE), ALICE, '/find "launch pad"'))
    sent = await next_photo(telegram, 1)
    assert sent.params["caption"].startswith("rocket\non the launch pad") and "match 1 of 1" in sent.params["caption"]
    telegram.push(command(private(ALICE), ALICE, "/find rocket + cup -cat"))
    combined = await next_photo(telegram, 2)
    assert not combined.params["caption"].startswith("chelsea")  # the cat is left out
    for bad in ("/find +", '/find "launch pad', "/find -cat"):
        telegram.push(command(private(ALICE), ALICE, bad))
    answers = await telegram.wait_for("sendMessage", count=3)
    assert all("Usage: /find cat + beach" in a.params["text"] for a in answers)
    telegram.push(command(private(ALICE), ALICE, '/find "blue whale"'))
    [*_, none] = await telegram.wait_for("sendMessage", count=4)
    assert none.params["text"] == "No image here has \u201cblue whale\u201d in its label or description."


async def test_a_button_on_a_message_from_before_a_group_upgrade_answers_in_the_supergroup(
        telegram: FakeTelegram) -> None:
    """Telegram refuses every call naming an upgraded group (ChatMigrated): the answer goes to the
    supergroup that replaced it, not into the generic apology."""
    old = {"id": -555, "type": "group", "title": "Friends"}
    new = {"id": -1009999, "type": "supergroup", "title": "Friends"}
    telegram.push(command(old, ALICE, "/find rocket"))
    result = await next_photo(telegram, 1)
    telegram.push(message(old, ALICE, migrate_to_chat_id=new["id"]))
    telegram.push(message(new, ALICE, migrate_from_chat_id=old["id"]))
    await asyncio.sleep(0.3)
    press(telegram, ALICE, result, buttons(result)["More"])
    resent = await next_photo(telegram, 2)
    assert resent.params["chat_id"] in (new["id"], str(new["id"]))
    assert resent.params["caption"].splitlines()[-1].startswith("Score")
    refused = [c for c in telegram.calls if c.status == 400 and "upgraded to a supergroup" in c.description]
    assert refused and all(c.params.get("chat_id") in (old["id"], str(old["id"])) for c in refused)
    press(telegram, ALICE, result, buttons(result)["Next"])  # an edit in place: the old message is gone too
    moved = await next_photo(telegram, 3)
    assert moved.params["chat_id"] in (new["id"], str(new["id"])) and "match 2 of" in moved.params["caption"]
    assert not [c for c in telegram.sent("sendMessage") if "Sorry, something went wrong" in c.params["text"]]
