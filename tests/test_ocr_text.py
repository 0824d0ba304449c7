"""Folding and matching OCR text (core.search.ocr_text): spacing, case, accents, width and script."""

from __future__ import annotations

import pytest

from core.search.ocr_text import ELLIPSIS, fold, match_score, matched_snippet, phrase_in


@pytest.mark.parametrize(("a", "b"), [
    ("is this a pigeon", "ISTHISAPIGEON"),       # the reader drops spaces between English words
    ("Is this a pigeon?!", "is-this_a pigeon"),  # punctuation goes
    ("café", "CAFE"),                            # accents, precomposed
    ("cafe\u0301", "Café"),                      # and decomposed
    ("\uff32\uff2f\uff2f\uff2d\u3000\uff14\uff22", "room 4B"),  # full-width letters, digits and space
    ("Straße", "STRASSE"),                       # casefolding, not lowercasing
    ("naïve résumé", "NAIVE RESUME"),
    ("£3.50", "3 50"),                           # symbols go too
])
def test_fold_makes_the_same_text_equal(a: str, b: str) -> None:
    assert fold(a) == fold(b)


def test_fold_keeps_cjk_and_other_scripts_letters() -> None:
    assert fold("紧急出口") == "紧急出口"
    assert fold("紧急 出口。") == "紧急出口"
    assert fold("が") == "が"         # the voicing mark is part of the kana, not an accent
    assert fold("ｶﾞｽ") == "ガス"      # half-width katakana to full-width
    assert fold("한국어 텍스트") == "한국어텍스트"
    assert fold("Ελληνικά") == "ελληνικα"


def test_fold_of_nothing_to_match() -> None:
    assert fold("") == ""
    assert fold(" ... !? ") == ""


@pytest.mark.parametrize(("query", "text"), [
    ("is this a pigeon", "ISTHISAPIGEON"),
    ("4B", "meeting moved to room4B at half past three"),
    ("wifi password", "the WiFi Password is sunflower42"),
    ("出口", "紧急出口"),
    ("cafe luna", "CAFÉ LUNA\nOat milk 2.10"),
    ("one does not simply walk", "ONE DOES NOT SIMPLY\nWALK INTO MORDOR"),  # over a line break
])
def test_phrase_in_finds_folded_substrings(query: str, text: str) -> None:
    assert phrase_in(query, text)


@pytest.mark.parametrize(("query", "text"), [
    ("pigeon is this", "IS THIS A PIGEON"),  # order matters
    ("入口", "紧急出口"),
    ("room 5B", "room 4B"),
    ("", "anything"),                        # an empty query matches nothing
    ("?!", "anything?!"),                    # nor one that folds to nothing
])
def test_phrase_in_rejects(query: str, text: str) -> None:
    assert not phrase_in(query, text)


def test_match_score_whole_phrase_in_order_is_one() -> None:
    assert match_score(["is", "this", "a", "pigeon"], ["ISTHISAPIGEON"]) == 1.0
    assert match_score(["simply", "walk"], ["ONE DOES NOT SIMPLY", "WALK INTO MORDOR"]) == 1.0
    assert match_score(["Café"], ["CAFE LUNA"]) == 1.0


def test_match_score_is_the_share_of_words_found_weighed_by_length() -> None:
    lines = ["the wifi password is sunflower42"]
    # Both words, but not run together in this order.
    assert match_score(["password", "wifi"], lines) == pytest.approx(1.0)
    assert match_score(["wifi", "router"], lines) == pytest.approx(4 / 10)
    assert match_score(["router", "modem"], lines) == 0.0
    # A short word found by chance counts little beside a long one that is missing.
    assert match_score(["a", "pelican"], ["IS THIS A PIGEON"]) == pytest.approx(1 / 8)
    scores = [match_score(["wifi", "password"], lines), match_score(["wifi", "router"], lines)]
    assert scores == sorted(scores, reverse=True)


def test_match_score_of_empty_query_or_text() -> None:
    assert match_score([], ["text"]) == 0.0
    assert match_score(["", "!!"], ["text"]) == 0.0
    assert match_score(["text"], []) == 0.0
    assert 0.0 <= match_score(["x"], ["x y"]) <= 1.0


def test_matched_snippet_gives_the_matching_lines() -> None:
    lines = ["Alex", "ok thanks", "the wifi password is sunflower42", "see you there"]
    assert matched_snippet("wifi password", lines, 80) == "the wifi password is sunflower42"
    meme = ["ONE DOES NOT SIMPLY", "WALK INTO MORDOR"]
    assert matched_snippet("simply walk", meme, 80) == "ONE DOES NOT SIMPLY WALK INTO MORDOR"
    # Words found apart: every line holding one of them.
    assert matched_snippet("thanks there", lines, 80) == "ok thanks see you there"
    assert matched_snippet("router", lines, 80) == ""
    assert matched_snippet("", lines, 80) == ""


def test_matched_snippet_is_cut_around_the_match() -> None:
    line = "a very long message that goes on and on before it says the door code is 7391 and then more words follow"
    snippet = matched_snippet("door code", [line], 40)
    assert len(snippet) <= 40
    assert "door code" in snippet and snippet.startswith(ELLIPSIS) and snippet.endswith(ELLIPSIS)
    start = matched_snippet("very long", [line], 30)
    assert start.startswith("a very long") and start.endswith(ELLIPSIS) and len(start) <= 30
    end = matched_snippet("follow", [line], 30)
    assert end.endswith("words follow") and end.startswith(ELLIPSIS) and len(end) <= 30
    assert matched_snippet("DOOR CODE", [line], 1) == "a"
    with pytest.raises(ValueError):
        matched_snippet("door", [line], 0)
