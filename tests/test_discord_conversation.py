"""Discord: the conversation around a result, end to end over the fake Discord with the real discord.py client.

The buttons under a result ("Next match", "Top N", "More like this", "Not this"), words replied to a
result, the result's context menu ("Similar images", "Refine with words" and its form), /match by
image number; then the fake's own rules for all of it (tests/fakes/discord/).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.discord import DiscordPlatform
from adapters.discord.cog import UNREAD_REPLY
from adapters.discord.messages import DISCORD_STYLE, OPTIONS, menu_name
from bot.composition import build_service
from bot.settings import Settings
from core.chat.catalogue import REFINE, SIMILAR, Takes, commands_for
from core.chat.ratelimit import RateLimiter
from core.chat.service import ChatService
from core.chat.styles import help_text
from core.chat.texts import expired_text
from core.chat.threads import Threads
from core.gallery.engine import Engine
from core.storage.state import MemoryState
from tests.conftest import recompressed
from tests.fakes.discord import (
    APP_ID,
    BOT,
    CHANNEL_ID,
    GUILD_ID,
    Call,
    FakeDiscord,
    fake_fixture,  # noqa: F401  (the fixture `fake`)
    user,
)
from tests.test_discord import dispatch

ALICE = user("11", "alice")
BOB = user("12", "bob")
WEBHOOKS = f"/webhooks/{APP_ID}/"
DM_CHANNEL = "601"
Start = Callable[..., Awaitable[DiscordPlatform]]


@pytest.fixture
async def start(fake: FakeDiscord, gallery: Engine, settings: Settings) -> AsyncIterator[Start]:
    """Log a Discord bot in against the fake: the gallery's service unless given another one."""
    started: list[DiscordPlatform] = []

    async def make(service: ChatService | None = None) -> DiscordPlatform:
        service = service or build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)
        platform = DiscordPlatform(service, token="fake-discord-token", guild_ids=(int(GUILD_ID),),
                                   api_base_url=fake.api_base, max_file_bytes=25 * 1024 * 1024)
        await platform.login()
        started.append(platform)
        return platform

    yield make
    for platform in started:
        await platform.stop()


@pytest.fixture
async def platform(start: Start) -> DiscordPlatform:
    return await start()


async def answer(fake: FakeDiscord, platform: DiscordPlatform, event: str, payload: dict[str, Any],
                 method: str = "POST", path: str = WEBHOOKS) -> Call:
    """Dispatch an event; the first accepted call of ``method`` to ``path`` that it led to."""
    before = len(fake.sent(method, path))
    dispatch(platform, event, payload)
    return (await fake.wait_for(method, path, count=before + 1))[before]


def description(call: Call) -> str:
    return str(call.body["embeds"][0]["description"])


def shown(call: Call) -> int:
    """The gallery image a result message shows (the ``#id`` of its score line)."""
    found = re.search(r"\u00b7 #(\d+) \u00b7 match", description(call))
    assert found, description(call)
    return int(found.group(1))


def button(call: Call, label: str) -> str:
    """The custom id of a result message's button whose label starts with ``label``."""
    components = call.body["components"]
    found = [b["custom_id"] for row in components for b in row["components"] if b["label"].startswith(label)]
    assert len(found) == 1, components
    return str(found[0])


def message_id(call: Call) -> str:
    return str(call.response["id"])


async def dm_photo(fake: FakeDiscord, platform: DiscordPlatform, photo: Path, who: dict[str, Any] = ALICE) -> Call:
    attachment = fake.attachment(recompressed(photo), "photo.jpg", "image/jpeg")
    return await answer(fake, platform, "message_create", fake.message(who, guild=False, attachments=[attachment]),
                        path=f"/channels/{DM_CHANNEL}/messages")


async def server_photo(fake: FakeDiscord, platform: DiscordPlatform, photo: Path) -> Call:
    attachment = fake.attachment(recompressed(photo), "photo.jpg", "image/jpeg")
    message = fake.message(ALICE, content="<@900>", mentions=[BOT], attachments=[attachment])
    return await answer(fake, platform, "message_create", message, path=f"/channels/{CHANNEL_ID}/messages")


