"""Calibration's searches at 50,000 images: 256 single ``nearest`` calls against one
``nearest_many`` of the same 256 queries, on SQLite and on PostgreSQL, in the same run.

    python -m bench.calibration            # 50,000 random unit vectors of 512 dimensions (about 2 minutes)
    python -m bench.calibration --smoke    # 300 of them

The queries are what calibration sends: stored vectors of 256 images, k = 2 (each finds itself
and its nearest other). Both ways must give the same ids (``agreement``, the share of queries
whose ids match). ``measure_s`` times the whole of ``core.search.calibration.measure`` (the
images listed, the sample's vectors read, the searches, a stand-in text encoder). The galleries
are filled by bulk statements, which are not measured; PostgreSQL is the benchmarks' server
(see bench/postgres.py), with its HNSW index built as the engine builds it.
Targets (reported, not enforced): nearest_many under a second on SQLite, one round trip on
PostgreSQL (by construction, not timed).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import standalone
from core.records import vector_to_blob
from core.search.calibration import measure
from core.storage.base import GalleryStorage

MODEL = "bench/calibration"
SAMPLE = 256  # calibration's default sample
K = 2


def _vectors(n: int, dim: int) -> np.ndarray:
    v = np.random.default_rng(0).standard_normal((n, dim), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


class _Texts:
    """A stand-in for the text encoder calibration asks for its labels: random unit vectors."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return _vectors(len(texts), self.dim)


async def _sqlite(data_dir: Path, vectors: np.ndarray) -> GalleryStorage:
    from core.storage.sqlite import SqliteGallery

    gallery = SqliteGallery(data_dir)
    await gallery.open()  # creates the schema
    await gallery.close()
    now = "2026-01-01T00:00:00+00:00"
    with sqlite3.connect(data_dir / "clipbot.db") as db:
        db.execute("INSERT INTO collections(name, created_at) VALUES ('global', ?)", (now,))
        db.executemany("INSERT INTO images(id, collection, label, sha256, created_at) VALUES (?, 'global', ?, ?, ?)",
                       ((n + 1, f"image {n}", f"{n:064x}", now) for n in range(len(vectors))))
        db.executemany("INSERT INTO embeddings(image_id, model_id, dim, vector) VALUES (?, ?, ?, ?)",
                       ((n + 1, MODEL, vectors.shape[1], vector_to_blob(v)) for n, v in enumerate(vectors)))
    await gallery.open()
    await gallery.prepare_search(MODEL, vectors.shape[1])
    return gallery


async def _postgres(url: str, vectors: np.ndarray) -> GalleryStorage:
    from core.storage.postgres import PostgresGallery

    gallery = PostgresGallery(url)
    await gallery.open()
    async with gallery._conn() as conn:
        await conn.execute("INSERT INTO collections(name) VALUES ('global')")
        cur = conn.cursor()
        async with cur.copy("COPY images(id, collection, label, sha256) FROM STDIN") as copy:
            for n in range(len(vectors)):
                await copy.write_row((n + 1, "global", f"image {n}", f"{n:064x}"))
        async with cur.copy("COPY embeddings(image_id, model_id, dim, vector) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "int4", "vector"])
            for n, v in enumerate(vectors):
                await copy.write_row((n + 1, MODEL, vectors.shape[1], v))
        await conn.execute("SELECT setval(pg_get_serial_sequence('images', 'id'), %s)", (len(vectors),))
    await gallery.prepare_search(MODEL, vectors.shape[1])  # builds the HNSW index (and analyses)
    return gallery


async def _seconds(call: Callable[[], Awaitable[object]], repeats: int) -> float:
    """The median wall-clock seconds of ``repeats`` awaited calls, after one unmeasured."""
    await call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def _compare(gallery: GalleryStorage, queries: np.ndarray, dim: int, smoke: bool) -> dict[str, Any]:
    async def singles() -> list[Any]:
        return [await gallery.nearest(q, model_id=MODEL, collections=["global"], k=K) for q in queries]

    async def batched() -> list[Any]:
        return await gallery.nearest_many(queries, model_id=MODEL, collections=["global"], k=K)

    # Alternated, so that a machine busy with other work slows both alike.
    one_s, many_s = [], []
    for _ in range(3 if smoke else 2):
        one_s.append(await _seconds(singles, repeats=1))
        many_s.append(await _seconds(batched, repeats=3))
    one, many = await singles(), await batched()
    same = [a.ids.tolist() == b.ids.tolist() for a, b in zip(one, many, strict=True)]
    gaps = [float(np.max(np.abs(a.scores - b.scores))) for a, b in zip(one, many, strict=True) if len(a)]
    texts = _Texts(dim)
    measure_s = await _seconds(lambda: measure(gallery, texts, model_id=MODEL, collections=["global"],
                                               sample=SAMPLE), repeats=3)
    return {"singles_s": statistics.median(one_s), "many_s": statistics.median(many_s),
            "ratio": statistics.median(one_s) / statistics.median(many_s),
            "agreement": sum(same) / len(same), "max_score_gap": max(gaps, default=0.0), "measure_s": measure_s}


async def _measure(url: str, data_dir: Path, n: int, dim: int, smoke: bool) -> dict[str, Any]:
    vectors = _vectors(n, dim)
    rows = np.sort(np.random.default_rng(1).choice(n, min(SAMPLE, n), replace=False))
    queries = vectors[rows]
    result: dict[str, Any] = {"n": n, "dim": dim, "queries": len(queries), "k": K}
    for name in ("sqlite", "postgres"):
        start = time.perf_counter()
        gallery = await (_sqlite(data_dir, vectors) if name == "sqlite" else _postgres(url, vectors))
        try:
            result[name] = {"setup_s": time.perf_counter() - start, **await _compare(gallery, queries, dim, smoke)}
        finally:
            await gallery.close()
    for name in ("sqlite", "postgres"):  # the headline figures, flat, as the report's targets name them
        for key in ("many_s", "ratio", "measure_s"):
            result[f"{name}_{key}"] = result[name][key]
    result["agreement"] = min(result["sqlite"]["agreement"], result["postgres"]["agreement"])
    return result


def run(*, smoke: bool) -> dict[str, Any]:
    n, dim = (300, 512) if smoke else (50_000, 512)
    from bench.postgres import bench_database

    tmp = Path(tempfile.mkdtemp(prefix="clipbot-bench-calibration-"))
    try:
        with bench_database(tmp) as url:
            return asyncio.run(_measure(url, tmp / "sqlite", n, dim, smoke))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    return standalone(run, __doc__, argv, smoke_help="300 vectors")


if __name__ == "__main__":
    raise SystemExit(main())
