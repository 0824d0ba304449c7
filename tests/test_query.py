"""The /find query language and the words people reply to a result with (core.search.query), pinned
against the README's "The /find query language" and "How refining works"."""

from __future__ import annotations

import pytest

from core.errors import InputError
from core.media.colors import COLOR_FAMILIES
from core.search.query import (
    FIND_USAGE,
    REFINE_USAGE,
    ParsedQuery,
    QuerySyntaxError,
    Refinement,
    parse_query,
    parse_refinement,
)

# -- parse_query: what well-formed queries mean --------------------------------------------------

VALID: list[tuple[str, ParsedQuery, str]] = [
    # query, what it parses to, its canonical form (describe)
    ("cat + beach", ParsedQuery(plus=("cat", "beach")), "cat + beach"),
    ("cat -dog", ParsedQuery(plus=("cat",), minus=("dog",)), "cat -dog"),
    ("cat - dog", ParsedQuery(plus=("cat",), minus=("dog",)), "cat -dog"),
    # A term runs to the next + or -: "red car" minus "blue sky".
    ("red car -blue sky", ParsedQuery(plus=("red car",), minus=("blue sky",)), "red car -blue sky"),
    # A quoted phrase is a term of its own, and a filter.
    ('"red hat" car', ParsedQuery(plus=("red hat", "car"), phrases=("red hat",)), '"red hat" + car'),
    ('cat "red hat" dog', ParsedQuery(plus=("cat", "red hat", "dog"), phrases=("red hat",)),
     'cat + "red hat" + dog'),
    ('cat +"red hat"', ParsedQuery(plus=("cat", "red hat"), phrases=("red hat",)), 'cat + "red hat"'),
    ('"red hat"', ParsedQuery(plus=("red hat",), phrases=("red hat",)), '"red hat"'),
    ('"Red   Hat" car', ParsedQuery(plus=("Red Hat", "car"), phrases=("Red Hat",)), '"Red Hat" + car'),
    # A minus phrase subtracts its words; it is not a phrase filter, and the sign ends with the quote.
    ('-"x y" cat', ParsedQuery(plus=("cat",), minus=("x y",)), "cat -x y"),
    ('cat -"x y" -z', ParsedQuery(plus=("cat",), minus=("x y", "z")), "cat -x y -z"),
    # Image numbers.
    ("#12 + night", ParsedQuery(plus=("night",), refs=(12,)), "#12 + night"),
    ("#12 night", ParsedQuery(plus=("night",), refs=(12,)), "#12 + night"),
    ("night + #12", ParsedQuery(plus=("night",), refs=(12,)), "#12 + night"),
    ("#12", ParsedQuery(refs=(12,)), "#12"),
    ("#12 + #12", ParsedQuery(refs=(12,)), "#12"),
    ("#12 #13", ParsedQuery(refs=(12, 13)), "#12 + #13"),
    ("cat -#3", ParsedQuery(plus=("cat",), minus_refs=(3,)), "cat -#3"),
    ("cat -#3 -#3", ParsedQuery(plus=("cat",), minus_refs=(3,)), "cat -#3"),
    ("cat -#3 dog", ParsedQuery(plus=("cat",), minus=("dog",), minus_refs=(3,)), "cat -#3 -dog"),
    ("#3 -dog + night", ParsedQuery(plus=("night",), minus=("dog",), refs=(3,)), "#3 + night -dog"),
    # More than 18 digits is no image number: it is a word.
    ("#1234567890123456789", ParsedQuery(plus=("#1234567890123456789",)), "#1234567890123456789"),
    # Colours.
    ("car color:red", ParsedQuery(plus=("car",), colors=("red",)), "car color:red"),
    ("COLOR:RED car", ParsedQuery(plus=("car",), colors=("red",)), "car color:red"),
    ("car colour:grey", ParsedQuery(plus=("car",), colors=("gray",)), "car color:gray"),
    ("cat color:Crimson colour:blue color:red", ParsedQuery(plus=("cat",), colors=("red", "blue")),
     "cat color:red color:blue"),
    ("color:red", ParsedQuery(colors=("red",)), "color:red"),
    ("color:red -#3", ParsedQuery(minus_refs=(3,), colors=("red",)), "-#3 color:red"),
    # A hyphen or plus inside a word is no operator.
    ("t-shirt", ParsedQuery(plus=("t-shirt",)), "t-shirt"),
    ("cat-dog", ParsedQuery(plus=("cat-dog",)), "cat-dog"),
    ("cat+beach", ParsedQuery(plus=("cat+beach",)), "cat+beach"),
    ("red t-shirt -x-ray", ParsedQuery(plus=("red t-shirt",), minus=("x-ray",)), "red t-shirt -x-ray"),
    # Any script.
    ("кошка + пляж", ParsedQuery(plus=("кошка", "пляж")), "кошка + пляж"),
    ("猫", ParsedQuery(plus=("猫",)), "猫"),
    ("猫 -犬", ParsedQuery(plus=("猫",), minus=("犬",)), "猫 -犬"),
    # Spacing is normalised.
    ("   cat    +   beach   ", ParsedQuery(plus=("cat", "beach")), "cat + beach"),
    ("red\tcar\n-blue   sky", ParsedQuery(plus=("red car",), minus=("blue sky",)), "red car -blue sky"),
    # A leading plus is allowed and means nothing more than the term itself.
    ("+ cat", ParsedQuery(plus=("cat",)), "cat"),
    ("+cat", ParsedQuery(plus=("cat",)), "cat"),
    # A term without any word characters adds nothing (it is not an error either).
    ("cat + !!!", ParsedQuery(plus=("cat",)), "cat"),
    ('"" cat', ParsedQuery(plus=("cat",)), "cat"),
    # Everything at once.
    ('cat + "red hat" -"blue sky" #4 -#5 color:red',
     ParsedQuery(plus=("cat", "red hat"), minus=("blue sky",), phrases=("red hat",), refs=(4,), minus_refs=(5,),
                 colors=("red",)),
     '#4 + cat + "red hat" -#5 -blue sky color:red'),
]