async def press(fake: FakeDiscord, platform: DiscordPlatform, who: dict[str, Any], result: Call, label: str,
                method: str = "POST") -> Call:
    """Press a result's button; the follow-up (or, ``method="PATCH"``, the edit) it led to."""
    return await answer(fake, platform, "interaction_create",
                        fake.press(who, message_id(result), button(result, label)), method=method)


# -- replies, buttons and threads ------------------------------------------------------------------------------

async def test_words_replied_to_a_result_refine_it(fake: FakeDiscord, platform: DiscordPlatform, gallery: Engine,
                                                   photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    first = await dm_photo(fake, platform, photos["coffee"])
    assert description(first).startswith("coffee")
    reply = fake.reply(ALICE, first.response, content="at night")
    refined = await answer(fake, platform, "message_create", reply, path=f"/channels/{DM_CHANNEL}/messages")
    assert description(refined).startswith(f"#{shown(first)}, at night:")
    assert shown(refined) != shown(first)  # the replied-to image itself is never the answer
    assert refined.body["message_reference"]["message_id"] == int(reply["id"])
    assert button(refined, "Not this") != button(first, "Not this")  # a thread of its own

    searches: list[object] = []
    search = gallery.search_plan

    async def counted(*args: Any, **kwargs: Any) -> Any:
        searches.append(args)
        return await search(*args, **kwargs)

    monkeypatch.setattr(gallery, "search_plan", counted)
    hint = await answer(fake, platform, "message_create", fake.reply(ALICE, refined.response, content="  "),
                        path=f"/channels/{DM_CHANNEL}/messages")
    assert description(hint) == DISCORD_STYLE.refine_usage() and not hint.files and "components" not in hint.body
    assert searches == []  # an empty reply searches nothing


async def test_not_this_never_brings_a_rejected_image_back(fake: FakeDiscord, platform: DiscordPlatform,
                                                           photos: dict[str, Path]) -> None:
    result = await dm_photo(fake, platform, photos["rocket"])
    seen = [shown(result)]
    for _ in range(3):  # four images: three rejections leave one
        rejected = seen[-1]
        result = await press(fake, platform, ALICE, result, "Not this")
        assert description(result).startswith(f"Not #{rejected}; the next best:")
        assert shown(result) not in seen
        assert result.body.get("flags", 0) & 64 == 0  # a new public message
        seen.append(shown(result))
    last = await press(fake, platform, ALICE, result, "Not this")
    assert description(last) == "That was every image that fits; there is nothing else to show."
    # Each press was acknowledged at once with a deferred update (no "thinking" message to take over).
    assert [c.body["type"] for c in fake.sent("POST", "/callback")] == [6] * 4
    assert fake.sent("PATCH", WEBHOOKS) == []  # the pressed messages stay as they were


async def test_more_like_this_and_top_answer_with_new_messages(fake: FakeDiscord, platform: DiscordPlatform,
                                                               photos: dict[str, Path]) -> None:
    result = await dm_photo(fake, platform, photos["chelsea"])
    liked = await press(fake, platform, ALICE, result, "More like this")
    assert description(liked).startswith(f"More like #{shown(result)}:")
    assert shown(liked) != shown(result) and liked.files
    assert [b["label"] for b in liked.body["components"][1]["components"]] == [
        "More like this", "Not this"]
    top = await press(fake, platform, ALICE, result, "Top")
    assert description(top).startswith("Top 4 for photo") and list(top.files) == ["top.png"]
    assert "match 1 of 4" in fake.messages[message_id(result)]["embeds"][0]["description"]  # unchanged


async def test_two_people_on_one_result_keep_separate_threads(fake: FakeDiscord, platform: DiscordPlatform,
                                                              photos: dict[str, Path]) -> None:
    result = await server_photo(fake, platform, photos["astronaut"])
    alice_1 = await press(fake, platform, ALICE, result, "Not this")
    alice_2 = await press(fake, platform, ALICE, alice_1, "Not this")
    assert shown(alice_2) not in (shown(result), shown(alice_1))
    bob_1 = await press(fake, platform, BOB, result, "Not this")
    # Bob starts from what the message showed: Alice's rejection of her second image is hers alone.
    assert shown(bob_1) == shown(alice_1)
    # Words replied to the same result: each gets an answer, each in a thread of their own.
    replies = []
    for who, words in ((ALICE, "at night"), (BOB, "in the snow")):
        replies.append(await answer(fake, platform, "message_create",
                                    fake.reply(who, message_id(result), content=f"<@900> {words}"),
                                    path=f"/channels/{CHANNEL_ID}/messages"))
    assert [description(r).split(":")[0] for r in replies] == [
        f"#{shown(result)}, at night", f"#{shown(result)}, in the snow"]
    assert button(replies[0], "Not this").split(":")[1] != button(replies[1], "Not this").split(":")[1]


async def test_buttons_and_replies_of_an_expired_result_say_so(fake: FakeDiscord, start: Start, gallery: Engine,
                                                               settings: Settings, photos: dict[str, Path]) -> None:
    now = [1000.0]
    plain = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)
    service = ChatService(gallery, config=plain.config, limiter=plain.limiter,
                          threads=Threads(MemoryState(clock=lambda: now[0]), ttl_seconds=60))
    platform = await start(service)
    result = await server_photo(fake, platform, photos["coffee"])
    now[0] += 61
    expired = expired_text(DISCORD_STYLE)
    for label in ("Next match", "Top", "More like this", "Not this"):
        told = await press(fake, platform, BOB, result, label)
        assert (told.body["content"], told.body["flags"]) == (expired, 64), label
    reply = fake.reply(ALICE, message_id(result), content="at night")
    told = await answer(fake, platform, "message_create", reply, path=f"/channels/{CHANNEL_ID}/messages")
    assert description(told) == expired
    menu = fake.context_menu(ALICE, menu_name(SIMILAR), message_id(result))
    told = await answer(fake, platform, "interaction_create", menu)
    assert description(told) == expired
    assert fake.messages[message_id(result)]["embeds"][0]["description"].startswith("coffee")  # left as it was


