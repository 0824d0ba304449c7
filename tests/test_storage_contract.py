"""One contract for every gallery backend: each test runs against SQLite and PostgreSQL alike.

What the engine relies on, method by method of :class:`core.storage.base.GalleryStorage`; a
backend passes this suite unchanged or it is not a backend.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest

from core.errors import DimensionMismatchError, NotFoundError, StoreError
from core.records import NewImage, PictureText
from core.storage.base import GalleryStorage, Sighting
from core.storage.postgres_schema import SCHEMA_VERSION as PG_SCHEMA
from core.storage.sqlite_schema import SCHEMA_VERSION as SQLITE_SCHEMA
from tests.pg import pg_server_url_fixture, pg_url_fixture  # noqa: F401

MODEL = "test/clip"
DIM = 32
Factory = Callable[[], GalleryStorage]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def where(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The gallery's place: a data dir, or the URL of a database of the test's own."""
    if backend == "sqlite":
        return str(tmp_path / "gallery")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def factory(backend: str, where: str) -> Factory:
    """Makes (unopened) galleries on the same storage: several stand for several processes."""
    if backend == "sqlite":
        try:
            from core.storage.sqlite import SqliteGallery
        except ImportError:
            pytest.skip("core.storage.sqlite is not there yet")
        return lambda: SqliteGallery(Path(where))
    from core.storage.postgres import PostgresGallery

    return lambda: PostgresGallery(where)


@pytest.fixture
async def gallery(factory: Factory) -> AsyncIterator[GalleryStorage]:
    g = factory()
    await g.open()
    try:
        yield g
    finally:
        await g.close()


def image(n: int, collection: str = "global", **kw: object) -> NewImage:
    fields: dict[str, object] = {
        "collection": collection, "label": f"label {n}", "description": f"description {n}",
        "sha256": f"{n:064x}", "width": 100 + n, "height": 50 + n, "file": f"ab/{n:064x}.jpg",
    }
    fields.update(kw)
    return NewImage(**fields)  # type: ignore[arg-type]


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def fill(g: GalleryStorage, vectors: np.ndarray, collections: list[str], families: list[str] | None = None,
               ) -> list[int]:
    ids = []
    for n, vec in enumerate(vectors):
        fam = families[n] if families else ""
        image_id, created = await g.insert_image(image(n, collections[n % len(collections)], color_families=fam),
                                                 vec, MODEL)
        assert created
        ids.append(image_id)
    return ids


# -- lifecycle ----------------------------------------------------------------------------------


async def test_open_is_idempotent_close_is_safe(factory: Factory) -> None:
    g = factory()
    await g.close()  # before open: nothing to do
    await g.open()
    await g.open()
    assert await g.schema_version() >= 1
    assert await g.integrity_check() == ["ok"]
    assert g.location
    await g.close()
    await g.close()
    again = factory()  # an existing gallery opens as it is
    await again.open()
    assert await again.collection_counts() == {}
    await again.close()


async def test_a_newer_schema_is_refused(backend: str, where: str, factory: Factory) -> None:
    g = factory()
    await g.open()
    version = await g.schema_version()
    await g.close()
    if backend == "sqlite":
        with sqlite3.connect(Path(where) / "clipbot.db") as db:
            db.execute(f"PRAGMA user_version = {version + 1}")
    else:
        with psycopg.connect(where, autocommit=True) as conn:
            conn.execute("INSERT INTO schema_version(version) VALUES (%s)", (version + 1,))
    newer = factory()
    with pytest.raises(StoreError, match=r"newer than this clipbot understands.*upgrade clipbot"):
        await newer.open()
    await newer.close()


# -- rows ---------------------------------------------------------------------------------------


