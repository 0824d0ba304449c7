"""Per-gallery calibration of "weak" and "no match" (core.search.calibration), on synthetic galleries
where what is related is known: five orthogonal cluster directions, ten images around each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import core.search.calibration as calibration
from core.errors import StorageUnavailableError
from core.records import NewImage
from core.search.calibration import CalibrationConfig, Calibrator, Thresholds, measure, thresholds_from
from core.storage.base import GalleryStorage
from core.storage.sqlite import SqliteGallery
from tests.pg import pg_server_url_fixture, pg_url_fixture  # noqa: F401

MODEL = "test/clip"
DIM = 32
WORDS = ["cat", "dog", "car", "tree", "boat"]  # cluster k points along axis k
UNRELATED = 31  # an axis no image has any part of
CONFIG = CalibrationConfig()


def axis(n: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[n] = 1.0
    return v


def clusters(per_cluster: int = 10, seed: int = 7) -> list[tuple[int, np.ndarray]]:
    """(cluster, unit vector): noise (axes 5..29) from little to much, so an image's cosine to its
    cluster runs from 0.995 down to 0.64 and the gallery's scores spread."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(len(WORDS)):
        for j in range(per_cluster):
            noise = np.zeros(DIM)
            noise[5:30] = rng.standard_normal(25)
            v = axis(k) + (0.1 + 1.1 * j / max(1, per_cluster - 1)) * noise / np.linalg.norm(noise)
            out.append((k, (v / np.linalg.norm(v)).astype(np.float32)))
    return out