async def test_a_rate_limited_press_is_acknowledged_and_told_once(fake: FakeDiscord, start: Start, gallery: Engine,
                                                                  settings: Settings, photos: dict[str, Path]) -> None:
    plain = build_service(settings, gallery)
    platform = await start(ChatService(gallery, config=plain.config, limiter=RateLimiter(1, burst=1)))
    result = await dm_photo(fake, platform, photos["rocket"])  # the one request of the minute
    told = await press(fake, platform, ALICE, result, "Not this")
    assert told.body["flags"] == 64 and "faster than I can take them" in told.body["content"]
    dispatch(platform, "interaction_create", fake.press(ALICE, message_id(result), button(result, "Not this")))
    await fake.wait_for("POST", "/callback", count=2)
    await platform.bot.in_flight.drain(5)
    assert len(fake.sent("POST", WEBHOOKS)) == 1  # acknowledged, and no second notice


async def test_a_reply_without_the_replied_message_fetches_it(fake: FakeDiscord, platform: DiscordPlatform,
                                                              photos: dict[str, Path]) -> None:
    first = await dm_photo(fake, platform, photos["rocket"])
    reply = fake.reply(ALICE, first.response, content="at night")
    del reply["referenced_message"]  # Discord leaves it out when it did not look the message up
    refined = await answer(fake, platform, "message_create", reply, path=f"/channels/{DM_CHANNEL}/messages")
    assert description(refined).startswith(f"#{shown(first)}, at night:")
    assert fake.sent("GET", f"/channels/{DM_CHANNEL}/messages/{message_id(first)}")


