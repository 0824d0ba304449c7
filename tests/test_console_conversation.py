"""The conversation on the console: the last result shown is what /next, /more, /not, /similar,
/refine and ``> words`` work on; /match #12; expiry; the query syntax. Real service, tiny CLIP,
the gallery of four labelled photos."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from adapters.console import ConsoleChat
from adapters.console.chat import NOTHING_TO_PAGE, NOTHING_TO_REFINE, REFINE_HINT
from bot.settings import Settings
from core.chat.service import ChatService
from core.chat.styles import SEARCH_SYNTAX
from core.chat.threads import Threads
from core.gallery.engine import Engine
from core.search.query import FIND_USAGE
from core.storage.state import MemoryState
from tests.test_console import console, said, service_for

EXPIRED = "bot> These results have expired; give me an image file's path or /find again.\n"


def shown_id(text: str) -> int:
    """The ``#id`` of the result a console answer shows."""
    found = re.findall(r"Score: -?\d\.\d\d \u00b7 #(\d+) \u00b7 match", text)
    assert len(found) == 1, text
    return int(found[0])


@pytest.fixture
def chat(gallery: Engine, settings: Settings, tmp_path: Path) -> tuple[ConsoleChat, io.StringIO]:
    return console(service_for(settings, gallery), tmp_path)


async def test_the_buttons_are_printed_with_their_commands(chat: tuple[ConsoleChat, io.StringIO],
                                                           photos: dict[str, Path]) -> None:
    found = await said(*chat, f"/match {photos['chelsea']}")
    assert found.startswith("bot> chelsea\nbot> ginger cat\nbot> Score: ")
    assert found.endswith("bot>   [Next match (2/4)] (/next)\nbot>   [Top 4] (/top)\n"
                          "bot>   [More like this] (/more)\nbot>   [Not this] (/not)\n")


async def test_a_reply_refines_the_last_result(chat: tuple[ConsoleChat, io.StringIO],
                                               photos: dict[str, Path]) -> None:
    first = shown_id(await said(*chat, str(photos["chelsea"])))
    refined = await said(*chat, "> at night")
    # The refined search leaves out the image it started from: another image, whatever CLIP thinks.
    assert refined.startswith(f"bot> #{first}, at night:\n") and shown_id(refined) != first
    assert "[More like this] (/more)" in refined
    glued = await said(*chat, ">but red")  # the new result is the last one now
    assert glued.startswith(f"bot> #{shown_id(refined)}, but red:\n")
    assert shown_id(glued) not in (shown_id(refined),)
    same = await said(*chat, "/refine but red")
    assert same.startswith(f"bot> #{shown_id(glued)}, but red:\n")


async def test_not_never_brings_back_a_rejected_image(chat: tuple[ConsoleChat, io.StringIO]) -> None:
    rejected = [shown_id(await said(*chat, "rocket"))]
    for _ in range(2):
        answer = await said(*chat, "/not")
        assert answer.startswith(f"bot> Not #{rejected[-1]}; the next best:\n")
        assert shown_id(answer) not in rejected
        rejected.append(shown_id(answer))
    # Paging the list that is left never shows the rejected ones either; /not works on the page shown.
    shown = [shown_id(await said(*chat, "/next"))]
    assert shown[0] not in rejected[:-1]
    last = await said(*chat, "/not")
    assert last.startswith(f"bot> Not #{shown[0]}; the next best:\n")
    assert shown_id(last) not in [*rejected[:-1], shown[0]]


async def test_more_gives_a_new_result_after_the_page_shown(chat: tuple[ConsoleChat, io.StringIO]) -> None:
    await said(*chat, "coffee")
    second = shown_id(await said(*chat, "/next"))  # after "Next match" the last result is the one shown
    more = await said(*chat, "/more")
    assert more.startswith(f"bot> More like #{second}:\n") and shown_id(more) != second


