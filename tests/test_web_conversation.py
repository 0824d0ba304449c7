"""The conversation in the web chat, without a browser: every button of a result through
WebConversation.press, the visitor's last result for /more, /not, /similar, /refine and ``> words``,
/match #12 without a photo, expiry, the query syntax, and two visitors who never mix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from adapters.web.chat import NOTHING_TO_PAGE, NOTHING_TO_REFINE, REFINE_HINT, WebConversation
from adapters.web.files import PictureFiles
from adapters.web.session import Visitor
from bot.settings import Settings
from core.chat.service import ChatService
from core.chat.styles import SEARCH_SYNTAX
from core.chat.threads import ResultRef, Threads
from core.gallery.engine import Engine
from core.search.query import FIND_USAGE
from core.storage.state import MemoryState
from tests.conftest import recompressed
from tests.test_web import USERS, texts

EXPIRED = "These results have expired; drop or paste a photo or /find again."
Message = dict[str, Any]


@pytest.fixture
def service(settings: Settings, gallery: Engine) -> ChatService:
    from bot.composition import build_service

    return build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)


@pytest.fixture
def chat(service: ChatService, tmp_path: Path) -> WebConversation:
    return WebConversation(service, USERS, PictureFiles(tmp_path / "pictures"))


def shown_id(messages: list[Message]) -> int:
    """The ``#id`` of the one result among the bot's messages."""
    found = re.findall(r"Score: -?\d\.\d\d \u00b7 #(\d+) \u00b7 match", texts(messages))
    assert len(found) == 1, texts(messages)
    return int(found[0])


def option(messages: list[Message], label: str) -> str:
    """The value of the bot's last message's option (button) labelled ``label``."""
    options = messages[-1].get("options") or []
    return str(next(o["value"] for o in options if o["label"] == label))


async def test_every_button_answers_through_press(chat: WebConversation, tmp_path: Path,
                                                  photos: dict[str, Path]) -> None:
    upload = tmp_path / "cat.jpg"
    upload.write_bytes(recompressed(photos["chelsea"]))
    visitor = Visitor()
    result = (await chat.submit(visitor, "", [upload]))[1:]
    first = shown_id(result)
    assert set(visitor.buttons) == {"next", "top", "like", "not"}
    assert visitor.result is not None and visitor.result.image_id == first
    page = await chat.press(visitor, option(result, "Next match (2/4)"))  # a new message, as before
    assert "match 2 of 4" in texts(page)
    assert visitor.result == ResultRef(visitor.result.token, shown_id(page))  # the page shown is the last result
    top = await chat.press(visitor, option(result, "Top 4"))
    assert texts(top).startswith("Top 4 for photo") and "options" not in top[0]
    assert visitor.result.image_id == shown_id(page)  # a card is no result to refine
    liked = await chat.press(visitor, option(result, "More like this"))  # pressed on the older message
    assert texts(liked).startswith(f"More like #{first}:\n") and shown_id(liked) != first
    rejected = await chat.press(visitor, option(result, "Not this"))
    assert texts(rejected).startswith(f"Not #{first}; the next best:\n") and shown_id(rejected) != first
    assert await chat.press(visitor, "not:gone:1") == [{"role": "assistant", "content": [EXPIRED]}]


async def test_typed_stand_ins_and_replies_work_on_the_last_result(chat: WebConversation) -> None:
    visitor = Visitor()
    rocket = shown_id((await chat.submit(visitor, "rocket", []))[1:])
    refined = (await chat.submit(visitor, "> at night", []))[1:]
    assert texts(refined).startswith(f"#{rocket}, at night:\n") and shown_id(refined) != rocket
    more = (await chat.submit(visitor, "/more", []))[1:]
    assert texts(more).startswith(f"More like #{shown_id(refined)}:\n")
    assert shown_id(more) not in (rocket, shown_id(refined))
    similar = (await chat.submit(visitor, "/similar", []))[1:]
    assert texts(similar).startswith(f"Like #{shown_id(more)}:\n") and shown_id(similar) != shown_id(more)
    glued = (await chat.submit(visitor, ">but red", []))[1:]
    assert texts(glued).startswith(f"#{shown_id(similar)}, but red:\n")
    same = (await chat.submit(visitor, "/refine -people", []))[1:]
    assert texts(same).startswith(f"#{shown_id(glued)}, -people:\n")


async def test_not_never_brings_back_a_rejected_image(chat: WebConversation) -> None:
    visitor = Visitor()
    rejected = [shown_id((await chat.submit(visitor, "coffee", []))[1:])]
    for _ in range(2):
        answer = (await chat.submit(visitor, "/not", []))[1:]
        assert texts(answer).startswith(f"Not #{rejected[-1]}; the next best:\n")
        assert shown_id(answer) not in rejected
        rejected.append(shown_id(answer))
    shown = shown_id((await chat.submit(visitor, "/next", []))[1:])
    assert shown not in rejected[:-1]
    last = (await chat.submit(visitor, "/not", []))[1:]
    assert texts(last).startswith(f"Not #{shown}; the next best:\n") and shown_id(last) not in [*rejected[:-1], shown]