async def test_replies_that_are_not_to_a_result(fake: FakeDiscord, platform: DiscordPlatform) -> None:
    stats = await answer(fake, platform, "interaction_create", fake.slash(ALICE, "stats"))
    told = await answer(fake, platform, "message_create", fake.reply(BOB, message_id(stats), content="cats"),
                        path=f"/channels/{CHANNEL_ID}/messages")
    assert description(told) == DISCORD_STYLE.not_a_result()
    # Without the message-content intent, a reply that does not ping the bot arrives blank.
    blank = fake.reply(BOB, message_id(stats), ping=False)
    told = await answer(fake, platform, "message_create", blank, path=f"/channels/{CHANNEL_ID}/messages")
    assert description(told) == UNREAD_REPLY


async def test_a_result_after_a_restart_still_answers_its_buttons(fake: FakeDiscord, start: Start,
                                                                  photos: dict[str, Path]) -> None:
    first = await start()
    result = await dm_photo(fake, first, photos["chelsea"])
    await first.stop()
    second = await start()  # threads live in the gallery's database; the buttons are dynamic items
    rejected = await press(fake, second, ALICE, result, "Not this")
    assert shown(rejected) != shown(result)
    paged = await press(fake, second, ALICE, result, "Next match", method="PATCH")
    assert "match 2 of 4" in description(paged)


# -- context menus, the refine form and /match by number --------------------------------------------------------

async def test_similar_images_from_a_results_context_menu(fake: FakeDiscord, platform: DiscordPlatform) -> None:
    result = await answer(fake, platform, "interaction_create",
                          fake.slash(ALICE, "find", [{"name": "text", "type": 3, "value": "rocket"}]))
    similar = await answer(fake, platform, "interaction_create",
                           fake.context_menu(BOB, menu_name(SIMILAR), message_id(result)))
    assert description(similar).startswith(f"Like #{shown(result)}:") and shown(similar) != shown(result)
    assert fake.sent("POST", "/callback")[-1].json == {"type": 5}  # "thinking", in public
    stats = await answer(fake, platform, "interaction_create", fake.slash(ALICE, "stats"))
    told = await answer(fake, platform, "interaction_create",
                        fake.context_menu(BOB, menu_name(SIMILAR), message_id(stats)))
    assert description(told) == DISCORD_STYLE.not_a_result()
    assert fake.sent("POST", "/callback")[-1].json == {"type": 5, "data": {"flags": 64}}  # to Bob alone
    assert fake.messages[message_id(told)]["flags"] == 64


async def test_refine_with_words_opens_a_form(fake: FakeDiscord, platform: DiscordPlatform) -> None:
    result = await answer(fake, platform, "interaction_create",
                          fake.slash(ALICE, "find", [{"name": "text", "type": 3, "value": "coffee"}]))
    forms = []
    for who in (ALICE, BOB):  # two people at once, on one result
        before = len(fake.modals)
        dispatch(platform, "interaction_create", fake.context_menu(who, menu_name(REFINE), message_id(result)))
        await fake.wait_for("POST", "/callback", count=len(fake.sent("POST", "/callback")) + 1)
        assert len(fake.modals) == before + 1
        forms.append(fake.modals[-1])
    assert forms[0]["title"] == "Refine with words" and forms[0]["custom_id"] != forms[1]["custom_id"]
    [[text_input]] = [row["components"] for row in forms[0]["components"]]
    assert text_input["label"] == "Your words" and text_input["custom_id"] == "words"
    answers = []
    for who, form, words in ((BOB, forms[1], "-people"), (ALICE, forms[0], "at night")):
        answers.append(await answer(fake, platform, "interaction_create",
                                    fake.modal_submit(who, form, {"words": words})))
    assert description(answers[0]).startswith(f"#{shown(result)}, -people:")
    assert description(answers[1]).startswith(f"#{shown(result)}, at night:")
    assert shown(answers[1]) != shown(result)
    # On a message that is no result, no form: the service's sentence, to the asker alone.
    stats = await answer(fake, platform, "interaction_create", fake.slash(ALICE, "stats"))
    before = len(fake.modals)
    told = await answer(fake, platform, "interaction_create",
                        fake.context_menu(ALICE, menu_name(REFINE), message_id(stats)))
    assert description(told) == DISCORD_STYLE.not_a_result() and len(fake.modals) == before