async def test_similar_and_match_by_number(chat: tuple[ConsoleChat, io.StringIO]) -> None:
    rocket = shown_id(await said(*chat, "rocket"))
    similar = await said(*chat, "/similar")
    assert similar.startswith(f"bot> Like #{rocket}:\n") and shown_id(similar) != rocket
    for line in (f"/match #{rocket}", f"/match {rocket}", f"/similar #{rocket}"):
        assert await said(*chat, line) == similar, line
    assert await said(*chat, "/match #999") == "bot> There is no image #999 here.\n"
    assert await said(*chat, "/similar #999") == "bot> There is no image #999 here.\n"


async def test_without_a_result_nothing_is_refined(chat: tuple[ConsoleChat, io.StringIO]) -> None:
    for line in ("/more", "/not", "/similar", "/refine at night", "> at night"):
        assert await said(*chat, line) == f"bot> {NOTHING_TO_REFINE}\n", line
    for line in ("/next", "/top"):
        assert await said(*chat, line) == f"bot> {NOTHING_TO_PAGE}\n", line


async def test_an_empty_reply_gets_a_hint_and_searches_nothing(chat: tuple[ConsoleChat, io.StringIO],
                                                               gallery: Engine,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    await said(*chat, "rocket")
    searches: list[object] = []
    search_plan = gallery.search_plan

    async def counted(*args: object, **kwargs: object) -> object:
        searches.append(args)
        return await search_plan(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gallery, "search_plan", counted)
    for line in (">", ">   ", "/refine", "/refine +", "> -", "> + -"):
        assert await said(*chat, line) == f"bot> {REFINE_HINT}\n", line
    assert searches == []
    await said(*chat, "> at night")
    assert len(searches) == 1


async def test_expired_results_say_so(gallery: Engine, settings: Settings, tmp_path: Path) -> None:
    now = [1000.0]
    plain = service_for(settings, gallery)
    service = ChatService(gallery, config=plain.config, limiter=plain.limiter,
                          threads=Threads(MemoryState(clock=lambda: now[0]), ttl_seconds=10))
    chat, out = console(service, tmp_path)
    await said(chat, out, "rocket")
    assert "match 2 of 4" in await said(chat, out, "/next")  # alive for now
    now[0] += 11
    for line in ("/next", "/top", "/more", "/not", "/similar", "> at night", "/refine at night"):
        assert await said(chat, out, line) == EXPIRED, line


@pytest.mark.parametrize("line", ["/find +", '/find "abc', "/find cat +", "/find -dog", "+"])
async def test_malformed_queries_get_the_usage_line(chat: tuple[ConsoleChat, io.StringIO], line: str) -> None:
    answer = await said(*chat, line)
    assert FIND_USAGE in answer and "Score:" not in answer


async def test_the_query_syntax_works_on_the_console(chat: tuple[ConsoleChat, io.StringIO]) -> None:
    rocket = shown_id(await said(*chat, "rocket"))
    assert "[Not this] (/not)" in await said(*chat, f"/find #{rocket} + at night")
    quoted = await said(*chat, '/find "ginger cat"')
    assert quoted.startswith("bot> chelsea\nbot> ginger cat\n")
    assert await said(*chat, '/find "purple elephant"') == (
        "bot> No image here has \u201cpurple elephant\u201d in its label or description.\n")


async def test_help_shows_the_search_syntax_and_the_result_commands(chat: tuple[ConsoleChat, io.StringIO]) -> None:
    text = await said(*chat, "/help")
    for line in SEARCH_SYNTAX:
        assert f"bot> {line}\n" in text
    for usage in ("/match PATH or /match #12 \u2014 ", "/similar (on the last result) \u2014 ",
                  "/refine <words> (on the last result), or > <words> \u2014 ", "/more, /not \u2014 ",
                  "> words \u2014 refine it", "/next, /top \u2014 "):
        assert usage in text, usage