@pytest.mark.parametrize(("query", "expected", "canonical"), VALID, ids=[q for q, _, _ in VALID])
def test_parse_query(query: str, expected: ParsedQuery, canonical: str) -> None:
    parsed = parse_query(query)
    assert parsed == expected
    assert not parsed.empty
    assert parsed.describe() == canonical


@pytest.mark.parametrize(("query", "expected", "canonical"), VALID, ids=[q for q, _, _ in VALID])
def test_describe_round_trips(query: str, expected: ParsedQuery, canonical: str) -> None:
    assert parse_query(canonical) == expected
    assert parse_query(canonical).describe() == canonical


@pytest.mark.parametrize(("query", "words"), [
    ("cat + beach", "cat beach"),
    ("cat -dog", "cat"),
    ('"red hat" car', "red hat car"),
    ("#12 + night", "night"),
    ("#12", ""),
    ("color:red", ""),
])
def test_words_are_every_positive_text(query: str, words: str) -> None:
    assert parse_query(query).words == words


def test_empty_means_nothing_to_look_for() -> None:
    assert ParsedQuery().empty
    assert ParsedQuery(minus=("dog",), minus_refs=(3,), phrases=("x",)).empty
    assert not ParsedQuery(plus=("cat",)).empty
    assert not ParsedQuery(refs=(1,)).empty
    assert not ParsedQuery(colors=("red",)).empty


# -- parse_query: malformed queries get the usage line ---------------------------------------------

AFTER_EACH = "Put words (or an image #number) after each + and -."
AS_WELL = "Say what to look for as well as what to leave out."
WHAT = "Tell me what to look for."
QUOTE = "A quote is not closed."

MALFORMED: list[tuple[str, str]] = [
    ("+", AFTER_EACH),
    ("-", AFTER_EACH),
    ("cat +", AFTER_EACH),
    ("cat -", AFTER_EACH),
    ("cat + + dog", AFTER_EACH),
    ("cat - - dog", AFTER_EACH),
    ("cat + -dog", AFTER_EACH),
    ("cat - +dog", AFTER_EACH),
    ("color:red +", AFTER_EACH),
    ('"abc', QUOTE),
    ('cat "red hat', QUOTE),
    ('"red hat""', QUOTE),
    ("-dog", AS_WELL),
    ("- cat", AS_WELL),
    ("-dog cat", AS_WELL),  # the minus term runs to the end: "dog cat" is all left out
    ("-#3", AS_WELL),
    ("-#3 #4", AS_WELL),
    ('-"x y"', AS_WELL),
    ("", WHAT),
    ("   ", WHAT),
    ('""', WHAT),
    ('"  "', WHAT),
    ("#", WHAT),
    ("!!!", WHAT),
]