async def test_match_by_image_number(fake: FakeDiscord, platform: DiscordPlatform, gallery: Engine,
                                     photos: dict[str, Path]) -> None:
    rocket = next(r for r in await gallery.list_images("global") if r.label == "rocket")
    similar = await answer(fake, platform, "interaction_create",
                           fake.slash(ALICE, "match", [{"name": "id", "type": 4, "value": rocket.id}]))
    assert description(similar).startswith(f"Like #{rocket.id}:") and shown(similar) != rocket.id
    elsewhere = (await gallery.add_image(photos["flower"], collection="discord:501", label="flower")).record
    told = await answer(fake, platform, "interaction_create",
                        fake.slash(ALICE, "match", [{"name": "id", "type": 4, "value": elsewhere.id}]))
    assert description(told) == f"There is no image #{elsewhere.id} here."
    # Neither a photo nor a number: told at once, to the asker alone, and nothing run.
    dispatch(platform, "interaction_create", fake.slash(ALICE, "match"))
    [*_, usage] = await fake.wait_for("POST", "/callback", count=len(fake.sent("POST", "/callback")) + 1)
    assert usage.body["type"] == 4 and usage.body["data"]["flags"] == 64
    assert "/match image, or /match id" in usage.body["data"]["content"]


async def test_every_catalogue_command_is_a_slash_command_or_a_context_menu(fake: FakeDiscord,
                                                                            platform: DiscordPlatform) -> None:
    [sync] = fake.sent("PUT", f"/applications/{APP_ID}/guilds/{GUILD_ID}/commands")
    names = [(c.get("type", 1), c["name"]) for c in sync.entries]
    assert names == [*((1, c.name) for c in commands_for("discord") if not c.takes.result),
                     *((3, menu_name(c)) for c in commands_for("discord") if c.takes.result)]
    assert set(OPTIONS) == set(Takes)
    text = help_text(DISCORD_STYLE, private=False)
    assert "Apps \u2192 Similar images" in text and "Apps \u2192 Refine with words" in text
    assert "/match image, or /match id" in text and "Reply to one of my results with words" in text


# -- the fake refuses what Discord refuses ---------------------------------------------------------------------

async def test_fake_interaction_callbacks_follow_discords_rules(fake: FakeDiscord) -> None:
    command = fake.slash(ALICE, "stats")
    token, base = command["token"], fake.api_base
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/webhooks/{APP_ID}/{token}", json={"content": "early"}) as response:
            assert (response.status, (await response.json())["code"]) == (404, 10015)  # not acknowledged yet
        async with session.post(f"{base}/interactions/{command['id']}/{token}/callback",
                                json={"type": 6}) as response:
            assert response.status == 400  # a deferred update is for buttons, not commands
        callback = f"{base}/interactions/{command['id']}/{token}/callback"
        async with session.post(callback, json={"type": 5, "data": {"flags": 64}}) as response:
            assert response.status == 200
        async with session.post(callback, json={"type": 5}) as response:
            assert await response.json() == {"message": "Interaction has already been acknowledged.", "code": 40060}
        # The first follow-up fills the "thinking" message, which stays ephemeral whatever it asks.
        async with session.post(f"{base}/webhooks/{APP_ID}/{token}", json={"content": "hi"}) as response:
            filled = await response.json()
        async with session.post(f"{base}/webhooks/{APP_ID}/{token}", json={"content": "again"}) as response:
            second = await response.json()
    original = fake.interactions[token].original
    assert filled["id"] == original and filled["flags"] == 64 and filled["content"] == "hi"
    assert second["id"] != original and second["flags"] == 0


def _modal(**change: Any) -> dict[str, Any]:
    text_input = {"type": 4, "custom_id": "words", "label": "Your words", "style": 1, **change.pop("text", {})}
    return {"custom_id": "form", "title": "Refine", "components": [{"type": 1, "components": [text_input]}], **change}