class FakeRunner:
    """encode_texts: the first cluster word in a text gives that cluster's axis, else the unrelated axis."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = asyncio.Event()  # set by the first call
        self.gate: asyncio.Event | None = None  # when given, calls wait for it
        self.fail_with: Exception | None = None

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        rows = []
        for text in texts:
            found = [WORDS.index(w) for w in text.split() if w in WORDS]
            rows.append(axis(found[0] if found else UNRELATED))
        return np.stack(rows)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def add(gallery: GalleryStorage, n: int, vector: np.ndarray, label: str, collection: str = "global") -> int:
    image = NewImage(collection=collection, label=label, description="", sha256=f"{n:064x}", width=1, height=1,
                     file=None)
    image_id, _ = await gallery.insert_image(image, vector, MODEL)
    return image_id


async def make_gallery(root: Path | GalleryStorage, vectors: list[tuple[int, np.ndarray]],
                       labelled: int | None = None) -> GalleryStorage:
    gallery = SqliteGallery(root) if isinstance(root, Path) else root
    await gallery.open()
    for n, (k, v) in enumerate(vectors):
        await add(gallery, n, v, WORDS[k] if labelled is None or n < labelled else "")
    await gallery.prepare_search(MODEL, DIM)  # the engine's _ready() does this before any search
    return gallery


@pytest.fixture
async def gallery(tmp_path: Path) -> AsyncIterator[GalleryStorage]:
    g = await make_gallery(tmp_path / "gallery", clusters())
    yield g
    await g.close()


def calibrator(gallery: GalleryStorage, runner: FakeRunner | None = None, clock: Clock | None = None,
               config: CalibrationConfig = CONFIG) -> Calibrator:
    return Calibrator(gallery, runner or FakeRunner(), model_id=MODEL, config=config, fallback_image=0.75,
                      fallback_text=0.20, clock=clock or Clock())


async def best(gallery: GalleryStorage, query: np.ndarray) -> float:
    hits = await gallery.nearest((query / np.linalg.norm(query)).astype(np.float32), model_id=MODEL,
                                 collections=["global"], k=1)
    return float(hits.scores[0])


# -- verdicts on a gallery where related and unrelated are known ---------------------------------


async def test_photo_verdicts_follow_the_clusters(gallery: GalleryStorage) -> None:
    t = await calibrator(gallery).thresholds(["global"])
    assert t.calibrated_image and t.calibrated_text and t.images == 50 and t.texts == 50
    # The gallery's own best-neighbour cosines run from about 0.63 to 0.98.
    assert 0.6 < t.image_none < t.image_weak < 0.8
    assert t.verdict(await best(gallery, axis(2)), kind="image") == "good"  # a car, like the cars here
    assert t.verdict(await best(gallery, axis(UNRELATED)), kind="image") == "none"  # like nothing here
    half = await best(gallery, axis(0) + axis(1))  # half cat, half dog: 0.70
    assert t.verdict(half, kind="image") == "weak"


async def test_text_verdicts_follow_the_clusters(gallery: GalleryStorage) -> None:
    runner = FakeRunner()
    t = await calibrator(gallery, runner).thresholds(["global"])
    assert 0.6 < t.text_none < t.text_weak < 0.8
    [cat, zebra] = await runner.encode_texts(["a cat", "zebra"])
    assert t.verdict(await best(gallery, cat), kind="text") == "good"
    assert t.verdict(await best(gallery, zebra), kind="text") == "none"


async def test_postgres_agrees(gallery: GalleryStorage, pg_url: str) -> None:
    from core.storage.postgres import PostgresGallery

    pg = await make_gallery(PostgresGallery(pg_url), clusters())
    try:
        here, there = [await calibrator(g).thresholds(["global"]) for g in (gallery, pg)]
        assert there.calibrated_image and there.calibrated_text and there.images == 50
        for name in ("image_weak", "image_none", "text_weak", "text_none"):
            assert getattr(there, name) == pytest.approx(getattr(here, name), abs=0.01)
        assert there.verdict(await best(pg, axis(0) + axis(1)), kind="image") == "weak"
        assert there.verdict(await best(pg, axis(UNRELATED)), kind="image") == "none"
    finally:
        await pg.close()


async def test_a_small_gallery_keeps_the_fixed_scores(tmp_path: Path) -> None:
    g = await make_gallery(tmp_path / "small", clusters()[:19])
    try:
        runner = FakeRunner()
        t = await calibrator(g, runner).thresholds(["global"])
    finally:
        await g.close()
    assert (t.image_weak, t.text_weak) == (0.75, 0.20)
    assert not t.calibrated_image and not t.calibrated_text and t.images == 19
    assert runner.calls == 0  # nothing measured
    assert t.verdict(0.74, kind="image") == "weak" and t.verdict(0.75, kind="image") == "good"
    assert t.verdict(-1.0, kind="image") == "weak" and t.verdict(-1.0, kind="text") == "weak"  # never "none"
    assert t.describe() == ("Photo matches: weak below 0.75 (fixed: gallery under 20 images)\n"
                            "Text matches: weak below 0.20 (fixed: gallery under 20 images)")


async def test_few_labels_keep_the_fixed_text_score(tmp_path: Path) -> None:
    g = await make_gallery(tmp_path / "unlabelled", clusters(), labelled=9)
    try:
        t = await calibrator(g).thresholds(["global"])
    finally:
        await g.close()
    assert t.calibrated_image and not t.calibrated_text
    assert (t.text_weak, t.text_none) == (0.20, -np.inf)
    assert t.describe().splitlines()[1] == "Text matches: weak below 0.20 (fixed: under 10 labelled images)"


async def test_measure_samples_deterministically(gallery: GalleryStorage) -> None:
    runner = FakeRunner()
    first = await measure(gallery, runner, model_id=MODEL, collections=["global"], sample=16)
    again = await measure(gallery, runner, model_id=MODEL, collections=["global", "global"], sample=16)
    assert first[2] == again[2] == 50 and len(first[0]) == len(first[1]) == 16
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    a, b = calibrator(gallery), calibrator(gallery)
    assert await a.thresholds(["global"]) == await b.thresholds(["global"])


async def test_best_score_leaves_the_image_itself_out(tmp_path: Path) -> None:
    vectors = [(k, v) for k, v in clusters()[:20]]  # cluster 0 and cluster 1, ten each
    g = await make_gallery(tmp_path / "g", vectors)
    try:
        scores, _, count = await measure(g, FakeRunner(), model_id=MODEL, collections=["global"], sample=256)
    finally:
        await g.close()
    assert count == 20 and len(scores) == 20
    assert scores.max() < 0.99  # no image was scored against itself (1.0)


# -- thresholds from known scores ------------------------------------------------------------------


def test_percentiles_place_the_thresholds() -> None:
    scores = np.arange(101, dtype=np.float64) / 100  # the p-th percentile is p / 100
    texts = np.arange(11, dtype=np.float64) / 10
    t = thresholds_from(scores, texts, images=500, config=CONFIG, fallback_image=0.75, fallback_text=0.2)
    assert (t.image_weak, t.image_none) == pytest.approx((0.20, 0.05))
    assert (t.text_weak, t.text_none) == pytest.approx((0.20, 0.05))
    assert t.calibrated_image and t.calibrated_text and (t.images, t.texts) == (500, 11)
    moved = CalibrationConfig(weak_percentile=50, none_percentile=10)
    t = thresholds_from(scores, texts, images=500, config=moved, fallback_image=0.75, fallback_text=0.2)
    assert (t.image_weak, t.image_none, t.text_weak, t.text_none) == pytest.approx((0.5, 0.1, 0.5, 0.1))
    upside_down = CalibrationConfig(weak_percentile=10, none_percentile=30)  # "none" never above "weak"
    t = thresholds_from(scores, texts, images=500, config=upside_down, fallback_image=0.75, fallback_text=0.2)
    assert (t.image_weak, t.image_none) == pytest.approx((0.1, 0.1))
    assert t.verdict(0.3, kind="image") == "good" and t.verdict(0.1, kind="image") == "good"
    assert t.verdict(0.09, kind="image") == "none"


def test_too_few_scores_fall_back() -> None:
    scores = np.linspace(0.5, 0.9, 40)
    t = thresholds_from(scores, scores[:9], images=40, config=CONFIG, fallback_image=0.75, fallback_text=0.2)
    assert t.calibrated_image and not t.calibrated_text and (t.text_weak, t.text_none) == (0.2, -np.inf)
    t = thresholds_from(scores, scores, images=19, config=CONFIG, fallback_image=0.7, fallback_text=0.3)
    assert t == Thresholds(0.7, -np.inf, 0.3, -np.inf, False, False, 19)
    with_nan = np.append(np.arange(101) / 100, [np.nan, np.inf])
    t = thresholds_from(with_nan, with_nan, images=500, config=CONFIG, fallback_image=0.75, fallback_text=0.2)
    assert t.image_weak == pytest.approx(0.2) and t.texts == 101


def test_describe() -> None:
    t = Thresholds(0.8123, 0.7412, 0.2512, 0.2011, True, True, 120, texts=80)
    assert t.describe() == ("Photo matches: weak below 0.81, none below 0.74 (calibrated on 120 images)\n"
                            "Text matches: weak below 0.25, none below 0.20 (calibrated on 80 labels)")


# -- the cache -------------------------------------------------------------------------------------


async def test_an_unchanged_gallery_is_measured_once(gallery: GalleryStorage) -> None:
    runner = FakeRunner()
    cal = calibrator(gallery, runner)
    first = await cal.thresholds(["global"])
    assert await cal.thresholds(["global"]) is first
    assert await cal.thresholds(["global", "global", ""]) is first
    await cal.wait_refreshes()
    assert runner.calls == 1


async def test_a_new_image_is_measured_again_in_the_background(gallery: GalleryStorage) -> None:
    runner, clock = FakeRunner(), Clock()
    cal = calibrator(gallery, runner, clock)
    first = await cal.thresholds(["global"])
    await add(gallery, 999, axis(0), "cat")
    assert await cal.thresholds(["global"]) is first  # the signature was looked at just now
    await cal.wait_refreshes()
    assert runner.calls == 1
    clock.now += CONFIG.check_every_s
    assert await cal.thresholds(["global"]) is first  # served while the refresh runs
    await cal.wait_refreshes()
    assert runner.calls == 2
    assert (await cal.thresholds(["global"])).images == 51
    await cal.wait_refreshes()
    assert runner.calls == 2


async def test_old_thresholds_are_measured_again(gallery: GalleryStorage) -> None:
    runner, clock = FakeRunner(), Clock()
    cal = calibrator(gallery, runner, clock)
    await cal.thresholds(["global"])
    clock.now += CONFIG.max_age_s - 1
    await cal.thresholds(["global"])
    await cal.wait_refreshes()
    assert runner.calls == 1
    clock.now += 1
    await cal.thresholds(["global"])
    await cal.wait_refreshes()
    assert runner.calls == 2


async def test_concurrent_first_requests_share_one_measurement(gallery: GalleryStorage) -> None:
    runner = FakeRunner()
    cal = calibrator(gallery, runner)
    results = await asyncio.gather(*(cal.thresholds(["global"]) for _ in range(5)))
    assert runner.calls == 1 and all(r is results[0] for r in results)


async def test_a_cancelled_request_leaves_the_measurement_to_the_others(gallery: GalleryStorage) -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()
    cal = calibrator(gallery, runner)
    leaving = asyncio.create_task(cal.thresholds(["global"]))
    staying = asyncio.create_task(cal.thresholds(["global"]))
    await runner.entered.wait()
    leaving.cancel()
    runner.gate.set()
    assert (await staying).calibrated_image
    assert leaving.cancelled() and runner.calls == 1


async def test_a_slow_first_measurement_answers_with_the_fixed_scores_meanwhile(gallery: GalleryStorage) -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()  # a measurement that takes as long as the test likes
    cal = calibrator(gallery, runner, config=replace(CONFIG, first_wait_s=0.05))
    meanwhile = await cal.thresholds(["global"])
    assert not meanwhile.calibrated_image and meanwhile.image_weak == 0.75 and meanwhile.image_none == -np.inf
    assert "still measuring" in meanwhile.describe()
    runner.gate.set()
    await cal.wait_refreshes()
    assert (await cal.thresholds(["global"])).calibrated_image and runner.calls == 1  # the same measurement


async def test_aclose_cancels_what_runs(gallery: GalleryStorage) -> None:
    runner = FakeRunner()
    runner.gate = asyncio.Event()
    cal = calibrator(gallery, runner)
    waiting = asyncio.create_task(cal.thresholds(["global"]))
    await runner.entered.wait()
    await cal.aclose()
    t = await waiting
    assert not t.calibrated_image and t.image_weak == 0.75
    assert not (await cal.thresholds(["global"])).calibrated_image
    assert runner.calls == 1


async def test_the_cache_is_bounded(gallery: GalleryStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibration, "CACHE_SIZE", 2)
    runner = FakeRunner()
    cal = calibrator(gallery, runner)
    for names in (["global"], ["a"], ["b"]):
        await cal.thresholds(names)
    assert runner.calls == 1
    await cal.thresholds(["global"])  # evicted: measured again, waited for
    assert runner.calls == 2


async def test_collections_and_models_make_separate_galleries(gallery: GalleryStorage) -> None:
    await add(gallery, 500, axis(0), "cat", collection="telegram:-100")
    model = [MODEL]
    cal = Calibrator(gallery, FakeRunner(), model_id=lambda: model[0], config=CONFIG, fallback_image=0.75,
                     fallback_text=0.2)
    both = await cal.thresholds(["telegram:-100", "global"])
    assert both.images == 51 and await cal.thresholds(["global", "telegram:-100"]) is both
    assert (await cal.thresholds(["telegram:-100"])).images == 1
    model[0] = "other/model"
    assert (await cal.thresholds(["global"])).images == 0


# -- failures never reach a search --------------------------------------------------------------------


async def test_unavailable_storage_gives_the_fixed_scores(gallery: GalleryStorage, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    async def unavailable(*args: object, **kw: object) -> int:
        raise StorageUnavailableError("clipbot.db", "database is locked")

    runner, clock = FakeRunner(), Clock()
    cal = calibrator(gallery, runner, clock)
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, "core.search.calibration"):
        patch.setattr(gallery, "count_vectors", unavailable)
        t = await cal.thresholds(["global"])
        assert (t.image_weak, t.text_weak, t.calibrated_image, t.calibrated_text) == (0.75, 0.2, False, False)
        assert t.verdict(-1.0, kind="image") == "weak"
        assert "fixed: gallery unavailable" in t.describe()
        assert "database is locked" in caplog.text
    assert not (await cal.thresholds(["global"])).calibrated_image  # not retried at once
    clock.now += calibration.RETRY_AFTER_S
    assert not (await cal.thresholds(["global"])).calibrated_image  # retried in the background
    await cal.wait_refreshes()
    assert (await cal.thresholds(["global"])).calibrated_image


async def test_a_failed_refresh_keeps_the_calibration(gallery: GalleryStorage, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    runner, clock = FakeRunner(), Clock()
    cal = calibrator(gallery, runner, clock)
    good = await cal.thresholds(["global"])
    clock.now += CONFIG.max_age_s
    runner.fail_with = RuntimeError("inference thread gone")
    with caplog.at_level(logging.ERROR, "core.search.calibration"):
        assert await cal.thresholds(["global"]) is good
        await cal.wait_refreshes()
    assert "inference thread gone" in caplog.text
    assert await cal.thresholds(["global"]) is good  # no new attempt straight away
    await cal.wait_refreshes()
    assert runner.calls == 2


async def test_a_failed_first_measurement_gives_the_fixed_scores(gallery: GalleryStorage) -> None:
    runner = FakeRunner()
    runner.fail_with = RuntimeError("boom")
    t = await calibrator(gallery, runner).thresholds(["global"])
    assert not t.calibrated_image and "fixed: calibration failed" in t.describe()