async def test_insert_get_list_and_counts(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(1)
    full = NewImage(collection="global", label="Label", description="Desc", sha256="a" * 64, width=640,
                    height=480, file="aa/a.jpg", source_path="/photos/a.jpg", added_by="telegram:1",
                    caption="a caption", colors='[{"hex": "#ff0000", "name": "red", "percent": 50.0}]',
                    color_families=" red ", source_size=12345, source_mtime_ns=1_700_000_000_123_456_789)
    first, created = await gallery.insert_image(full, unit(rng, 1)[0], MODEL)
    assert created
    second, _ = await gallery.insert_image(image(2, "chat"), unit(rng, 1)[0], MODEL)
    third, _ = await gallery.insert_image(image(3), unit(rng, 1)[0], "other/model")
    assert first < second < third

    record = await gallery.get_image(first)
    for field in ("collection", "label", "description", "caption", "sha256", "width", "height", "file",
                  "source_path", "added_by", "colors", "color_families", "source_size", "source_mtime_ns"):
        assert getattr(record, field) == getattr(full, field), field
    assert record.id == first
    assert datetime.fromisoformat(record.created_at).utcoffset() is not None
    assert record.color_list[0]["name"] == "red"

    assert [r.id for r in await gallery.list_images()] == [first, second, third]
    assert [r.id for r in await gallery.list_images("global")] == [first, third]
    assert await gallery.list_images("nowhere") == []
    assert await gallery.collection_counts() == {"chat": 1, "global": 2}
    assert await gallery.embedding_counts() == {MODEL: 2, "other/model": 1}
    assert set(await gallery.get_images([first, third, 999_999])) == {first, third}
    assert await gallery.get_images([]) == {}
    with pytest.raises(NotFoundError):
        await gallery.get_image(999_999)
    assert (await gallery.find_by_sha256("global", "a" * 64)) == record
    assert await gallery.find_by_sha256("chat", "a" * 64) is None
    assert [r.id for r in await gallery.indexed_files("global")] == [first]
    assert await gallery.referenced_files() == {"aa/a.jpg", image(2).file, image(3).file}
    assert await gallery.file_in_use("aa/a.jpg")
    assert not await gallery.file_in_use("zz/none.jpg")
    assert await gallery.has_vector(first, MODEL)
    assert not await gallery.has_vector(first, "other/model")


async def test_the_same_bytes_twice_give_the_existing_id(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(2)
    first, created = await gallery.insert_image(image(1), unit(rng, 1)[0], MODEL)
    again, created_again = await gallery.insert_image(image(1, label="other"), unit(rng, 1)[0], MODEL)
    elsewhere, created_elsewhere = await gallery.insert_image(image(1, "chat"), unit(rng, 1)[0], MODEL)
    assert (created, again, created_again) == (True, first, False)
    assert created_elsewhere and elsewhere != first
    assert (await gallery.get_image(first)).label == "label 1"  # nothing was overwritten
    assert await gallery.collection_counts() == {"chat": 1, "global": 1}


async def test_concurrent_adds_of_one_picture_make_one_row(factory: Factory) -> None:
    """Two processes (two gallery objects) adding the same picture at once."""
    a, b = factory(), factory()
    await a.open()
    await b.open()
    try:
        rng = np.random.default_rng(3)
        vec = unit(rng, 1)[0]
        results = await asyncio.gather(*(g.insert_image(image(n % 5), vec, MODEL) for n in range(20)
                                         for g in (a, b)))
        assert sum(created for _, created in results) == 5
        assert len({image_id for image_id, _ in results}) == 5
        assert await a.collection_counts() == {"global": 5}
        assert await b.embedding_counts() == {MODEL: 5}
    finally:
        await a.close()
        await b.close()


async def test_update_image_and_set_source(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(4)
    image_id, _ = await gallery.insert_image(image(1), unit(rng, 1)[0], MODEL)
    await gallery.update_image(image_id, label="Zebra", description="striped HORSE")
    record = await gallery.get_image(image_id)
    assert (record.label, record.description) == ("Zebra", "striped HORSE")
    assert [r.id for r in await gallery.text_candidates(["global"], ["zebra", "horse"])] == [image_id]
    assert await gallery.text_candidates(["global"], ["label"]) == []  # the old text is gone

    new_vec = unit(rng, 1)[0]
    await gallery.update_image(image_id, label="Zebra", description="", vector=new_vec, model_id=MODEL)
    assert np.array_equal((await gallery.vectors_for([image_id], MODEL))[image_id], new_vec)
    with pytest.raises(NotFoundError):
        await gallery.update_image(999_999, label="x", description="y")

    await gallery.set_source(image_id, "/moved/a.jpg", 42, 1_800_000_000_000_000_000)
    record = await gallery.get_image(image_id)
    assert (record.source_path, record.source_size, record.source_mtime_ns) == \
        ("/moved/a.jpg", 42, 1_800_000_000_000_000_000)
    await gallery.set_source(image_id, "/again.jpg", None, None)
    assert (await gallery.get_image(image_id)).source_size is None


async def test_captions_wait_and_are_set_once_keeping_given_descriptions(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(7)
    vectors = unit(rng, 5)
    waiting = (await gallery.insert_image(image(1, description=""), vectors[0], MODEL))[0]
    given = (await gallery.insert_image(image(2, description="mine"), vectors[1], MODEL))[0]
    done = (await gallery.insert_image(image(3, description="", caption=""), vectors[2], MODEL))[0]  # BLIP said nothing
    other = (await gallery.insert_image(image(4, "telegram:1", description=""), vectors[3], MODEL))[0]
    raced = (await gallery.insert_image(image(5, description=""), vectors[4], MODEL))[0]
    assert [r.id for r in await gallery.awaiting_captions()] == [waiting, other, raced]
    assert [r.id for r in await gallery.awaiting_captions("global")] == [waiting, raced]
    assert await gallery.awaiting_captions("nowhere") == []

    assert await gallery.set_caption(waiting, "A red rocket")
    rec = await gallery.get_image(waiting)
    assert (rec.caption, rec.description) == ("A red rocket", "A red rocket")
    assert [r.id for r in await gallery.text_candidates(["global"], ["rocket"])] == [waiting]  # searchable words
    assert not await gallery.set_caption(waiting, "Another")  # set once: a second pass changes nothing
    assert (await gallery.get_image(waiting)).caption == "A red rocket"
    # A description given after the image was picked for captioning is kept.
    await gallery.update_image(raced, label="r", description="typed by a user")
    assert await gallery.set_caption(raced, "A cat")
    rec = await gallery.get_image(raced)
    assert (rec.caption, rec.description) == ("A cat", "typed by a user")
    assert not await gallery.set_caption(given, "x") or (await gallery.get_image(given)).description == "mine"
    assert not await gallery.set_caption(done, "x") and (await gallery.get_image(done)).caption == ""
    assert not await gallery.set_caption(999_999, "x")
    assert [r.id for r in await gallery.awaiting_captions()] == [other]


# -- batches ------------------------------------------------------------------------------------


async def test_insert_images_answers_in_order_and_keeps_what_is_there(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(11)
    vectors = unit(rng, 5)
    await gallery.prepare_search(MODEL, DIM)  # SQLite: the in-memory index is loaded, and must follow
    there, _ = await gallery.insert_image(image(2), vectors[1], MODEL)  # another process was first
    batch = [image(1), image(2, label="not this one"), image(3, "chat"), image(4), image(5, caption="c")]
    done = await gallery.insert_images(batch, vectors, MODEL)

    assert [created for _, created in done] == [True, False, True, True, True]
    assert [held.sha256 for held, _ in done] == [new.sha256 for new in batch]
    assert done[1][0] == await gallery.get_image(there) and done[1][0].label == "label 2"  # nothing overwritten
    new_ids = [held.id for held, created in done if created]
    assert new_ids == sorted(new_ids) and there not in new_ids  # ids follow the batch's order
    for held, _ in done:
        assert held == await gallery.get_image(held.id)
    assert (done[2][0].collection, done[4][0].caption, done[0][0].width) == ("chat", "c", 101)
    assert await gallery.collection_counts() == {"chat": 1, "global": 4}
    stored = await gallery.vectors_for([held.id for held, _ in done], MODEL)
    assert all(np.array_equal(stored[held.id], vectors[n]) for n, (held, _) in enumerate(done))

    for n in (0, 3, 4):  # the search follows the batch
        hits = await gallery.nearest(vectors[n], model_id=MODEL, collections=["global"], k=1)
        assert hits.ids.tolist() == [done[n][0].id]
    hits = await gallery.nearest(vectors[2], model_id=MODEL, collections=["chat"], k=1)
    assert hits.ids.tolist() == [done[2][0].id]
    assert await gallery.insert_images([], np.zeros((0, DIM), np.float32), MODEL) == []


async def test_insert_images_racing_another_process_store_each_picture_once(factory: Factory) -> None:
    a, b = factory(), factory()
    await a.open()
    await b.open()
    try:
        rng = np.random.default_rng(12)
        vectors = unit(rng, 40)
        order = list(range(40))
        back = list(reversed(order))
        first, second = await asyncio.gather(
            a.insert_images([image(n) for n in order], vectors[order], MODEL),
            b.insert_images([image(n) for n in back], vectors[back], MODEL))
        assert sum(created for _, created in first + second) == 40
        ids_a = {held.sha256: held.id for held, _ in first}
        assert ids_a == {held.sha256: held.id for held, _ in second}  # both processes got the same ids
        assert await a.collection_counts() == {"global": 40}
        assert await b.embedding_counts() == {MODEL: 40}
    finally:
        await a.close()
        await b.close()


async def test_insert_images_stores_nothing_of_a_batch_that_fails(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(13)
    await gallery.insert_image(image(0), unit(rng, 1)[0], MODEL)
    before = (await gallery.collection_counts(), await gallery.embedding_counts())
    fresh = [image(n, "fresh") for n in range(1, 5)]

    with pytest.raises(ValueError, match="twice"):
        await gallery.insert_images([*fresh, image(2, "fresh")], unit(rng, 5), MODEL)
    with pytest.raises(ValueError):
        await gallery.insert_images(fresh, unit(rng, 3), MODEL)  # a vector short
    with pytest.raises(DimensionMismatchError):  # the gallery's vectors of MODEL have DIM dimensions
        await gallery.insert_images(fresh, unit(rng, 4, DIM + 1), MODEL)
    invalid = [*fresh[:2], image(9, "fresh", label=None), *fresh[2:]]  # the schema refuses the third row
    with pytest.raises(StoreError):
        await gallery.insert_images(invalid, unit(rng, 5), MODEL)

    assert (await gallery.collection_counts(), await gallery.embedding_counts()) == before
    assert await gallery.find_many_by_sha256("fresh", [i.sha256 for i in invalid], MODEL) == {}
    done = await gallery.insert_images(fresh, unit(rng, 4), MODEL)  # the same batch, sound: stored whole
    assert [created for _, created in done] == [True] * 4


async def test_find_many_by_sha256_says_which_have_a_vector(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(14)
    with_vector, _ = await gallery.insert_image(image(1), unit(rng, 1)[0], MODEL)
    other_model, _ = await gallery.insert_image(image(2), unit(rng, 1)[0], "other/model")
    await gallery.insert_image(image(3, "chat"), unit(rng, 1)[0], MODEL)
    asked = [image(n).sha256 for n in (1, 2, 3, 4, 1)]  # 3 is in another collection, 4 nowhere
    found = await gallery.find_many_by_sha256("global", asked, MODEL)
    assert set(found) == {image(1).sha256, image(2).sha256}
    assert found[image(1).sha256] == (await gallery.get_image(with_vector), True)
    assert found[image(2).sha256] == (await gallery.get_image(other_model), False)
    assert (await gallery.find_many_by_sha256("global", asked, "other/model"))[image(2).sha256][1]
    assert await gallery.find_many_by_sha256("global", [], MODEL) == {}
    assert await gallery.find_many_by_sha256("nowhere", asked, MODEL) == {}
    many = [image(n).sha256 for n in range(1200)]  # more than one statement's worth on SQLite
    assert set(await gallery.find_many_by_sha256("global", many, MODEL)) == {image(1).sha256, image(2).sha256}


async def test_colours_wait_for_images_with_a_file_and_are_set_once(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(15)
    red = '[{"hex": "#ff0000", "name": "red", "percent": 60.0}]'
    blue = '[{"hex": "#0000ff", "name": "blue", "percent": 70.0}]'
    done = await gallery.insert_images([
        image(1), image(2, file=None), image(3, colors=red, color_families=" red "), image(4, "chat"), image(5),
    ], unit(rng, 5), MODEL)
    first, _, computed, other, last = (held.id for held, _ in done)
    assert [r.id for r in await gallery.awaiting_colors()] == [first, other, last]  # oldest first
    assert [r.id for r in await gallery.awaiting_colors("global")] == [first, last]
    assert await gallery.awaiting_colors("nowhere") == []

    changed = await gallery.set_colors([(first, blue, " blue "), (other, red, " red "), (computed, blue, " blue "),
                                        (999_999, blue, " blue ")])
    assert changed == 2  # the computed one keeps its colours; the missing one is nothing
    held = await gallery.get_image(first)
    assert (held.colors, held.color_families, held.color_list[0]["name"]) == (blue, " blue ", "blue")
    assert (await gallery.get_image(computed)).colors == red
    assert [r.id for r in await gallery.awaiting_colors()] == [last]
    assert await gallery.set_colors([(first, red, " red ")]) == 0  # once
    assert await gallery.set_colors([]) == 0
    with pytest.raises(ValueError):
        await gallery.set_colors([(last, "[]", "")])  # '[]' means "not computed"
    assert [r.id for r in await gallery.awaiting_colors()] == [last]


async def test_a_bulk_load_stores_and_searches_as_ever(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(16)
    vectors = unit(rng, 30)
    async with gallery.bulk_load(MODEL, DIM, 30):
        done = await gallery.insert_images([image(n) for n in range(30)], vectors, MODEL)
        hits = await gallery.nearest(vectors[7], model_id=MODEL, collections=["global"], k=3)
        assert hits.ids[0] == done[7][0].id
    await gallery.prepare_search(MODEL, DIM)
    hits = await gallery.nearest(vectors[9], model_id=MODEL, collections=["global"], k=3)
    assert hits.ids[0] == done[9][0].id
    assert await gallery.embedding_counts() == {MODEL: 30}


async def test_vectors_come_back_bit_for_bit(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(5)
    tricky = np.array([0.1, -0.0, 1e-30, -3.4e38, 3.4e38, 1 / 3, np.float32(np.pi), 1e-45] + [0.5] * 4,
                      dtype=np.float32)
    vectors = np.concatenate([tricky[None, :], rng.standard_normal((3, 12)).astype(np.float32) * 1000])
    ids = [(await gallery.insert_image(image(n), v, MODEL))[0] for n, v in enumerate(vectors)]
    back = await gallery.vectors_for([*ids, 999_999], MODEL)
    assert set(back) == set(ids)
    for image_id, vec in zip(ids, vectors, strict=True):
        assert back[image_id].dtype == np.float32
        assert back[image_id].tobytes() == vec.tobytes()
    # another model's vector of different length, alongside
    other = rng.standard_normal(7).astype(np.float32)
    await gallery.set_vector(ids[0], other, "other/model")
    assert (await gallery.vectors_for(ids, "other/model"))[ids[0]].tobytes() == other.tobytes()
    assert (await gallery.vectors_for(ids[:1], MODEL))[ids[0]].tobytes() == tricky.tobytes()
    assert await gallery.vectors_for([], MODEL) == {}
    assert await gallery.embedding_counts() == {MODEL: 4, "other/model": 1}
    replacement = rng.standard_normal(7).astype(np.float32)
    await gallery.set_vector(ids[0], replacement, "other/model")  # replaces, never adds
    assert (await gallery.vectors_for(ids, "other/model"))[ids[0]].tobytes() == replacement.tobytes()
    assert await gallery.embedding_counts() == {MODEL: 4, "other/model": 1}


async def test_replace_picture_keeps_the_id_and_says_whether_the_old_file_is_unused(
        gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(6)
    a, _ = await gallery.insert_image(image(1, file="old.jpg"), unit(rng, 1)[0], MODEL)
    b, _ = await gallery.insert_image(image(2, "chat", file="shared.jpg"), unit(rng, 1)[0], MODEL)
    await gallery.insert_image(image(3, "other", file="shared.jpg"), unit(rng, 1)[0], MODEL)
    await gallery.set_vector(a, unit(rng, 1, 8)[0], "other/model")

    new_vec = unit(rng, 1)[0]
    edited = image(10, file="new.jpg", label="kept", source_path="/p/a.jpg", color_families=" green ")
    assert await gallery.replace_picture(a, edited, new_vec, MODEL) is True  # old.jpg is now unused
    record = await gallery.get_image(a)
    assert (record.sha256, record.file, record.label, record.color_families) == \
        (edited.sha256, "new.jpg", "kept", " green ")
    assert not await gallery.has_vector(a, "other/model")  # described the old picture
    assert (await gallery.vectors_for([a], MODEL))[a].tobytes() == new_vec.tobytes()
    # a file another row still uses, and a replacement in the same file, leave nothing unused
    assert await gallery.replace_picture(b, image(11, "chat", file="mine.jpg"), new_vec, MODEL) is False
    assert await gallery.replace_picture(a, image(12, file="new.jpg"), new_vec, MODEL) is False
    with pytest.raises(NotFoundError):
        await gallery.replace_picture(999_999, image(13), new_vec, MODEL)


async def test_delete_says_whether_the_file_is_unused_and_drops_vectors(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(7)
    a, _ = await gallery.insert_image(image(1, file="shared.jpg"), unit(rng, 1)[0], MODEL)
    b, _ = await gallery.insert_image(image(1, "chat", file="shared.jpg"), unit(rng, 1)[0], MODEL)
    await gallery.set_vector(a, unit(rng, 1, 8)[0], "other/model")
    record, orphan = await gallery.delete_image(a)
    assert (record.id, orphan) == (a, False)
    assert await gallery.embedding_counts() == {MODEL: 1}
    assert not await gallery.has_vector(a, MODEL)
    record, orphan = await gallery.delete_image(b)
    assert (record.collection, orphan) == ("chat", True)
    assert await gallery.list_images() == []
    with pytest.raises(NotFoundError):
        await gallery.delete_image(a)
    no_file, _ = await gallery.insert_image(image(2, file=None), unit(rng, 1)[0], MODEL)
    assert (await gallery.delete_image(no_file))[1] is False


async def test_move_collection(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(8)
    old_only, _ = await gallery.insert_image(image(1, "telegram:1"), unit(rng, 1)[0], MODEL)
    both_old, _ = await gallery.insert_image(image(2, "telegram:1"), unit(rng, 1)[0], MODEL)
    both_new, _ = await gallery.insert_image(image(2, "telegram:2"), unit(rng, 1)[0], MODEL)
    moved, dropped = await gallery.move_collection("telegram:1", "telegram:2")
    assert (moved, dropped) == (1, [both_old])
    assert await gallery.collection_counts() == {"telegram:2": 2}
    assert (await gallery.get_image(old_only)).collection == "telegram:2"
    assert (await gallery.get_image(both_new)).collection == "telegram:2"
    with pytest.raises(NotFoundError):
        await gallery.get_image(both_old)
    assert await gallery.embedding_counts() == {MODEL: 2}
    # asked again, or for a collection that never was: nothing changes, no empty gallery appears
    assert await gallery.move_collection("telegram:1", "telegram:2") == (0, [])
    assert await gallery.move_collection("nothing", "telegram:3") == (0, [])
    assert await gallery.move_collection("telegram:2", "telegram:2") == (0, [])  # onto itself: nothing lost
    assert await gallery.collection_counts() == {"telegram:2": 2}
    # into a new name: the whole collection moves
    assert await gallery.move_collection("telegram:2", "discord:9") == (2, [])
    assert await gallery.collection_counts() == {"discord:9": 2}
    assert [r.id for r in await gallery.text_candidates(["discord:9"], ["label"])] == [old_only, both_new]


async def test_text_candidates_casefold_and_all_words(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(9)
    apples, _ = await gallery.insert_image(image(1, label="Äpfel", description="Rote STRASSE"), unit(rng, 1)[0],
                                           MODEL)
    pears, _ = await gallery.insert_image(image(2, label="Birnen", description="grüne äpfel"), unit(rng, 1)[0],
                                          MODEL)
    await gallery.insert_image(image(3, "chat", label="äpfel"), unit(rng, 1)[0], MODEL)

    def ids(records: list[object]) -> list[int]:
        return sorted(r.id for r in records)  # type: ignore[attr-defined]

    assert ids(await gallery.text_candidates(["global"], ["äpfel"])) == [apples, pears]
    assert ids(await gallery.text_candidates(["global"], ["ÄPFEL"])) == [apples, pears]
    assert ids(await gallery.text_candidates(["global"], ["straße"])) == [apples]  # casefolds to "strasse"
    assert ids(await gallery.text_candidates(["global"], ["strasse"])) == [apples]
    assert ids(await gallery.text_candidates(["global"], ["äpfel", "grün"])) == [pears]
    assert ids(await gallery.text_candidates(["global", "global"], ["pfe"])) == [apples, pears]  # substrings
    assert len(await gallery.text_candidates(["global", "chat"], ["äpfel"])) == 3
    assert await gallery.text_candidates(["global"], []) == []
    assert await gallery.text_candidates([], ["äpfel"]) == []


# -- vector search ------------------------------------------------------------------------------


def exact_order(query: np.ndarray, vectors: np.ndarray, ids: list[int], keep: list[bool]) -> list[int]:
    scores = vectors @ (query / np.linalg.norm(query))
    ranked = sorted((i for i in range(len(ids)) if keep[i]), key=lambda i: -scores[i])
    return [ids[i] for i in ranked]


async def test_nearest_orders_filters_and_scores(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(10)
    vectors = unit(rng, 40)
    families = [" red " if n % 3 == 0 else " blue  green " if n % 3 == 1 else " red  green " for n in range(40)]
    ids = await fill(gallery, vectors, ["global", "chat"], families)
    await gallery.prepare_search(MODEL, DIM)
    query = rng.standard_normal(DIM).astype(np.float32) * 3  # not unit: cosine all the same
    is_global = [n % 2 == 0 for n in range(40)]

    hits = await gallery.nearest(query, model_id=MODEL, collections=["global"], k=5)
    assert hits.ids.dtype == np.int64 and hits.scores.dtype == np.float32
    assert hits.ids.tolist() == exact_order(query, vectors, ids, is_global)[:5]
    expected = vectors[[ids.index(i) for i in hits.ids]] @ (query / np.linalg.norm(query))
    assert np.allclose(hits.scores, expected, atol=2e-3)
    assert np.all(np.diff(hits.scores) <= 0)

    both = await gallery.nearest(query, model_id=MODEL, collections=["global", "chat", "global"], k=7)
    assert both.ids.tolist() == exact_order(query, vectors, ids, [True] * 40)[:7]

    red = await gallery.nearest(query, model_id=MODEL, collections=["global", "chat"], k=40,
                                color_families=["red"])
    assert red.ids.tolist() == exact_order(query, vectors, ids, [" red " in f for f in families])
    red_green = await gallery.nearest(query, model_id=MODEL, collections=["global"], k=3,
                                      color_families=["red", "green"])
    keep = [g and " red " in f and " green " in f for g, f in zip(is_global, families, strict=True)]
    assert red_green.ids.tolist() == exact_order(query, vectors, ids, keep)[:3]
    # "re" is no family: families match whole
    assert len(await gallery.nearest(query, model_id=MODEL, collections=["global"], k=5,
                                     color_families=["re"])) == 0

    only = [ids[0], ids[1], ids[2], ids[4], 999_999]
    picked = await gallery.nearest(query, model_id=MODEL, collections=["global"], k=10, only=only)
    assert picked.ids.tolist() == exact_order(query, vectors, ids, [i in only and is_global[n]
                                                                      for n, i in enumerate(ids)])
    assert len(await gallery.nearest(query, model_id=MODEL, collections=["global"], k=10, only=[])) == 0

    everything = await gallery.nearest(query, model_id=MODEL, collections=["global"], k=1000)
    assert everything.ids.tolist() == exact_order(query, vectors, ids, is_global)  # k above the rows: all
    assert len(await gallery.nearest(query, model_id=MODEL, collections=["global"], k=0)) == 0
    assert len(await gallery.nearest(query, model_id=MODEL, collections=[], k=5)) == 0
    assert len(await gallery.nearest(query, model_id=MODEL, collections=["nowhere"], k=5)) == 0
    assert len(await gallery.nearest(query, model_id="never/used", collections=["global"], k=5)) == 0

    assert await gallery.count_vectors(MODEL, ["global"]) == 20
    assert await gallery.count_vectors(MODEL, ["global", "chat", "chat"]) == 40
    assert await gallery.count_vectors("never/used", ["global"]) == 0
    assert await gallery.count_vectors(MODEL, []) == 0


async def test_search_follows_writes(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(11)
    vectors = unit(rng, 10)
    ids = await fill(gallery, vectors, ["global"])
    await gallery.prepare_search(MODEL, DIM)
    query = vectors[3]
    assert (await gallery.nearest(query, model_id=MODEL, collections=["global"], k=1)).ids.tolist() == [ids[3]]
    await gallery.delete_image(ids[3])
    hits = await gallery.nearest(query, model_id=MODEL, collections=["global"], k=10)
    assert ids[3] not in hits.ids.tolist() and len(hits) == 9
    added, _ = await gallery.insert_image(image(50), query, MODEL)
    assert (await gallery.nearest(query, model_id=MODEL, collections=["global"], k=1)).ids.tolist() == [added]
    await gallery.set_vector(ids[0], query, MODEL)
    top = await gallery.nearest(query, model_id=MODEL, collections=["global"], k=2)
    assert sorted(top.ids.tolist()) == sorted([added, ids[0]])
    await gallery.move_collection("global", "elsewhere")
    assert len(await gallery.nearest(query, model_id=MODEL, collections=["global"], k=5)) == 0
    assert len(await gallery.nearest(query, model_id=MODEL, collections=["elsewhere"], k=20)) == 10


async def test_nearest_many_gives_each_row_what_nearest_gives_it(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(13)
    vectors = unit(rng, 30)
    vectors[11] = vectors[4]  # the same vector twice: a tie, in each backend's order
    ids = await fill(gallery, vectors, ["global", "chat"])
    gone, _ = await gallery.insert_image(image(99, "emptied"), vectors[0], MODEL)
    await gallery.delete_image(gone)  # a collection that had a vector and has none now
    await gallery.prepare_search(MODEL, DIM)
    queries = np.concatenate([vectors[[4, 0, 17]], 3 * unit(rng, 4)])  # stored ones (their own best) and others

    for collections in (["global"], ["global", "chat"], ["chat", "global", "chat"], ["emptied"], ["emptied", "chat"],
                        ["nowhere"], []):
        for k in (1, 2, 5, 15, 30, 100):  # 15 is all of one collection, 100 more than all
            many = await gallery.nearest_many(queries, model_id=MODEL, collections=collections, k=k)
            assert len(many) == len(queries)
            for query, got in zip(queries, many, strict=True):
                one = await gallery.nearest(query, model_id=MODEL, collections=collections, k=k)
                assert got.ids.dtype == np.int64 and got.scores.dtype == np.float32
                assert got.ids.tolist() == one.ids.tolist(), (collections, k)
                np.testing.assert_allclose(got.scores, one.scores, atol=1e-6)
    tied = await gallery.nearest_many(vectors[[4]], model_id=MODEL, collections=["global", "chat"], k=2)
    assert sorted(tied[0].ids.tolist()) == sorted([ids[4], ids[11]])

    assert [len(n) for n in await gallery.nearest_many(queries, model_id=MODEL, collections=["global"], k=0)] == [0] * 7
    assert [len(n) for n in await gallery.nearest_many(queries, model_id="never/used", collections=["global"],
                                                       k=5)] == [0] * 7
    assert await gallery.nearest_many(np.zeros((0, DIM), np.float32), model_id=MODEL, collections=["global"],
                                      k=5) == []
    with pytest.raises(DimensionMismatchError):
        await gallery.nearest_many(unit(rng, 2, DIM + 1), model_id=MODEL, collections=["global"], k=5)
    with pytest.raises(ValueError, match="one query vector per row"):
        await gallery.nearest_many(vectors[0], model_id=MODEL, collections=["global"], k=5)


async def test_prepare_search_refuses_another_dimension(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(12)
    await fill(gallery, unit(rng, 3), ["global"])
    with pytest.raises(DimensionMismatchError, match=rf"{DIM}-dimensional vectors under model.*64-dimensional"
                                                      ".*clipbot reindex"):
        await gallery.prepare_search(MODEL, 64)
    await gallery.prepare_search(MODEL, DIM)
    await gallery.prepare_search("unused/model", 64)  # nothing stored: nothing to disagree with


# -- conversation state -------------------------------------------------------------------------


async def test_state_get_put_and_expiry(gallery: GalleryStorage) -> None:
    assert await gallery.get_state("pages", "a") is None
    await gallery.put_state("pages", "a", "one", None)
    await gallery.put_state("pages", "b", "two", 0.3)
    await gallery.put_state("limits", "a", "other kind", 60)
    assert await gallery.get_state("pages", "a") == "one"
    assert await gallery.get_state("pages", "b") == "two"
    assert await gallery.get_state("limits", "a") == "other kind"
    await gallery.put_state("pages", "a", "replaced", None)
    assert await gallery.get_state("pages", "a") == "replaced"
    await asyncio.sleep(0.5)
    assert await gallery.get_state("pages", "b") is None  # expired
    assert await gallery.update_state("pages", "b", lambda old: (f"after {old}", None)) == "after None"
    await gallery.put_state("pages", "c", "gone", 0)
    assert await gallery.get_state("pages", "c") is None


async def test_purge_state_deletes_expired_values_only(gallery: GalleryStorage) -> None:
    await gallery.put_state("pages", "keep", "v", None)
    await gallery.put_state("pages", "later", "v", 60)
    for n in range(3):
        await gallery.put_state("pages", f"old{n}", "v", 0.05)
    await asyncio.sleep(0.2)
    assert await gallery.purge_state() == 3
    assert await gallery.purge_state() == 0
    assert await gallery.get_state("pages", "keep") == "v"
    assert await gallery.get_state("pages", "later") == "v"


async def test_state_items_are_a_kinds_live_values_with_the_time_they_have_left(gallery: GalleryStorage) -> None:
    await gallery.put_state("file", "telegram:2", "B", None)
    await gallery.put_state("file", "telegram:10", "A", 60)
    await gallery.put_state("file", "telegram:3", "gone", 0)
    await gallery.put_state("chat", "telegram:-100", "{}", None)
    items = await gallery.state_items("file")
    assert [(i.key, i.value) for i in items] == [("telegram:10", "A"), ("telegram:2", "B")]  # byte-wise order
    assert items[0].ttl_s is not None and 50 < items[0].ttl_s <= 60
    assert items[1].ttl_s is None
    assert await gallery.state_items("nothing") == []


async def test_add_state_stores_only_where_no_live_value_is(gallery: GalleryStorage) -> None:
    from core.storage.state import StateItem

    await gallery.put_state("chat", "mine", "the target's", None)
    await gallery.put_state("chat", "stale", "expired", 0)
    items = [StateItem("mine", "the source's", None), StateItem("stale", "fresh", 60), StateItem("new", "n", None)]
    assert await gallery.add_state("chat", items) == 2
    assert await gallery.get_state("chat", "mine") == "the target's"
    assert await gallery.get_state("chat", "stale") == "fresh"
    assert [(i.key, i.value) for i in await gallery.state_items("chat")] == [
        ("mine", "the target's"), ("new", "n"), ("stale", "fresh")]
    [stale] = [i for i in await gallery.state_items("chat") if i.key == "stale"]
    assert stale.ttl_s is not None and 50 < stale.ttl_s <= 60
    assert await gallery.add_state("chat", items) == 0  # again: everything is there
    assert await gallery.add_state("chat", []) == 0


async def test_update_state_is_atomic_across_processes(factory: Factory) -> None:
    """20 concurrent increments through two gallery objects (two processes) give 20."""
    a, b = factory(), factory()
    await a.open()
    await b.open()
    try:
        def increment(old: str | None) -> tuple[str, float | None]:
            return str(int(old or 0) + 1), 60

        results = await asyncio.gather(*(g.update_state("limits", "user", increment) for _ in range(10)
                                         for g in (a, b)))
        assert sorted(int(r) for r in results) == list(range(1, 21))
        assert await a.get_state("limits", "user") == "20"

        def refuse(old: str | None) -> tuple[str, float | None]:
            raise ValueError("no")

        with pytest.raises(ValueError, match="no"):
            await b.update_state("limits", "user", refuse)
        assert await b.get_state("limits", "user") == "20"  # a failed update changes nothing
    finally:
        await a.close()
        await b.close()


# -- repost fingerprints (sightings) --------------------------------------------------------------

MAY_3 = 1_714_737_600.0  # 2024-05-03 12:00 UTC


def sighting(n: int, chat: str = "telegram:-100", *, author: str = "telegram:11", at: float = MAY_3,
             vector: np.ndarray | None = None, model_id: str = MODEL, **kw: object) -> Sighting:
    fields: dict[str, object] = {
        "chat": chat, "message_id": str(n), "author": author, "author_name": f"Ann {n}", "posted_at": at,
        "phash": n * 0x0101_0101_0101_0101, "model_id": model_id, "link": f"https://t.me/c/100/{n}",
        "vector": unit(np.random.default_rng(n), 1)[0] if vector is None else vector,
    }
    fields.update(kw)
    return Sighting(**fields)  # type: ignore[arg-type]


async def test_sightings_come_back_newest_first_bit_for_bit(gallery: GalleryStorage) -> None:
    tricky = np.array([0.1, -0.0, 1e-30, -3.4e38, 3.4e38, 1 / 3, np.float32(np.pi), 1e-45] + [0.5] * 4,
                      dtype=np.float32)
    added = [
        sighting(1, at=MAY_3 - 100.5, phash=0, link=None, author_name=""),
        sighting(2, at=MAY_3, phash=2**64 - 1, vector=tricky, author_name="Zoë \u202eevil"),
        sighting(3, at=MAY_3 + 0.25, phash=2**63),
        sighting(4, at=MAY_3 + 0.25, phash=2**63 - 1),  # same time as 3, added later: comes first
        sighting(5, "discord:9", at=MAY_3 + 1),
        sighting(6, at=MAY_3 + 2, model_id="other/model", vector=np.ones(7, np.float32)),
    ]
    for s in added:
        await gallery.add_sighting(s)

    got = await gallery.sightings("telegram:-100", MODEL, 0.0)
    assert [s.message_id for s in got] == ["4", "3", "2", "1"]
    by_id = {s.message_id: s for s in added}
    for s in got:
        assert s == by_id[s.message_id]  # every field but the vector (floats to the microsecond: exact here)
        assert s.vector.dtype == np.float32 and s.vector.tobytes() == by_id[s.message_id].vector.tobytes()
    assert got[2].phash == 2**64 - 1 and got[1].phash == 2**63 and got[3].phash == 0 and got[3].link is None

    assert [s.message_id for s in await gallery.sightings("telegram:-100", MODEL, MAY_3)] == ["4", "3", "2"]
    assert [s.message_id for s in await gallery.sightings("telegram:-100", MODEL, MAY_3 + 0.5)] == []
    assert [s.message_id for s in await gallery.sightings("telegram:-100", None, -math.inf)] == \
        ["6", "4", "3", "2", "1"]
    assert (await gallery.sightings("telegram:-100", "other/model", 0))[0].vector.tobytes() == \
        np.ones(7, np.float32).tobytes()
    assert [s.message_id for s in await gallery.sightings("discord:9", MODEL, 0)] == ["5"]
    assert await gallery.sightings("nowhere", MODEL, 0) == []

    odd = sighting(7, at=1_714_742_400.123456)  # not a binary fraction: kept to the microsecond
    await gallery.add_sighting(odd)
    [back] = [s for s in await gallery.sightings("telegram:-100", MODEL, 0) if s.message_id == "7"]
    assert back.posted_at == pytest.approx(odd.posted_at, abs=1e-6)
    with pytest.raises(ValueError, match="64 bits"):
        await gallery.add_sighting(sighting(8, phash=2**64))
    with pytest.raises(ValueError, match="64 bits"):
        await gallery.add_sighting(sighting(8, phash=-1))
    assert await gallery.count_sightings() == 7


async def test_forget_purge_and_count_sightings(gallery: GalleryStorage) -> None:
    for n in range(6):
        await gallery.add_sighting(sighting(n, author="telegram:11" if n % 2 else "telegram:22", at=MAY_3 + n))
    for n in range(6, 9):
        await gallery.add_sighting(sighting(n, "telegram:-200", author="telegram:11", at=MAY_3 + n))
    assert await gallery.count_sightings() == 9
    assert await gallery.count_sightings("telegram:-100") == 6
    assert await gallery.count_sightings("nowhere") == 0
    assert await gallery.sighting_counts() == {"telegram:-100": 6, "telegram:-200": 3}

    assert await gallery.forget_sightings("telegram:-100", "telegram:11") == 3
    assert await gallery.forget_sightings("telegram:-100", "telegram:11") == 0
    assert [s.author for s in await gallery.sightings("telegram:-100", MODEL, 0)] == ["telegram:22"] * 3
    assert await gallery.count_sightings("telegram:-200") == 3  # the same author elsewhere: kept

    assert await gallery.purge_sightings(MAY_3 + 4) == 2  # posted at +0 and +2; +4 is not before +4
    assert [s.message_id for s in await gallery.sightings("telegram:-100", None, 0)] == ["4"]
    assert await gallery.purge_sightings(MAY_3 + 7) == 2  # every chat: +4 here, +6 there
    assert await gallery.sighting_counts() == {"telegram:-200": 2}
    assert await gallery.purge_sightings(math.inf) == 2
    assert await gallery.count_sightings() == 0 and await gallery.sighting_counts() == {}


async def test_copy_gallery_copies_sightings_once(gallery: GalleryStorage, tmp_path: Path) -> None:
    from core.storage.migrate import copy_gallery
    from core.storage.sqlite import SqliteGallery

    source = SqliteGallery(tmp_path / "source")
    await source.open()
    try:
        await source.insert_image(image(1), unit(np.random.default_rng(1), 1)[0], MODEL)
        for n in range(4):
            await source.add_sighting(sighting(n, "telegram:-100" if n < 3 else "discord:9", at=MAY_3 + n))
        await gallery.add_sighting(sighting(1, at=MAY_3 + 1))  # the target has one already
        report = await copy_gallery(source, gallery)
        assert report.matches, report
        assert report.sightings_copied == 3
        assert report.sightings == {"discord:9": (1, 1), "telegram:-100": (3, 3)}
        copied = await gallery.sightings("telegram:-100", MODEL, 0)
        mine = await source.sightings("telegram:-100", MODEL, 0)
        assert copied == mine and [s.vector.tobytes() for s in copied] == [s.vector.tobytes() for s in mine]
        again = await copy_gallery(source, gallery)
        assert (again.sightings_copied, again.matches) == (0, True)
    finally:
        await source.close()


async def test_copy_gallery_carries_the_state_kinds_it_is_told_to(gallery: GalleryStorage, tmp_path: Path) -> None:
    from core.storage.migrate import StateCopied, StateKind, copy_gallery
    from core.storage.sqlite import SqliteGallery

    def moved(key: str, ids: Mapping[int, int]) -> str | None:
        platform, _, image_id = key.partition(":")
        return f"{platform}:{ids[int(image_id)]}" if int(image_id) in ids else None

    kinds = [StateKind("chat", "switches"), StateKind("file", "file ids", rekey=moved),
             StateKind("thread", "threads", carry=False)]
    source = SqliteGallery(tmp_path / "source")
    await source.open()
    try:
        rng = np.random.default_rng(3)
        await gallery.insert_image(image(7), unit(rng, 1)[0], MODEL)  # the target's ids differ from the source's
        kept, _ = await source.insert_image(image(1), unit(rng, 1)[0], MODEL)
        await source.put_state("chat", "telegram:-100", '{"watch": true}', None)
        await source.put_state("chat", "telegram:-200", "source", None)
        await gallery.put_state("chat", "telegram:-200", "target", None)  # the target's own stays
        await source.put_state("file", f"telegram:{kept}", "AgAC-kept", None)
        await source.put_state("file", "telegram:99", "AgAC-deleted", None)  # its image is gone
        await source.put_state("thread", "tok", "[]", 60)
        report = await copy_gallery(source, gallery, state=kinds)
        assert report.copied == 1
        assert report.state == {"switches": StateCopied(copied=1, kept=1), "file ids": StateCopied(1, 0, 1)}
        assert report.left_behind == {"threads": 1}
        copy = await gallery.find_by_sha256("global", image(1).sha256)
        assert copy is not None and copy.id != kept
        assert [(i.key, i.value) for i in await gallery.state_items("file")] == [(f"telegram:{copy.id}", "AgAC-kept")]
        assert await gallery.get_state("chat", "telegram:-100") == '{"watch": true}'
        assert await gallery.get_state("chat", "telegram:-200") == "target"
        assert await gallery.state_items("thread") == []
        again = await copy_gallery(source, gallery, state=kinds)
        assert again.state == {"switches": StateCopied(kept=2), "file ids": StateCopied(kept=1, orphaned=1)}
        assert len(await gallery.state_items("chat")) == 2 and len(await gallery.state_items("file")) == 1
    finally:
        await source.close()


async def test_an_older_gallery_upgrades_in_place_keeping_its_images(backend: str, where: str,
                                                                     factory: Factory) -> None:
    """A gallery made before sightings (SQLite version 4, PostgreSQL version 1) opens migrated."""
    vector = unit(np.random.default_rng(20), 1)[0]
    if backend == "sqlite":
        from core.storage.sqlite_schema import MIGRATIONS as SQLITE_MIGRATIONS
        from core.storage.sqlite_schema import SCHEMA_VERSION as LATEST

        Path(where).mkdir(parents=True)
        with sqlite3.connect(Path(where) / "clipbot.db") as db:
            for migration in SQLITE_MIGRATIONS[:4]:
                db.executescript(migration)
            db.execute("PRAGMA user_version = 4")
            db.execute("INSERT INTO collections(name, created_at) VALUES ('global', '2024-05-03T12:00:00+00:00')")
            db.execute("INSERT INTO images(collection, label, sha256, created_at, file) VALUES"
                       " ('global', 'old cat', ?, '2024-05-03T12:00:00+00:00', 'ab/old.jpg')", ("c" * 64,))
            db.execute("INSERT INTO embeddings(image_id, model_id, dim, vector) VALUES (1, ?, ?, ?)",
                       (MODEL, DIM, vector.astype("<f4").tobytes()))
            db.execute("INSERT INTO state(kind, key, value, expires_at) VALUES ('chat', 'telegram:-100', 'on', NULL)")
        assert LATEST >= 5
    else:
        from core.storage.postgres_schema import MIGRATIONS as PG_MIGRATIONS
        from core.storage.postgres_schema import SCHEMA_VERSION as LATEST

        with psycopg.connect(where, autocommit=True) as conn:
            from pgvector.psycopg import register_vector

            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY,"
                         " applied_at timestamptz NOT NULL DEFAULT now())")
            conn.execute(PG_MIGRATIONS[0])
            conn.execute("INSERT INTO schema_version(version) VALUES (1)")
            conn.execute("INSERT INTO collections(name) VALUES ('global')")
            conn.execute("INSERT INTO images(collection, label, sha256, file) VALUES ('global', 'old cat', %s,"
                         " 'ab/old.jpg')", ("c" * 64,))
            conn.execute("INSERT INTO embeddings(image_id, model_id, dim, vector) VALUES (1, %s, %s, %b)",
                         (MODEL, DIM, vector))
            conn.execute("INSERT INTO state(kind, key, value) VALUES ('chat', 'telegram:-100', 'on')")
        assert LATEST >= 2
    g = factory()
    await g.open()
    try:
        assert await g.schema_version() == LATEST
        assert await g.integrity_check() == ["ok"]
        [record] = await g.list_images()
        assert (record.label, record.sha256, record.file) == ("old cat", "c" * 64, "ab/old.jpg")
        assert (await g.vectors_for([record.id], MODEL))[record.id].tobytes() == vector.tobytes()
        assert await g.get_state("chat", "telegram:-100") == "on"
        await g.prepare_search(MODEL, DIM)
        assert (await g.nearest(vector, model_id=MODEL, collections=["global"], k=1)).ids.tolist() == [record.id]
        assert await g.count_sightings() == 0
        await g.add_sighting(sighting(1))
        assert [s.message_id for s in await g.sightings("telegram:-100", MODEL, 0)] == ["1"]
        assert (await g.insert_image(image(2), unit(np.random.default_rng(21), 1)[0], MODEL))[1]
    finally:
        await g.close()
    again = factory()  # reopening changes nothing
    await again.open()
    try:
        assert await again.schema_version() == LATEST and await again.count_sightings() == 1
    finally:
        await again.close()


# -- the text in pictures (OCR) -----------------------------------------------------------------


def read(folded: str, *lines: str, model_id: str = "test/ocr") -> PictureText:
    """A picture's text as the reader gives it: ``lines`` (``folded`` by default), ``folded`` as given."""
    shown = lines if lines else ((folded,) if folded else ())
    return PictureText(lines=tuple((line, 0.5 + n / 8) for n, line in enumerate(shown)), folded=folded,
                       model_id=model_id)


async def test_texts_are_stored_once_and_wait_for_pictures_with_a_file(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(30)
    done = await gallery.insert_images([image(1), image(2, file=None), image(3, "chat"), image(4)], unit(rng, 4),
                                       MODEL)
    first, no_file, chat, last = (held.id for held, _ in done)
    assert [r.id for r in await gallery.awaiting_text()] == [first, chat, last]  # oldest first, files only
    assert [r.id for r in await gallery.awaiting_text("chat")] == [chat]
    assert await gallery.awaiting_text("nowhere") == []

    exit_sign = read("紧急出口emergencyexit", "紧急出口", "EMERGENCY EXIT")
    nothing = read("")  # read, no text: stored, so that it is not read again
    assert await gallery.set_texts([(first, exit_sign), (chat, nothing), (999_999, read("gone"))]) == 2
    assert await gallery.texts_for([first, chat, no_file, last, 999_999]) == {first: exit_sign, chat: nothing}
    back = (await gallery.texts_for([first]))[first]
    assert (back.lines, back.text, back.model_id) == ((("紧急出口", 0.5), ("EMERGENCY EXIT", 0.625)),
                                                      "紧急出口\nEMERGENCY EXIT", "test/ocr")
    assert (await gallery.texts_for([chat]))[chat].lines == ()
    assert [r.id for r in await gallery.awaiting_text()] == [last]
    assert await gallery.awaiting_text("chat") == []

    # read again (another process was first): the first reading stays; a batch stores what is new
    assert await gallery.set_texts([(first, read("other")), (last, read("last")), (last, read("twice"))]) == 1
    assert await gallery.texts_for([first, last]) == {first: exit_sign, last: read("last")}
    assert await gallery.set_texts([]) == 0
    assert await gallery.texts_for([]) == {}
    assert await gallery.awaiting_text() == []
    assert await gallery.integrity_check() == ["ok"]


async def test_text_search_finds_substrings_of_the_folded_text(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(31)
    texts = ["isthisapigeon", "pigeonpie", "紧急出口请勿堵塞", "abcxbcax", 'say"hi\'there', "", "pi", "ABzz"]
    done = await gallery.insert_images([image(n, "chat" if n == 1 else "global") for n in range(len(texts))],
                                       unit(rng, len(texts)), MODEL)
    ids = [held.id for held, _ in done]
    pigeon, pie, exit_sign, scrambled, quoted, empty, short, capitals = ids
    assert await gallery.set_texts(list(zip(ids, map(read, texts), strict=True))) == len(texts)
    both = ["global", "chat"]
    assert await gallery.text_search(both, "pigeon") == [pigeon, pie]  # in order of id
    assert await gallery.text_search(["global"], "pigeon") == [pigeon]  # only the collections asked for
    assert await gallery.text_search(["chat"], "pigeon") == [pie]
    assert await gallery.text_search(["global", "global"], "isthisapigeon") == [pigeon]
    assert await gallery.text_search([], "pigeon") == []
    assert await gallery.text_search(both, "pigeons") == []
    assert await gallery.text_search(both, "pi") == [pigeon, pie, short]  # two characters: no trigram index
    assert await gallery.text_search(both, "紧急出口") == [exit_sign]
    assert await gallery.text_search(both, "出口") == [exit_sign]
    assert await gallery.text_search(both, "请勿堵塞") == [exit_sign]
    assert await gallery.text_search(both, "abca") == []  # its trigrams are all there, not in that order
    assert await gallery.text_search(both, "bcax") == [scrambled]
    assert await gallery.text_search(both, 'y"hi\'t') == [quoted]  # quotes are text, not query syntax
    assert await gallery.text_search(both, '"hi') == [quoted]
    assert await gallery.text_search(both, "'t") == [quoted]
    assert await gallery.text_search(both, 'x" OR "pig') == []
    assert empty not in await gallery.text_search(both, "ie")
    assert await gallery.text_search(both, "紧") == [exit_sign]  # one character: a scan, still right
    # the match is exact, case included (callers fold; a stored text not folded is matched as it is)
    assert await gallery.text_search(both, "ab") == [scrambled]
    assert await gallery.text_search(both, "AB") == [capitals]
    assert await gallery.text_search(both, "Bz") == [capitals]
    assert await gallery.text_search(both, "ABz") == [capitals]
    assert await gallery.text_search(both, "abz") == []


async def test_a_text_goes_with_its_image_and_its_picture(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(32)
    done = await gallery.insert_images([image(1), image(2), image(3, "telegram:1"), image(3, "telegram:2")],
                                       unit(rng, 4), MODEL)
    deleted, replaced, moved_copy, kept = (held.id for held, _ in done)
    await gallery.set_texts([(i, read(f"wetfloor{i}")) for i in (deleted, replaced, moved_copy, kept)])
    everyone = ["global", "telegram:1", "telegram:2"]
    assert await gallery.text_search(everyone, "wetfloor") == [deleted, replaced, moved_copy, kept]

    await gallery.delete_image(deleted)
    assert await gallery.texts_for([deleted]) == {}
    assert await gallery.text_search(everyone, "wetfloor") == [replaced, moved_copy, kept]
    assert await gallery.text_search(everyone, f"floor{deleted}") == []
    assert await gallery.set_texts([(deleted, read("late"))]) == 0  # deleted meanwhile: skipped

    # a new picture, same id: the old one's text is dropped and the new one waits to be read
    await gallery.replace_picture(replaced, image(9, file="edited.jpg"), unit(rng, 1)[0], MODEL)
    assert await gallery.texts_for([replaced]) == {}
    assert [r.id for r in await gallery.awaiting_text()] == [replaced]
    assert await gallery.text_search(everyone, "wetfloor") == [moved_copy, kept]
    assert await gallery.set_texts([(replaced, read("drysign"))]) == 1
    assert await gallery.text_search(everyone, "drysign") == [replaced]

    # a move drops the moving collection's copies of pictures the other holds, their texts too
    assert await gallery.move_collection("telegram:1", "telegram:2") == (0, [moved_copy])
    assert await gallery.text_search(everyone, "wetfloor") == [kept]
    assert await gallery.text_search(everyone, "et") == [kept]
    assert await gallery.integrity_check() == ["ok"]


async def test_copy_gallery_copies_texts_to_the_targets_ids(gallery: GalleryStorage, tmp_path: Path) -> None:
    from core.storage.migrate import copy_gallery
    from core.storage.sqlite import SqliteGallery

    rng = np.random.default_rng(33)
    source = SqliteGallery(tmp_path / "source")
    await source.open()
    try:
        await gallery.insert_image(image(7), unit(rng, 1)[0], MODEL)  # the target's ids differ from the source's
        done = await source.insert_images([image(1), image(2), image(3), image(4)], unit(rng, 4), MODEL)
        one, two, three, _ = (held.id for held, _ in done)
        await source.set_texts([(one, read("紧急出口")), (two, read("")), (three, read("stopsign"))])
        there, _ = await gallery.insert_image(image(3), unit(rng, 1)[0], MODEL)  # held already, read already
        await gallery.set_texts([(there, read("targetsown"))])
        report = await copy_gallery(source, gallery)  # (not report.matches: the target holds one image more)
        assert (report.texts_copied, report.texts) == (2, (3, 3)), report
        copy = {r.sha256: r.id for r in await gallery.list_images()}
        assert await gallery.texts_for([copy[image(n).sha256] for n in (1, 2, 3, 4)]) == {
            copy[image(1).sha256]: read("紧急出口"), copy[image(2).sha256]: read(""), there: read("targetsown")}
        assert await gallery.text_search(["global"], "急出") == [copy[image(1).sha256]]
        assert [r.id for r in await gallery.awaiting_text()] == [copy[image(n).sha256] for n in (7, 4)]
        again = await copy_gallery(source, gallery)  # resumed or repeated: nothing twice
        assert (again.texts_copied, again.texts) == (0, (3, 3))
    finally:
        await source.close()


async def test_a_gallery_of_the_previous_version_gains_texts(backend: str, where: str, factory: Factory) -> None:
    """A gallery made before texts (SQLite version 5, PostgreSQL version 2) opens migrated, data kept."""
    vector = unit(np.random.default_rng(34), 1)[0]
    if backend == "sqlite":
        from core.storage.sqlite_schema import MIGRATIONS as SQLITE_MIGRATIONS

        Path(where).mkdir(parents=True)
        with sqlite3.connect(Path(where) / "clipbot.db") as db:
            for migration in SQLITE_MIGRATIONS[:5]:
                db.executescript(migration)
            db.execute("PRAGMA user_version = 5")
            db.execute("INSERT INTO collections(name, created_at) VALUES ('global', '2024-05-03T12:00:00+00:00')")
            db.execute("INSERT INTO images(collection, label, sha256, created_at, file) VALUES"
                       " ('global', 'old sign', ?, '2024-05-03T12:00:00+00:00', 'ab/old.jpg')", ("d" * 64,))
            db.execute("INSERT INTO embeddings(image_id, model_id, dim, vector) VALUES (1, ?, ?, ?)",
                       (MODEL, DIM, vector.astype("<f4").tobytes()))
        previous = 5
    else:
        from core.storage.postgres_schema import MIGRATIONS as PG_MIGRATIONS

        with psycopg.connect(where, autocommit=True) as conn:
            from pgvector.psycopg import register_vector

            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY,"
                         " applied_at timestamptz NOT NULL DEFAULT now())")
            for version, migration in enumerate(PG_MIGRATIONS[:2], start=1):
                conn.execute(migration)
                conn.execute("INSERT INTO schema_version(version) VALUES (%s)", (version,))
            conn.execute("INSERT INTO collections(name) VALUES ('global')")
            conn.execute("INSERT INTO images(collection, label, sha256, file) VALUES ('global', 'old sign', %s,"
                         " 'ab/old.jpg')", ("d" * 64,))
            conn.execute("INSERT INTO embeddings(image_id, model_id, dim, vector) VALUES (1, %s, %s, %b)",
                         (MODEL, DIM, vector))
        previous = 2
    g = factory()
    await g.open()
    try:
        # Every later step runs too (PostgreSQL's 4 keeps sightings' vectors in their rows).
        assert await g.schema_version() == (SQLITE_SCHEMA if backend == "sqlite" else PG_SCHEMA) > previous
        assert await g.integrity_check() == ["ok"]
        [record] = await g.list_images()
        assert (record.label, record.file) == ("old sign", "ab/old.jpg")
        assert (await g.vectors_for([record.id], MODEL))[record.id].tobytes() == vector.tobytes()
        assert await g.awaiting_text() == [record]
        assert await g.set_texts([(record.id, read("nopark"))]) == 1
        assert await g.text_search(["global"], "nopark") == [record.id]
    finally:
        await g.close()


async def test_image_ids_lists_the_collections_ids_in_order(gallery: GalleryStorage) -> None:
    rng = np.random.default_rng(7)
    first = await gallery.insert_images([image(n, "g") for n in range(3)], unit(rng, 3), MODEL)
    other = await gallery.insert_images([image(9, "h")], unit(rng, 1), MODEL)
    ids = [record.id for record, _ in first]
    assert await gallery.image_ids(["g"]) == ids
    assert await gallery.image_ids(["g", "h", "g"]) == sorted([*ids, other[0][0].id])
    assert await gallery.image_ids([]) == [] and await gallery.image_ids(["nobody"]) == []


# -- repost candidates: matching_sightings agrees with RepostWatcher.match --------------------------


def _watcher(threshold: float, hash_distance: int) -> object:
    from types import SimpleNamespace

    from core.chat.reposts import RepostWatcher

    engine = SimpleNamespace(sighting_retention_s=math.inf, state=None, encoder_busy=False)
    return RepostWatcher(engine, threshold=threshold, hash_distance=hash_distance)


def _near(rng: np.random.Generator, base: np.ndarray, noise: float) -> np.ndarray:
    return (base + rng.normal(0, noise, base.shape)).astype(np.float32)


def _flip(rng: np.random.Generator, phash: int, bits: int) -> int:
    for bit in rng.choice(64, size=bits, replace=False):
        phash ^= 1 << int(bit)
    return phash


@pytest.mark.parametrize("small_chat", [10**9, 0], ids=["rows-read", "in-memory"])
async def test_matching_sightings_gives_the_matches_of_match(gallery: GalleryStorage, small_chat: int,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from core.chat.reposts import RepostWatcher
    from core.storage import sqlite_sightings

    monkeypatch.setattr(sqlite_sightings, "SMALL_CHAT", small_chat)  # SQLite: both of its paths
    rng = np.random.default_rng(7)
    chat, since = "telegram:-100", MAY_3 - 1000
    bases = unit(rng, 3)
    hashes = [int(h) for h in rng.integers(0, 2**63, size=3, dtype=np.int64) * 2 + 1]
    added: list[Sighting] = []
    for n in range(300):
        kind = n % 6  # 0: vector-near, 1: hash-near, 2: both, 3-5: unrelated
        b = int(rng.integers(3))
        vector = _near(rng, bases[b], 0.01) if kind in (0, 2) else unit(rng, 1)[0]
        phash = _flip(rng, hashes[b], int(rng.integers(0, 4))) if kind in (1, 2) else \
            int(rng.integers(0, 2**63, dtype=np.int64)) * 2
        added.append(sighting(n, at=MAY_3 + float(rng.integers(-1200, 1000)), vector=vector, phash=phash))
    # Matches everything, but elsewhere: another chat, another model, another size, expired.
    added += [sighting(1000, "telegram:-200", vector=bases[0], phash=hashes[0]),
              sighting(1001, vector=bases[0], phash=hashes[0], model_id="other/model"),
              sighting(1002, vector=np.ones(DIM + 1, np.float32), phash=hashes[0]),  # hash-only: another size
              sighting(1003, at=since - 1, vector=bases[0], phash=hashes[0])]
    for s in added[:250]:
        await gallery.add_sighting(s)
    seen: set[bool | None] = set()

    async def agree(phashes: list[int], vectors: np.ndarray, threshold: float, hash_distance: int) -> None:
        watcher = _watcher(threshold, hash_distance)
        assert isinstance(watcher, RepostWatcher)
        window = await gallery.sightings(chat, MODEL, since)
        got = await gallery.matching_sightings(chat, MODEL, since, phashes=phashes, vectors=vectors,
                                               hash_distance=hash_distance, threshold=threshold)
        mine, theirs = watcher.match(got, phashes, vectors), watcher.match(window, phashes, vectors)
        assert (mine is None) == (theirs is None)
        seen.add(None if theirs is None else theirs.by_hash)
        if mine is not None and theirs is not None:  # the cosine summed over other matrices: last bits
            assert (mine.earlier, mine.distance, mine.by_hash) == (theirs.earlier, theirs.distance, theirs.by_hash)
            assert mine.similarity == pytest.approx(theirs.similarity, abs=1e-6)
        keys = [(s.message_id, s.posted_at) for s in window]
        picked = {(s.message_id, s.posted_at) for s in got}
        assert [(s.message_id, s.posted_at) for s in got] == [k for k in keys if k in picked]  # newest first
        exact = {s.message_id for s in window if watcher.match([s], phashes, vectors) is not None}
        assert exact <= {s.message_id for s in got}  # every match is a candidate
        assert all(s.vector.tobytes() == added[int(s.message_id)].vector.tobytes() for s in got
                   if int(s.message_id) < 1000)

    for threshold in (0.98, 0.9):
        for b in range(3):
            await agree([hashes[b]], bases[b], threshold, 4)  # either test
            await agree([hashes[b]], bases[b], 1.01, 4)  # the hash only
            await agree([hashes[b]], bases[b], threshold, -1)  # the vectors only
            await agree([hashes[b], hashes[(b + 1) % 3]], bases[[b, (b + 1) % 3]], threshold, 4)  # frames
        await agree([0], unit(rng, 1)[0], threshold, 4)  # nothing near
    for s in added[250:]:  # the rows that matched elsewhere, and more: memory keeps in step
        await gallery.add_sighting(s)
    await agree([hashes[0]], bases[0], 0.98, 4)
    assert {True, False} <= seen  # matches by the hash and by the vectors alone were among them
    assert await gallery.forget_sightings(chat, "telegram:11") == 303
    assert await gallery.matching_sightings(chat, MODEL, since, phashes=[hashes[0]], vectors=bases[:1],
                                            hash_distance=64, threshold=-1.0) == []


async def test_matching_sightings_finds_a_message_delivered_twice_and_the_earliest(gallery: GalleryStorage,
                                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                                   ) -> None:
    from core.storage import sqlite_sightings

    monkeypatch.setattr(sqlite_sightings, "SMALL_CHAT", 0)
    v = unit(np.random.default_rng(3), 1)[0]
    for n, at in ((1, MAY_3), (2, MAY_3 + 5), (3, MAY_3 + 9)):
        await gallery.add_sighting(sighting(n, at=at, vector=v, phash=77))
    await gallery.add_sighting(sighting(4, at=MAY_3 + 9, vector=-v, phash=2**64 - 77))
    never = {"hash_distance": -1, "threshold": 2.0}  # neither test can match: only the message's own rows
    got = await gallery.matching_sightings("telegram:-100", MODEL, 0, phashes=[2**64 - 77], vectors=v,
                                           message_id="4", **never)  # type: ignore[arg-type]
    assert [s.message_id for s in got] == ["4"]
    assert await gallery.matching_sightings("telegram:-100", MODEL, 0, phashes=[5], vectors=v, message_id="4",
                                            **never) == []  # type: ignore[arg-type]
    got = await gallery.matching_sightings("telegram:-100", MODEL, 0, phashes=[77], vectors=v, hash_distance=0,
                                           threshold=0.99)
    assert [s.message_id for s in got] == ["3", "2", "1"]  # newest first: the last is the earliest
    assert await gallery.purge_sightings(MAY_3 + 1) == 1
    got = await gallery.matching_sightings("telegram:-100", MODEL, 0, phashes=[77], vectors=v, hash_distance=0,
                                           threshold=0.99)
    assert [s.message_id for s in got] == ["3", "2"]
