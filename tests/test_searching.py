"""Searching a gallery (core.search.searcher) and the engine's search methods, over a real SQLite
gallery of hand-made vectors: every cosine below can be worked out by hand.

The fake runner maps each known word of a text to an axis (cat e0, dog e1, beach e2, night e3,
red e4, hat e5, car e6) and sums them; a text without a known word gets e7.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from PIL import Image

from core.errors import NotFoundError
from core.gallery.engine import Engine
from core.gallery.files import MediaStore
from core.records import NewImage
from core.search.query import QuerySyntaxError, parse_query
from core.search.searcher import QueryPlan, Searcher
from core.search.words import SearchResult, words_of
from core.storage.sqlite import SqliteGallery
from tests.test_queryvec import close, normalise

MODEL = "test/clip"
OTHER_MODEL = "test/older-clip"
DIM = 8
AXES = {"cat": 0, "dog": 1, "beach": 2, "night": 3, "red": 4, "hat": 5, "car": 6}
UNKNOWN = 7
OTHER_CHAT = "chat:7"
T = TypeVar("T")


def vec(**parts: float) -> np.ndarray:
    """normalise(sum of weight * axis): ``vec(cat=1, dog=0.06)``."""
    v = np.zeros(DIM, dtype=np.float64)
    for word, weight in parts.items():
        v[AXES.get(word, UNKNOWN)] += weight
    out: np.ndarray = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def axis(word: str) -> np.ndarray:
    return vec(**{word: 1.0})




class WordRunner:
    """An :class:`core.models.inference.Encoding` with no model: texts become sums of word axes."""

    model_id = MODEL

    def __init__(self) -> None:
        self.texts: list[list[str]] = []

    async def start(self) -> None:
        return None

    async def load(self) -> int:
        return DIM

    async def call(self, fn: Callable[[], T]) -> T:
        return fn()

    async def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        raise AssertionError("no image is encoded in these tests")

    async def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        raise AssertionError("no image is encoded in these tests")

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.append(list(texts))
        rows = []
        for text in texts:
            known = [w for w in words_of(text) if w in AXES]
            rows.append(vec(**dict.fromkeys(known, 1.0)) if known else vec(other=1.0))
        return np.stack(rows).astype(np.float32)

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        raise AssertionError("no image is encoded in these tests")

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class Picture:
    name: str
    label: str
    description: str
    vector: np.ndarray
    families: tuple[str, ...] = ()
    collection: str = "global"
    model: str = MODEL


# Cosines to "cat" (e0): cat 1, dog .998, stranger .981, kitten .958, beachcat .707, hatred .140.
PICTURES = [
    Picture("cat", "cat on a sofa", "", axis("cat"), ("gray",)),
    # Says "dog", and also "cat"; its vector is all but a cat's.
    Picture("dog", "dog", "a puppy next to a cat", vec(cat=1, dog=0.06), ("brown",)),
    Picture("kitten", "kitten", "", vec(cat=1, night=0.3), ("gray", "white")),
    Picture("beachcat", "cat", "a cat lying on the beach", vec(cat=1, beach=1), ("yellow", "blue")),
    Picture("beach", "beach", "sand and sea", axis("beach"), ("yellow",)),
    Picture("redhat", "red hat", "", vec(red=1, hat=1), ("red",)),
    Picture("hatred", "hat", "Hat, red and worn", vec(red=1, hat=1, cat=0.2), ("red", "brown")),
    Picture("logo", "RED-HAT!", "club logo", vec(red=1, hat=1, car=1), ("white",)),
    Picture("car", "red car", "", vec(car=1, red=0.5), ("red", "black")),
    Picture("night", "night street", "city lights", axis("night"), ("blue", "black")),
    # Another chat's gallery, and an image with a vector of another model only.
    Picture("stranger", "a cat", "", vec(cat=1, beach=0.2), ("gray",), collection=OTHER_CHAT),
    Picture("oldcat", "cat", "an old cat", axis("cat"), ("gray",), model=OTHER_MODEL),
]
VISIBLE = [p.name for p in PICTURES if p.collection == "global" and p.model == MODEL]  # 10


@dataclass
class World:
    gallery: SqliteGallery
    engine: Engine
    searcher: Searcher
    runner: WordRunner
    ids: dict[str, int]
    vectors: dict[str, np.ndarray]
    atol: float  # how close the index's scores are to exact cosines

    def name_of(self, image_id: int) -> str:
        return next(name for name, i in self.ids.items() if i == image_id)

    def names(self, results: Sequence[SearchResult]) -> list[str]:
        return [self.name_of(r.id) for r in results]

    async def find(self, query: str, k: int, collections: Sequence[str] = ("global",)) -> list[SearchResult]:
        plan = await self.searcher.plan(query, collections=collections)
        return await self.searcher.search(plan, collections=collections, k=k)


@pytest.fixture(params=["fp32", "fp16"])
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    """The gallery above; its index on the CPU, float32 (exact scores) or float16 (the default)."""
    precision = str(request.param)
    gallery = SqliteGallery(tmp_path / "gallery", index_precision=precision, index_device="cpu")
    await gallery.open()
    ids = {}
    for n, p in enumerate(PICTURES):
        image = NewImage(collection=p.collection, label=p.label, description=p.description, sha256=f"{n:064x}",
                         width=1, height=1, file=None, color_families="".join(f" {f} " for f in p.families))
        ids[p.name], created = await gallery.insert_image(image, p.vector, p.model)
        assert created
    runner = WordRunner()
    engine = Engine(gallery=gallery, media=MediaStore(tmp_path / "media"), runner=runner)
    await engine.start()
    searcher = Searcher(gallery, runner, ready=engine.ready, path_of=engine.path_of)
    try:
        yield World(gallery, engine, searcher, runner, ids, {p.name: p.vector for p in PICTURES},
                    atol=1e-6 if precision == "fp32" else 2e-3)
    finally:
        await engine.close()


# -- ranking: words first, then cosine -----------------------------------------------------------------


async def test_word_matches_come_first_each_tier_by_cosine(world: World) -> None:
    results = await world.find("cat", k=5)
    # Holding "cat": cat 1, dog .998, beachcat .707; then the rest: kitten .958, hatred .140.
    assert world.names(results) == ["cat", "dog", "beachcat", "kitten", "hatred"]
    assert [r.text_match for r in results] == [True, True, True, False, False]
    assert [r.score for r in results] == pytest.approx(
        [1.0, 1 / math.sqrt(1.0036), 1 / math.sqrt(2), 1 / math.sqrt(1.09), 0.2 / math.sqrt(2.04)], abs=world.atol)
    assert results[0].label == "cat on a sofa" and results[0].collection == "global" and results[0].path is None


async def test_a_vector_alone_ranks_by_cosine_only(world: World) -> None:
    results = await world.searcher.search(QueryPlan(axis("cat"), kind="image"), collections=["global"], k=5)
    assert world.names(results) == ["cat", "dog", "kitten", "beachcat", "hatred"]
    assert not any(r.text_match for r in results)


async def test_every_word_must_be_held(world: World) -> None:
    # "cat + beach": normalise(mean(cat, beach)); only beachcat holds both words. Then cat and
    # beach (.707) and dog (.706), then kitten (.677).
    results = await world.find("cat + beach", k=5)
    names = world.names(results)
    assert names[0] == "beachcat" and results[0].text_match
    assert set(names[1:4]) == {"cat", "beach", "dog"} and names[4] == "kitten"
    assert not any(r.text_match for r in results[1:])


async def test_search_covers_only_the_collections_given(world: World) -> None:
    assert "stranger" not in world.names(await world.find("cat", k=20))
    assert world.names(await world.find("cat", k=4, collections=[OTHER_CHAT])) == ["stranger"]
    both = await world.find("cat", k=4, collections=["global", OTHER_CHAT, "global"])
    # stranger (.981) holds "a cat": in the word tier, between dog and beachcat.
    assert world.names(both) == ["cat", "dog", "stranger", "beachcat"]
    assert [r.collection for r in both] == ["global", "global", OTHER_CHAT, "global"]


async def test_an_image_without_a_vector_of_the_model_is_never_found(world: World) -> None:
    # oldcat says "cat" but only has a vector of another model.
    results = await world.find("cat", k=20)
    assert sorted(world.names(results)) == sorted(VISIBLE)


# -- phrases ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "expected"), [
    # "red hat" itself (1.0) and "RED-HAT!" (.816): case and punctuation do not matter.
    ('"red hat"', ["redhat", "logo"]),
    ('"RED, hat!"', ["redhat", "logo"]),
    # Order matters: "hat, red" is only in hatred's description.
    ('"hat red"', ["hatred"]),
    ('"Hat, Red"', ["hatred"]),
    # Whole words, next to each other ("cat on a sofa" has neither).
    ('"sofa cat"', []),
    ('"cat sofa"', []),
    ('"on a sofa"', ["cat"]),
    ('"re hat"', []),
    ('"blue whale"', []),
    # With other filters.
    ('"red hat" -club', ["redhat"]),
    ('"red hat" color:white', ["logo"]),
    ('"red hat" color:green', []),
])
async def test_phrases_keep_only_images_holding_them(world: World, query: str, expected: list[str]) -> None:
    results = await world.find(query, k=5)
    assert world.names(results) == expected
    assert all(r.text_match for r in results)  # their words are held too


async def test_a_phrase_filters_the_cosine_tier_as_well(world: World) -> None:
    # "hat" + "red hat": the plain word would let in "hat" (hatred), the phrase does not.
    results = await world.find('hat + "red hat"', k=10)
    assert world.names(results) == ["redhat", "logo"]
    # A plan whose words are gone (a refined thread) still keeps only the phrase's images.
    plan = replace(await world.searcher.plan('"red hat"', collections=["global"]), vector=axis("cat"), words="")
    results = await world.searcher.search(plan, collections=["global"], k=10)
    assert sorted(world.names(results)) == ["logo", "redhat"]
    assert not any(r.text_match for r in results)


# -- minus words ------------------------------------------------------------------------------------


async def test_minus_words_leave_out_images_that_say_them(world: World) -> None:
    plan = await world.searcher.plan("cat -dog", collections=["global"])
    close(plan.vector, normalise(axis("cat") - 0.5 * axis("dog")))
    assert plan.minus_words == ("dog",) and plan.words == "cat"
    # By vector alone the dog picture is second best (.866), above kitten (.857)...
    raw = await world.gallery.nearest(plan.vector, model_id=MODEL, collections=["global"], k=3)
    assert [world.name_of(i) for i in raw.ids.tolist()] == ["cat", "dog", "kitten"]
    # ...but it says "dog": it is left out, from the word tier ("a cat") and the rest alike.
    results = await world.searcher.search(plan, collections=["global"], k=4)
    # cat .894 and beachcat .632 hold "cat"; then kitten .857 and hatred .125.
    assert world.names(results) == ["cat", "beachcat", "kitten", "hatred"]
    assert [r.text_match for r in results] == [True, True, False, False]
    everything = await world.searcher.search(plan, collections=["global"], k=20)
    assert sorted(world.names(everything)) == sorted(set(VISIBLE) - {"dog"})


async def test_minus_words_apply_to_a_plain_vector_plan(world: World) -> None:
    plan = QueryPlan(axis("cat"), minus_words=("puppy",), kind="image")
    results = await world.searcher.search(plan, collections=["global"], k=3)
    assert world.names(results) == ["cat", "kitten", "beachcat"]


async def test_a_minus_term_of_several_words_needs_them_all(world: World) -> None:
    # "-red car": only the image holding both "red" and "car" is left out.
    results = await world.find("hat -red car", k=20)
    assert "car" not in world.names(results)
    assert {"redhat", "hatred", "logo"} <= set(world.names(results))
    assert len(results) == len(VISIBLE) - 1


# -- excluded ids ---------------------------------------------------------------------------------------


async def test_excluded_ids_never_come_back_and_k_is_still_filled(world: World) -> None:
    cat, dog, kitten = world.ids["cat"], world.ids["dog"], world.ids["kitten"]
    plan = QueryPlan(axis("cat"), exclude=(cat, dog), kind="image")
    assert world.names(await world.searcher.search(plan, collections=["global"], k=3)) == [
        "kitten", "beachcat", "hatred"]
    # Three of ten left out, seven asked for: the other seven, whatever their score.
    plan = QueryPlan(axis("cat"), exclude=(cat, dog, kitten), kind="image")
    results = await world.searcher.search(plan, collections=["global"], k=7)
    assert sorted(world.names(results)) == sorted(set(VISIBLE) - {"cat", "dog", "kitten"})
    # In the word tier too.
    words = replace(await world.searcher.plan("cat", collections=["global"]), exclude=(cat,))
    results = await world.searcher.search(words, collections=["global"], k=4)
    assert world.names(results) == ["dog", "beachcat", "kitten", "hatred"]
    assert [r.text_match for r in results] == [True, True, False, False]


async def test_minus_image_is_subtracted_and_excluded(world: World) -> None:
    kitten = world.ids["kitten"]
    plan = await world.searcher.plan(f"cat -#{kitten}", collections=["global"])
    assert plan.exclude == (kitten,) and plan.kind == "text" and plan.words == "cat"
    close(plan.vector, normalise(axis("cat") - 0.5 * world.vectors["kitten"]))
    # q = (.964 cat, -.266 night): cat .964, dog .962, beachcat .682 hold "cat"; hatred .135.
    assert world.names(await world.searcher.search(plan, collections=["global"], k=4)) == [
        "cat", "dog", "beachcat", "hatred"]
    results = await world.searcher.search(plan, collections=["global"], k=20)
    assert sorted(world.names(results)) == sorted(set(VISIBLE) - {"kitten"})
    assert world.names(results)[-1] == "night"  # the only negative cosine: pushed away


async def test_exclusions_and_minus_words_together(world: World) -> None:
    plan = replace(await world.searcher.plan("cat -dog", collections=["global"]), exclude=(world.ids["cat"],))
    assert world.names(await world.searcher.search(plan, collections=["global"], k=3)) == [
        "beachcat", "kitten", "hatred"]


# -- colours ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "expected", "matched"), [
    # Red images: redhat and hatred hold "hat" (.707, .700), then car (0). logo says "hat" but is white.
    ("hat color:red", ["redhat", "hatred", "car"], [True, True, False]),
    ("car color:black", ["car", "night"], [True, False]),
    ("car colour:black color:red", ["car"], [True]),
    ("cat color:green", [], []),
    # Colours alone rank by the colour's name, as words: every red image saying "red" first.
    ("color:red", ["redhat", "hatred", "car"], [True, True, True]),
    ("color:gray", ["cat", "kitten"], [False, False]),
])
async def test_colour_families_filter(world: World, query: str, expected: list[str], matched: list[bool]) -> None:
    results = await world.find(query, k=5)
    assert world.names(results) == expected
    assert [r.text_match for r in results] == matched


async def test_colour_alone_plans_the_colour_name(world: World) -> None:
    plan = await world.searcher.plan("color:red", collections=["global"])
    assert plan.families == ("red",) and plan.kind == "text" and plan.words == "red"
    close(plan.vector, axis("red"))
    assert world.runner.texts == [["red"]]


async def test_a_vector_plan_with_families(world: World) -> None:
    plan = QueryPlan(axis("cat"), families=("gray",), kind="image")
    assert world.names(await world.searcher.search(plan, collections=["global"], k=5)) == ["cat", "kitten"]
    assert world.names(await world.searcher.search(plan, collections=["global", OTHER_CHAT], k=5)) == [
        "cat", "stranger", "kitten"]


async def test_colour_with_minus_words(world: World) -> None:
    plan = await world.searcher.plan("color:red -dog", collections=["global"])
    close(plan.vector, normalise(axis("red") - 0.5 * axis("dog")))
    assert plan.families == ("red",) and plan.minus_words == ("dog",)
    assert world.names(await world.searcher.search(plan, collections=["global"], k=5)) == [
        "redhat", "hatred", "car"]


# -- image numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["missing", "stranger", "oldcat"])
async def test_an_image_not_here_is_not_found_alike(world: World, which: str) -> None:
    image_id = world.ids.get(which, 999_999)
    message = f"There is no image #{image_id} here."
    with pytest.raises(NotFoundError) as caught:
        await world.searcher.image_vectors([image_id], ["global"])
    assert str(caught.value) == message
    with pytest.raises(NotFoundError) as caught:
        await world.engine.image_vectors([world.ids["cat"], image_id], ["global"])
    assert str(caught.value) == message
    for query in (f"#{image_id}", f"#{image_id} + night", f"cat -#{image_id}"):
        with pytest.raises(NotFoundError) as caught:
            await world.engine.plan_query(query, collections=["global"])
        assert str(caught.value) == message
    with pytest.raises(NotFoundError) as caught:
        await world.engine.find_text(f"#{image_id} + night")
    assert str(caught.value) == message


async def test_image_vectors_are_the_stored_ones(world: World) -> None:
    ids = [world.ids["kitten"], world.ids["stranger"]]
    got = await world.engine.image_vectors(ids, ["global", OTHER_CHAT])
    assert list(got) == ids
    np.testing.assert_array_equal(got[ids[0]], world.vectors["kitten"])
    np.testing.assert_array_equal(got[ids[1]], world.vectors["stranger"])


# -- plans -----------------------------------------------------------------------------------------------


async def test_plan_of_images_only(world: World) -> None:
    k, b = world.ids["kitten"], world.ids["beach"]
    plan = await world.searcher.plan(f"#{k}", collections=["global"])
    assert plan.kind == "image" and plan.words == "" and plan.title == f"#{k}"
    close(plan.vector, world.vectors["kitten"])
    assert world.runner.texts == []  # no words, nothing encoded
    plan = await world.searcher.plan(f"#{k} #{b}", collections=["global"])
    assert plan.kind == "image"
    close(plan.vector, normalise(world.vectors["kitten"] + world.vectors["beach"]))


@pytest.mark.parametrize("w", [0.5, 0.2, 0.8])
async def test_plan_of_an_image_and_words_is_the_readme_formula(world: World, w: float) -> None:
    k = world.ids["kitten"]
    plan = await world.engine.plan_query(f"#{k} + night", collections=["global"], weight=w)
    assert plan.kind == "mixed"
    assert plan.words == ""  # an image query has no word tier
    assert plan.title == f"#{k} + night"
    close(plan.vector, normalise((1 - w) * world.vectors["kitten"] + w * axis("night")))


async def test_plan_of_an_image_minus_words_or_images(world: World) -> None:
    k, d = world.ids["kitten"], world.ids["dog"]
    plan = await world.searcher.plan(f"#{k} -dog", collections=["global"])
    assert plan.kind == "image" and plan.minus_words == ("dog",) and plan.exclude == ()
    close(plan.vector, normalise(0.5 * world.vectors["kitten"] - 0.5 * axis("dog")))
    plan = await world.searcher.plan(f"#{k} -#{d}", collections=["global"])
    assert plan.kind == "image" and plan.exclude == (d,) and plan.minus_words == ()
    close(plan.vector, normalise(0.5 * world.vectors["kitten"] - 0.5 * world.vectors["dog"]))


@pytest.mark.parametrize(("query", "expected", "words"), [
    ("night", axis("night"), "night"),
    ("cat + beach", normalise(axis("cat") + axis("beach")), "cat beach"),
    ("cat -dog", normalise(axis("cat") - 0.5 * axis("dog")), "cat"),
    ("red car -blue sky", normalise(vec(red=1, car=1) - 0.5 * vec(other=1)), "red car"),
    ('"red hat" + car', normalise(vec(red=1, hat=1) + axis("car")), "red hat car"),
])
async def test_plan_of_words(world: World, query: str, expected: np.ndarray, words: str) -> None:
    plan = await world.searcher.plan(query, collections=["global"])
    assert plan.kind == "text" and plan.words == words
    close(plan.vector, expected)
    parsed = parse_query(query)
    assert world.runner.texts == [[*parsed.plus, *parsed.minus]]  # one call for every text
    assert plan.title == parsed.describe() and plan.phrases == parsed.phrases
    # A parsed query plans the same.
    again = await world.searcher.plan(parsed, collections=["global"])
    assert again == plan
    np.testing.assert_array_equal(again.vector, plan.vector)


async def test_an_image_query_has_no_word_tier(world: World) -> None:
    # normalise(.75 beach + .25 cat): beach .949, beachcat .894; no text matches though both say "beach"/"cat".
    plan = await world.searcher.plan(f"#{world.ids['beach']} + cat", collections=["global"], weight=0.25)
    results = await world.searcher.search(plan, collections=["global"], k=2)
    assert world.names(results) == ["beach", "beachcat"]
    assert not any(r.text_match for r in results)


# -- the engine's face ------------------------------------------------------------------------------


async def test_engine_find_text_is_plan_then_search(world: World) -> None:
    found = await world.engine.find_text("cat -dog", k=4)
    assert world.names(found) == ["cat", "beachcat", "kitten", "hatred"]
    plan = await world.engine.plan_query("cat -dog", collections=["global"])
    assert await world.engine.search_plan(plan, collections=["global"], k=4) == found
    assert await world.engine.find_text('"sofa cat"') == []
    assert world.names(await world.engine.find_text("cat", collections=[OTHER_CHAT])) == ["stranger"]
    vector_hits = await world.engine.search_vector(axis("cat"), k=3)
    assert world.names(vector_hits) == ["cat", "dog", "kitten"]


async def test_engine_find_text_refuses_malformed_queries(world: World) -> None:
    with pytest.raises(QuerySyntaxError):
        await world.engine.find_text("cat +")
    assert world.runner.texts == []