@pytest.mark.parametrize(("query", "reason"), MALFORMED, ids=[repr(q) for q, _ in MALFORMED])
def test_malformed_queries_get_the_usage_line(query: str, reason: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)
    assert str(caught.value) == f"{reason} {FIND_USAGE}"
    assert isinstance(caught.value, InputError)  # every front end answers it as a user's mistake


@pytest.mark.parametrize("query", ["color:plaid", "car color:plaid", "car colour:"])
def test_an_unknown_colour_is_named(query: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_query(query)
    assert not isinstance(caught.value, QuerySyntaxError)
    word = query.partition(":")[2]
    assert f"I don't know the colour {word!r}" in str(caught.value)
    assert ", ".join(COLOR_FAMILIES) in str(caught.value)
    assert FIND_USAGE not in str(caught.value)


@pytest.mark.parametrize("query", ["cat ++ dog", "cat +- dog", "cat +-dog", "cat --dog", "cat -- dog", "cat -+ dog"])
def test_a_doubled_operator_is_malformed(query: str) -> None:
    # As "cat + + dog" and "cat + -dog" are.
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)
    assert FIND_USAGE in str(caught.value)


def test_describe_quotes_only_what_was_quoted() -> None:
    parsed = parse_query('"red hat" + red hat')
    assert parsed == ParsedQuery(plus=("red hat", "red hat"), phrases=("red hat",))
    assert parse_query(parsed.describe()) == parsed


# -- parse_refinement ---------------------------------------------------------------------------------

REFINEMENTS: list[tuple[str, Refinement, str]] = [
    # reply, what it refines with, describe()
    ("at night", Refinement(plus=("at night",)), "at night"),
    ("but red", Refinement(plus=("red",)), "red"),
    ("-people", Refinement(minus=("people",)), "-people"),
    ("- people", Refinement(minus=("people",)), "-people"),
    ("but not blurry", Refinement(minus=("blurry",)), "-blurry"),
    ("But Not Blurry", Refinement(minus=("Blurry",)), "-Blurry"),
    ("and not blurry", Refinement(minus=("blurry",)), "-blurry"),
    ("not blurry", Refinement(minus=("blurry",)), "-blurry"),
    ("without people", Refinement(minus=("people",)), "-people"),
    ("with no people", Refinement(minus=("people",)), "-people"),
    ("no text", Refinement(minus=("text",)), "-text"),
    ("no   text  here", Refinement(minus=("text here",)), "-text here"),
    ("minus dog", Refinement(minus=("dog",)), "-dog"),
    # Only one leading filler is dropped: "more" stays a word.
    ("and more contrast", Refinement(plus=("more contrast",)), "more contrast"),
    ("with a hat", Refinement(plus=("a hat",)), "a hat"),
    ("plus sun", Refinement(plus=("sun",)), "sun"),
    ("only cats", Refinement(plus=("cats",)), "cats"),
    ("but -people", Refinement(minus=("people",)), "-people"),
    ("but + red", Refinement(plus=("red",)), "red"),
    ("+red", Refinement(plus=("red",)), "red"),
    ("at night -people", Refinement(plus=("at night",), minus=("people",)), "at night -people"),
    ("cat + beach -dog", Refinement(plus=("cat", "beach"), minus=("dog",)), "cat +beach -dog"),
    # A negation or filler must be a word of its own.
    ("notebook", Refinement(plus=("notebook",)), "notebook"),
    ("nothing", Refinement(plus=("nothing",)), "nothing"),
    ("no-text", Refinement(plus=("no-text",)), "no-text"),
    ("butter", Refinement(plus=("butter",)), "butter"),
]


@pytest.mark.parametrize(("reply", "expected", "described"), REFINEMENTS, ids=[r for r, _, _ in REFINEMENTS])
def test_parse_refinement(reply: str, expected: Refinement, described: str) -> None:
    refinement = parse_refinement(reply)
    assert refinement == expected
    assert not refinement.empty
    assert refinement.describe() == described


@pytest.mark.parametrize("reply", ["", " ", "  \t\n ", "...", "!?", "—", "no ...", "but ...", "not +", "#12"])
def test_a_reply_without_words_refines_nothing(reply: str) -> None:
    refinement = parse_refinement(reply)
    assert refinement == Refinement()
    assert refinement.empty
    assert refinement.describe() == ""


@pytest.mark.parametrize("reply", ["+", "-", "red +", "night -", "cat + + dog", "but + "])
def test_a_lone_operator_in_a_reply_gets_the_refine_usage(reply: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_refinement(reply)
    assert str(caught.value) == REFINE_USAGE
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