async def test_match_by_number_needs_no_photo(chat: WebConversation) -> None:
    visitor = Visitor()
    rocket = shown_id((await chat.submit(visitor, "rocket", []))[1:])
    by_number = texts((await chat.submit(visitor, f"/match #{rocket}", []))[1:])
    assert by_number.startswith(f"Like #{rocket}:\n")
    assert texts((await chat.submit(visitor, f"/match {rocket}", []))[1:]) == by_number
    assert texts((await chat.submit(visitor, f"/similar #{rocket}", []))[1:]) == by_number
    assert texts((await chat.submit(visitor, "/match #999", []))[1:]) == "There is no image #999 here."
    hint = texts((await chat.submit(visitor, "/match", []))[1:])
    assert hint.startswith("Attach a photo to /match") and "/match #12" in hint


async def test_without_a_result_nothing_is_refined_and_empty_replies_search_nothing(
        chat: WebConversation, gallery: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    visitor = Visitor()
    for text in ("/more", "/not", "/similar", "/refine at night", "> at night"):
        assert texts((await chat.submit(visitor, text, []))[1:]) == NOTHING_TO_REFINE, text
    for text in ("/next", "/top"):
        assert texts((await chat.submit(visitor, text, []))[1:]) == NOTHING_TO_PAGE, text
    await chat.submit(visitor, "rocket", [])
    searches: list[object] = []
    search_plan = gallery.search_plan

    async def counted(*args: object, **kwargs: object) -> object:
        searches.append(args)
        return await search_plan(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gallery, "search_plan", counted)
    for text in (">", ">   ", "/refine", "> -", "/refine + -"):
        assert texts((await chat.submit(visitor, text, []))[1:]) == REFINE_HINT, text
    assert searches == []


async def test_expired_results_say_so(gallery: Engine, service: ChatService, tmp_path: Path) -> None:
    now = [1000.0]
    expiring = ChatService(gallery, config=service.config, limiter=service.limiter,
                           threads=Threads(MemoryState(clock=lambda: now[0]), ttl_seconds=10))
    chat = WebConversation(expiring, USERS, PictureFiles(tmp_path / "pictures"))
    visitor = Visitor()
    result = (await chat.submit(visitor, "rocket", []))[1:]
    now[0] += 11
    for text in ("/next", "/top", "/more", "/not", "/similar", "> at night", "/refine at night"):
        assert texts((await chat.submit(visitor, text, []))[1:]) == EXPIRED, text
    for label in ("Next match (2/4)", "Top 4", "More like this", "Not this"):
        assert texts(await chat.press(visitor, option(result, label))) == EXPIRED, label


@pytest.mark.parametrize("text", ["/find +", '/find "abc', "/find cat +", "-dog"])
async def test_malformed_queries_get_the_usage_line(chat: WebConversation, text: str) -> None:
    answer = texts((await chat.submit(Visitor(), text, []))[1:])
    assert FIND_USAGE in answer and "Score:" not in answer


async def test_help_shows_the_search_syntax(chat: WebConversation) -> None:
    text = texts((await chat.submit(Visitor(), "/help", []))[1:])
    assert all(line in text for line in SEARCH_SYNTAX)
    assert "> at night" in text and "/more, /not" in text


async def test_two_visitors_refining_the_same_result_never_mix(chat: WebConversation, service: ChatService) -> None:
    alice, bob = Visitor(name="alice"), Visitor(name="bob")
    rocket = shown_id((await chat.submit(alice, "rocket", []))[1:])
    assert bob.result is None
    # Bob gets the very same result (the same thread, the same buttons) and both refine it.
    bob.buttons, bob.result = dict(alice.buttons), alice.result
    shared = alice.result
    assert shared is not None
    a1 = (await chat.submit(alice, "> at night", []))[1:]
    b1 = (await chat.submit(bob, "> but red", []))[1:]
    assert texts(a1).startswith(f"#{rocket}, at night:\n") and texts(b1).startswith(f"#{rocket}, but red:\n")
    assert alice.result is not None and bob.result is not None
    assert len({shared.token, alice.result.token, bob.result.token}) == 3  # a thread of their own each
    a2 = (await chat.submit(alice, "/not", []))[1:]
    b2 = (await chat.submit(bob, "/not", []))[1:]
    assert texts(a2).startswith(f"Not #{shown_id(a1)};") and texts(b2).startswith(f"Not #{shown_id(b1)};")
    alice_thread = await service.threads.get(alice.result.token)
    bob_thread = await service.threads.get(bob.result.token)
    assert alice_thread is not None and bob_thread is not None
    assert (alice_thread.owner, alice_thread.rejected) == ("web:alice", (shown_id(a1),))
    assert (bob_thread.owner, bob_thread.rejected) == ("web:bob", (shown_id(b1),))
    # The result they started from is untouched: paging it shows what it showed before.
    page = await chat.press(alice, f"next:{shared.token}:0")
    assert shown_id(page) == rocket


async def test_forget_on_the_web_removes_what_a_signed_in_user_added(chat: WebConversation, gallery: Engine,
                                                                       tmp_path: Path, photos: dict[str, Path]) -> None:
    upload = tmp_path / "temple.jpg"
    upload.write_bytes(photos["china"].read_bytes())
    ann = Visitor(name="ann")
    added = await chat.submit(ann, "/add temple | a red temple", [upload])
    assert "Added #" in texts(added)
    ask = (await chat.submit(ann, "/forget", []))[1:]
    assert texts(ask).startswith("Forget your images")
    assert len(await gallery.list_images("web")) == 1
    done = await chat.press(ann, option(ask, "Yes, forget"))
    assert texts(done) == "Forgot your 1 image, 0 repost records and 0 conversations in this chat."
    assert await gallery.list_images("web") == []
