"""The engine over a real SQLite database in a temp dir: add, dedup, search, find, remove."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from bot.composition import build_engine
from bot.settings import Settings
from core.errors import CorruptImageError, ImageTooLargeError, NotAnImageError, NotFoundError, StoreError
from core.gallery.engine import Engine
from core.media.images import decode_image
from core.models.clip import ClipEncoder
from core.storage.sqlite import SCHEMA_VERSION, SqliteGallery
from tests.conftest import recompressed


def db_rows(engine: Engine, table: str) -> int:
    with sqlite3.connect(Path(engine.picture_file("")).parent / "clipbot.db") as con:
        return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def media_files(engine: Engine) -> list[Path]:
    root = Path(engine.picture_file(""))
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_add_stores_row_vector_and_file(engine: Engine, photos: dict[str, Path]) -> None:
    result = await engine.add_image(photos["rocket"], label="rocket", description="launch pad", added_by="op")
    rec = result.record
    assert result.status == "added"
    assert (rec.label, rec.description, rec.width, rec.height, rec.added_by) == ("rocket", "launch pad", 640, 427, "op")
    stored = Path(engine.picture_file(rec.file or ""))
    assert stored.read_bytes() == photos["rocket"].read_bytes()
    assert stored.name == f"{rec.sha256}.jpg"
    assert db_rows(engine, "embeddings") == 1
    assert rec.source_path == str(photos["rocket"].resolve())


async def test_same_bytes_update_instead_of_duplicating(engine: Engine, photos: dict[str, Path]) -> None:
    first = await engine.add_image(photos["coffee"], label="coffee")
    again = await engine.add_image(photos["coffee"].read_bytes(), label="espresso", description="a cup")
    assert again.status == "updated" and again.record.id == first.record.id
    assert (again.record.label, again.record.description) == ("espresso", "a cup")
    assert db_rows(engine, "images") == 1 and db_rows(engine, "embeddings") == 1
    assert len(media_files(engine)) == 1
    # Same bytes in another collection is a separate entry sharing one file.
    other = await engine.add_image(photos["coffee"], collection="telegram:-100123", label="coffee")
    assert other.status == "added" and other.record.id != first.record.id
    assert len(media_files(engine)) == 1


async def test_label_kept_when_readding_without_one(engine: Engine, photos: dict[str, Path]) -> None:
    await engine.add_image(photos["coffee"], label="coffee", description="cup")
    again = await engine.add_image(photos["coffee"])
    assert (again.record.label, again.record.description) == ("coffee", "cup")


@pytest.mark.parametrize(
    ("payload", "error"),
    [(b"not an image", NotAnImageError), (b"\xff\xd8\xff\xe0garbage" * 3, CorruptImageError)],
)
async def test_bad_input_stores_nothing(engine: Engine, payload: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        await engine.add_image(payload, label="x")
    assert db_rows(engine, "images") == 0 and db_rows(engine, "embeddings") == 0
    assert media_files(engine) == []


async def test_oversize_stores_nothing(settings: Settings, encoder: ClipEncoder, photos: dict[str, Path]) -> None:
    async with build_engine(settings.model_copy(update={"max_image_pixels": 1000}), encoder) as eng:
        with pytest.raises(ImageTooLargeError):
            await eng.add_image(photos["astronaut"])
        assert db_rows(eng, "images") == 0 and media_files(eng) == []


async def test_truncated_file_leaves_existing_gallery_intact(engine: Engine, photos: dict[str, Path]) -> None:
    await engine.add_image(photos["chelsea"], label="cat")
    data = photos["rocket"].read_bytes()
    with pytest.raises(CorruptImageError):
        await engine.add_image(data[:5000], label="rocket")
    assert [r.label for r in await engine.list_images()] == ["cat"]
    assert len(media_files(engine)) == 1


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
async def test_search_equals_brute_force(settings: Settings, encoder: ClipEncoder, photos: dict[str, Path],
                                         precision: str) -> None:
    async with build_engine(settings.model_copy(update={"index_precision": precision}), encoder) as engine:
        await _search_equals_brute_force(engine, encoder, photos, exact=precision == "fp32")


async def _search_equals_brute_force(engine: Engine, encoder: ClipEncoder, photos: dict[str, Path], *,
                                     exact: bool) -> None:
    for name, path in photos.items():
        await engine.add_image(path, label=name)
    query = recompressed(photos["china"])
    results = await engine.search_image(query, k=len(photos))
    records = await engine.list_images()
    # The model sees a JPEG decoded down to its own input side (Engine.prepare), however it came.
    side = await engine.index_side()
    matrix = encoder.encode_images([decode_image(engine.path_of(r) or "", min_side=side).image for r in records])
    q = encoder.encode_images([decode_image(query, min_side=side).image])[0]
    brute = sorted(((float(v @ q), r.id) for v, r in zip(matrix, records, strict=True)), reverse=True)
    np.testing.assert_allclose([r.score for r in results], [s for s, _ in brute], atol=1e-5 if exact else 2e-3)
    if exact:
        assert [r.id for r in results] == [i for _, i in brute]
    else:  # half precision: the same ranking up to near-ties
        exact_of = {i: s for s, i in brute}
        assert all(exact_of[a.id] >= exact_of[b.id] - 4e-3 for a, b in itertools.pairwise(results))
    assert results[0].label == "china"  # a resized, re-compressed copy finds its original


async def test_top_k_and_empty_gallery(engine: Engine, photos: dict[str, Path]) -> None:
    assert await engine.search_image(photos["rocket"]) == []
    for name in ("rocket", "coffee", "chelsea"):
        await engine.add_image(photos[name], label=name)
    results = await engine.search_image(photos["rocket"], k=2)
    assert len(results) == 2 and results[0].label == "rocket" and results[0].score == pytest.approx(1.0, abs=1e-5)
    assert results[0].score >= results[1].score
    assert set(results[0].to_dict()) == {"id", "label", "description", "path", "source_path", "score"}


async def test_collections_are_isolated_and_combinable(engine: Engine, photos: dict[str, Path]) -> None:
    await engine.add_image(photos["rocket"], label="global rocket")
    await engine.add_image(photos["chelsea"], collection="telegram:1", label="chat one cat")
    await engine.add_image(photos["coffee"], collection="telegram:2", label="chat two coffee")
    seen = await engine.search_image(photos["coffee"], collections=["telegram:1", "global"], k=10)
    assert {r.label for r in seen} == {"global rocket", "chat one cat"}
    found = await engine.find_text("coffee", collections=["telegram:1", "global"], k=10)
    assert "chat two coffee" not in {r.label for r in found}


async def test_hybrid_text_ranking(engine: Engine, encoder: ClipEncoder, photos: dict[str, Path]) -> None:
    await engine.add_image(photos["chelsea"], label="cat", description="ginger cat on a rug")
    await engine.add_image(photos["astronaut"], label="astronaut", description="woman in a space suit")
    await engine.add_image(photos["coffee"], label="Cats' coffee", description="mug")
    for name in ("rocket", "motorcycle", "flower"):
        await engine.add_image(photos[name], label=name)
    results = await engine.find_text("a photo of CATS", k=6)
    # Label/description word matches first (case-insensitive, plural folded) ...
    assert {r.label for r in results[:2]} == {"cat", "Cats' coffee"} and all(r.text_match for r in results[:2])
    assert not any(r.text_match for r in results[2:])
    # ... each tier ordered by CLIP text-to-image score.
    for tier in (results[:2], results[2:]):
        assert [r.score for r in tier] == sorted((r.score for r in tier), reverse=True)
    q = encoder.encode_texts(["a photo of CATS"])[0]
    vec = encoder.encode_images([decode_image(photos["chelsea"]).image])[0]
    cat = next(r for r in results if r.label == "cat")
    assert cat.score == pytest.approx(float(vec @ q), abs=2e-3)  # fp16 index


async def test_word_match_is_whole_word(engine: Engine, photos: dict[str, Path]) -> None:
    await engine.add_image(photos["china"], label="catalog page")
    await engine.add_image(photos["chelsea"], label="cat")
    results = await engine.find_text("cat", k=2)
    assert [r.text_match for r in results] == [True, False] and results[0].label == "cat"


async def test_remove_keeps_index_in_step(engine: Engine, photos: dict[str, Path]) -> None:
    a = await engine.add_image(photos["rocket"], label="rocket")
    b = await engine.add_image(photos["rocket"], collection="other", label="rocket too")
    await engine.remove(a.record.id)
    assert await engine.search_image(photos["rocket"]) == []
    assert len(media_files(engine)) == 1  # still used by the other collection's entry
    await engine.remove(b.record.id)
    assert media_files(engine) == [] and db_rows(engine, "embeddings") == 0
    with pytest.raises(NotFoundError, match=f"#{a.record.id}"):
        await engine.remove(a.record.id)


async def test_index_reloads_from_database(settings: Settings, encoder: ClipEncoder, photos: dict[str, Path]) -> None:
    async with build_engine(settings, encoder) as eng:
        for name in ("rocket", "coffee"):
            await eng.add_image(photos[name], label=name)
        before = await eng.search_image(photos["coffee"], k=2)
    async with build_engine(settings, encoder) as eng:
        after = await eng.search_image(photos["coffee"], k=2)
    assert [(r.id, r.score) for r in after] == [(r.id, r.score) for r in before]


async def test_schema_version_wal_and_newer_database_refused(tmp_path: Path) -> None:
    async with SqliteGallery(tmp_path) as store:
        assert await store.schema_version() == SCHEMA_VERSION
        async with store.db.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
    with sqlite3.connect(tmp_path / "clipbot.db") as con:
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="upgrade clipbot"):
        await SqliteGallery(tmp_path).open()


async def test_reopening_keeps_schema(tmp_path: Path) -> None:
    for _ in range(2):
        async with SqliteGallery(tmp_path) as store:
            assert await store.schema_version() == SCHEMA_VERSION
