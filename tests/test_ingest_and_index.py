"""Bulk ingest (decode overlapped with encode, duplicates, skips) and the in-memory vector index."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bot.composition import build_engine
from bot.settings import Settings
from core.errors import DimensionMismatchError
from core.gallery.ingest import IngestItem, ingest
from core.gallery.sources import collect_items
from core.models.clip import ClipEncoder
from core.storage.vector_index import VectorIndex, top_k_order
from tests.conftest import labelled_folder
from tests.fakes import RecordingEncoder


async def test_decoding_overlaps_encoding(settings: Settings, encoder: ClipEncoder, photos: dict[str, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import core.gallery.batch_decode as engine_module

    decode_starts: list[float] = []
    real_decode = engine_module.decode_image

    def timed_decode(source: object, **kw: object) -> object:
        decode_starts.append(time.monotonic())
        return real_decode(source, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_module, "decode_image", timed_decode)
    recording = RecordingEncoder(encoder, delay=0.3)
    items = [IngestItem(p, label=n) for n, p in photos.items()] * 2  # the second round: same pictures
    async with build_engine(settings, recording) as engine:  # type: ignore[arg-type]
        summary = await ingest(engine, items, collection="global", batch_size=4)
    assert (summary.added, summary.changed, len(summary.skipped)) == (10, 0, 10)
    assert [n for _, _, n in recording.spans] == [4, 4, 2]
    _, first_end, _ = recording.spans[0]
    # While the first batch was encoding, the next ones were already being decoded, but no more
    # than two batches ahead: memory stays bounded however many files there are.
    assert 8 <= sum(t < first_end for t in decode_starts) <= 12


async def test_ingest_matches_one_by_one(settings: Settings, encoder: ClipEncoder, photos: dict[str, Path],
                                         tmp_path: Path) -> None:
    items = [IngestItem(p, label=n) for n, p in photos.items()]
    async with build_engine(settings, encoder) as engine:
        await ingest(engine, items, collection="bulk", batch_size=3)
        for it in items:
            await engine.add_image(it.path, collection="single", label=it.label)
        bulk = await engine.search_image(photos["flower"], collections=["bulk"], k=10)
        single = await engine.search_image(photos["flower"], collections=["single"], k=10)
    assert [r.label for r in bulk] == [r.label for r in single]
    np.testing.assert_allclose([r.score for r in bulk], [r.score for r in single], atol=1e-5)


async def test_duplicates_and_bad_files_in_one_run(settings: Settings, encoder: ClipEncoder,
                                                   photos: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy-of-rocket.jpg"
    copy.write_bytes(photos["rocket"].read_bytes())
    broken = tmp_path / "broken.png"
    broken.write_bytes(photos["coffee"].read_bytes()[:300])
    items = [IngestItem(photos["rocket"]), IngestItem(copy), IngestItem(broken), IngestItem(photos["coffee"])]
    async with build_engine(settings, encoder) as engine:
        summary = await ingest(engine, items, collection="global", batch_size=2)
        assert len(await engine.list_images()) == 2
    assert (summary.added, summary.changed) == (2, 0)
    reasons = dict(summary.skipped)
    assert reasons[str(copy)].startswith("same picture as") and "damaged" in reasons[str(broken)]


def test_collect_items_labels(tmp_path: Path, photos: dict[str, Path]) -> None:
    folder = labelled_folder(tmp_path / "lib", {"cat": photos["chelsea"], "rocket": photos["rocket"]})
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.jpg").write_bytes(b"ignored")
    (folder / "cat" / "notes.md").write_text("x")
    found = collect_items([folder], label="fallback", labels_from_folders=True)
    assert sorted(i.label or "" for i in found.items) == ["cat", "rocket"]
    assert found.skipped == [(str(folder / "cat" / "notes.md"), "not an image file")]
    items = collect_items([folder], label="fallback", description="d").items
    assert {i.label for i in items} == {"fallback"} and {i.description for i in items} == {"d"}


@pytest.mark.parametrize("tensors", [False, True], ids=["numpy", "torch"])  # torch: the GPU's code path, on the CPU
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_vector_index_matches_brute_force_through_changes(precision: str, tensors: bool) -> None:
    rng = np.random.default_rng(7)
    index = VectorIndex(32, precision, tensors=tensors)
    reference: dict[int, tuple[str, np.ndarray]] = {}
    next_id = 1
    for step in range(300):
        if step % 7 == 3 and reference:
            victim = int(rng.choice(list(reference)))
            assert index.remove(victim)
            del reference[victim]
        else:
            coll = ("a", "b", "c")[step % 3]
            vec = rng.standard_normal(32).astype(np.float32) * rng.uniform(0.5, 3)
            index.add(coll, [next_id], vec[None, :])
            reference[next_id] = (coll, vec / np.linalg.norm(vec))
            next_id += 1
    query = rng.standard_normal(32).astype(np.float32)
    q = query / np.linalg.norm(query)
    for colls in (["a"], ["a", "c"], ["a", "b", "c"]):
        expected = sorted(((float(v @ q), i) for i, (c, v) in reference.items() if c in colls), reverse=True)[:10]
        got = index.search(query, colls, 10)
        if precision == "fp32":  # exact
            assert [i for i, _ in got] == [i for _, i in expected]
            np.testing.assert_allclose([s for _, s in got], [s for s, _ in expected], atol=1e-5)
        else:  # half-precision storage: scores within 0.002, and only near-ties may swap places
            exact = {i: float(reference[i][1] @ q) for i in reference}
            for image_id, score in got:
                assert abs(score - exact[image_id]) < 2e-3
                assert exact[image_id] >= expected[-1][0] - 4e-3
    assert len(index) == len(reference)


def test_vector_index_replace_move_and_dimension() -> None:
    index = VectorIndex(3, "fp32")
    index.add("a", [1], np.array([[1, 0, 0]], np.float32))
    index.add("b", [1], np.array([[0, 1, 0]], np.float32))  # moved to another collection
    assert index.count("a") == 0 and index.count("b") == 1
    assert index.search(np.array([0, 1, 0], np.float32), ["b"], 5) == [(1, pytest.approx(1.0))]
    with pytest.raises(DimensionMismatchError):
        index.add("a", [2], np.ones((1, 4), np.float32))
    assert index.search(np.array([1, 0, 0], np.float32), ["missing"], 3) == []


def test_top_k_order() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.9, -1.0], np.float32)
    assert top_k_order(scores, 2).tolist() == [1, 3]
    assert top_k_order(scores, 10).tolist() == [1, 3, 2, 0, 4]
    assert top_k_order(scores, 0).tolist() == []
    ties = np.array([0.5] * 40 + [0.9] + [0.5] * 40, np.float32)  # ties across the k-th place: earliest rows
    assert top_k_order(ties, 4).tolist() == [40, 0, 1, 2]


def test_index_reads_while_writing() -> None:
    index = VectorIndex(8)
    rng = np.random.default_rng(0)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(2000):
                index.add("g", [i], rng.standard_normal((1, 8)).astype(np.float32))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    while t.is_alive():
        ids, scores = index.scores(np.ones(8, np.float32), ["g"])
        assert len(ids) == len(scores)
    t.join()
    assert not errors and index.count("g") == 2000


def test_fp16_storage_halves_memory_and_bulk_loads_are_exact_size() -> None:
    vectors = np.random.default_rng(3).standard_normal((1000, 64)).astype(np.float32)
    ids = np.arange(1000)
    half, full = VectorIndex(64, "fp16"), VectorIndex(64, "fp32")
    half.add("g", ids, vectors)
    full.add("g", ids, vectors)
    assert half.nbytes() == 1000 * (64 * 2 + 8) and full.nbytes() == 1000 * (64 * 4 + 8)
    with pytest.raises(ValueError, match="precision"):
        VectorIndex(64, "int4")


async def test_an_indexed_animation_keeps_its_own_file(settings: Settings, encoder: ClipEncoder,
                                                       photos: dict[str, Path], tmp_path: Path) -> None:
    """`clipbot index` of an animated GIF stores the GIF itself, searchable as its representative frame."""
    import hashlib
    import io

    from PIL import Image

    from core.media.video import representative

    frames = [Image.open(photos[n]).convert("RGB").resize((120, 80)) for n in ("rocket", "chelsea", "coffee")]
    buf = io.BytesIO()  # the cat is shown most of the time: it is the representative frame
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], loop=0, duration=[200, 1600, 200])
    folder = tmp_path / "animations"
    folder.mkdir()
    gif = folder / "cat.gif"
    gif.write_bytes(buf.getvalue())
    (folder / "same-cat.gif").write_bytes(buf.getvalue())
    async with build_engine(settings, encoder) as engine:
        summary = await ingest(engine, collect_items([folder]).items, collection="global")
        assert (summary.added, [why for _, why in summary.skipped]) == (1, [f"same picture as {gif}"])
        [record] = await engine.list_images()
        path = engine.path_of(record)
        assert path is not None and path.endswith(".gif") and Path(path).read_bytes() == gif.read_bytes()
        assert record.sha256 == hashlib.sha256(gif.read_bytes()).hexdigest()
        assert (record.width, record.height) == (120, 80)

        media = await engine.decode_media(gif)
        seen = await engine.frame_vectors(media)
        kept = (await engine.vectors_for([record.id]))[record.id]
        np.testing.assert_allclose(kept, seen[representative(seen)], atol=2e-3)
        [found, *_] = await engine.search_image(photos["chelsea"], k=3)
        assert found.id == record.id and (found.path or "").endswith(".gif")

        again = await ingest(engine, collect_items([folder]).items, collection="global")
        assert (again.added, again.changed, again.unchanged) == (0, 0, 1)
        assert len(await engine.list_images()) == 1