async def test_fake_modals_and_components_are_checked(fake: FakeDiscord) -> None:
    base = fake.api_base
    refused = {
        "title": _modal(title="t" * 46),
        "label": _modal(text={"label": "l" * 46}),
        "no label": _modal(text={"label": None}),
        "custom_id": _modal(custom_id="c" * 101),
        "rows": _modal(components=[]),
        "max_length": _modal(text={"max_length": 4001}),
    }
    async with aiohttp.ClientSession() as session:
        for why, modal in refused.items():
            command = fake.slash(ALICE, "x")
            async with session.post(f"{base}/interactions/{command['id']}/{command['token']}/callback",
                                    json={"type": 9, "data": modal}) as response:
                assert response.status == 400, why
                assert (await response.json())["code"] == 50035, why
        press_on = fake.message(BOT)
        press_on["components"] = [{"type": 1, "components": [{"type": 2, "style": 2, "label": "x", "custom_id": "x"}]}]
        submitted = fake.interaction(ALICE, kind=5, data={"custom_id": "f", "components": []})
        async with session.post(f"{base}/interactions/{submitted['id']}/{submitted['token']}/callback",
                                json={"type": 9, "data": _modal()}) as response:
            assert response.status == 400  # a form's submission cannot open another form
        six = [{"type": 2, "style": 2, "label": str(n), "custom_id": f"b{n}"} for n in range(6)]
        bodies = {
            "six in a row": [{"type": 1, "components": six}],
            "six rows": [{"type": 1, "components": [b]} for b in six],
            "custom_id twice": [{"type": 1, "components": [six[0], {**six[1], "custom_id": "b0"}]}],
        }
        for why, components in bodies.items():
            async with session.post(f"{base}/channels/{CHANNEL_ID}/messages",
                                    json={"content": "x", "components": components}) as response:
                assert response.status == 400, why
        async with session.post(f"{base}/channels/{CHANNEL_ID}/messages", json={
                "content": "x", "message_reference": {"message_id": "123", "channel_id": CHANNEL_ID}}) as response:
            errors = (await response.json())["errors"]
            assert errors["message_reference"]["_errors"][0]["code"] == "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"
        async with session.get(f"{base}/channels/{CHANNEL_ID}/messages/123") as response:
            assert (response.status, (await response.json())["code"]) == (404, 10008)
    assert fake.modals == []  # none of the refused forms was opened
    with pytest.raises(AssertionError, match="has no button"):
        fake.press(ALICE, press_on, "nope")


async def test_fake_command_sync_is_checked(fake: FakeDiscord) -> None:
    path = f"{fake.api_base}/applications/{APP_ID}/guilds/{GUILD_ID}/commands"
    menu = {"type": 3, "name": "Similar images"}
    refused = {
        "a context menu with a description": [{**menu, "description": "no"}],
        "a context menu with options": [{**menu, "options": [{"type": 3, "name": "x", "description": "x"}]}],
        "a context menu name over 32": [{**menu, "name": "m" * 33}],
        "six message menus": [{**menu, "name": f"Menu {n}"} for n in range(6)],
        "two menus of one name": [menu, menu],
        "an upper-case slash command": [{"type": 1, "name": "Find", "description": "find"}],
        "a slash command without a description": [{"type": 1, "name": "find"}],
        "an option description over 100": [{"type": 1, "name": "find", "description": "find",
                                            "options": [{"type": 3, "name": "text", "description": "d" * 101}]}],
    }
    async with aiohttp.ClientSession() as session:
        for why, commands in refused.items():
            async with session.put(path, json=commands) as response:
                assert response.status == 400, why
        async with session.put(path, json=[menu, {"type": 1, "name": "find", "description": "find"}]) as response:
            synced = await response.json()
    assert synced[0]["description"] == "" and synced[0]["guild_id"] == GUILD_ID
    assert fake.registered("Similar images", 3, guild=True) is not None
    assert fake.registered("Similar images", 3, guild=False) is None  # a server's command, not in DMs
    with pytest.raises(AssertionError, match="no message command"):
        fake.context_menu(ALICE, "Similar images", fake.message(BOT, guild=False), guild=False)
