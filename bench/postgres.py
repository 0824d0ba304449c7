"""The PostgreSQL backend against SQLite: inserts, HNSW build, search latency and recall@10, and
bulk loads.

    python -m bench.postgres            # 100k random unit vectors of 512 dimensions (many minutes)
    python -m bench.postgres --smoke    # 2k of 16 dimensions

The server is ``CLIPBOT_BENCH_DATABASE_URL`` (or ``CLIPBOT_TEST_DATABASE_URL``) when set, else a
private pgserver PostgreSQL in a temp dir; the benchmark works in databases of its own and drops
them. Inserts go one row at a time as the engine adds images (``insert_image`` then ``get_image``,
in batches of 16), into both backends in the same run. Then ``bulk``: the same vectors as new
images by ``insert_images`` (batches of 500, as ``clipbot migrate`` writes them) into an empty
gallery whose HNSW index is live, and into one inside ``bulk_load`` (the index dropped, built
after: its build time apart), and how batches travel (COPY, as ``insert_images`` sends them,
against executemany of the one-image statement). Targets (reported, not enforced): search p50
<= 20 ms, recall@10 >= 0.95, PostgreSQL inserts >= 80% of SQLite's rate, a bulk load (build
included) >= 1,000 rows/s.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import standalone
from core.records import NewImage
from core.storage.base import GalleryStorage

MODEL = "bench/random"
MODEL_CLIP_LIKE = "bench/clip-like"
BATCH = 16  # the engine's ingest batch
LOAD_BATCH = 500  # rows per insert_images in a bulk load (clipbot migrate's batch)
TRANSPORT_ROWS = 20_000  # at most, for COPY against executemany: no index, so the rate holds steady
QUERIES = 200
K = 10


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """Isotropic random unit vectors: no structure at all, the worst case for a graph index."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def _clip_like(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors near a subspace of dim/16 dimensions plus noise: embeddings such as CLIP's
    have an intrinsic dimension of a few dozen, which is what makes graph indexes work on them."""
    rank = max(2, dim // 16)
    basis = np.random.default_rng(99).standard_normal((rank, dim), dtype=np.float32) / np.sqrt(rank)
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, rank), dtype=np.float32) @ basis
    v += 0.3 * rng.standard_normal((n, dim), dtype=np.float32) / np.sqrt(dim)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def _image(n: int) -> NewImage:
    return NewImage(collection="global", label=f"image {n}", description="", sha256=f"{n:064x}", width=640,
                    height=480, file=f"{n % 256:02x}/{n:064x}.jpg", colors="[]", color_families=" blue ")


async def _insert_all(galleries: list[GalleryStorage], vectors: np.ndarray, offset: int = 0,
                      ) -> tuple[list[int], list[float]]:
    """Every vector as one new image into each gallery, the way the engine adds a batch; the
    galleries take turns batch by batch, so that a busy machine slows them alike. Returns the
    first gallery's ids and each gallery's seconds."""
    ids: list[int] = []
    seconds = [0.0] * len(galleries)
    for first in range(0, len(vectors), BATCH):
        for g, gallery in enumerate(galleries):
            start = time.perf_counter()
            for n in range(first, min(first + BATCH, len(vectors))):
                image_id, _ = await gallery.insert_image(_image(offset + n), vectors[n], MODEL)
                await gallery.get_image(image_id)
                if g == 0:
                    ids.append(image_id)
            seconds[g] += time.perf_counter() - start
    return ids, seconds


async def _search(gallery: GalleryStorage, queries: np.ndarray, model: str = MODEL, **kw: Any,
                  ) -> tuple[list[list[int]], list[float]]:
    found, seconds = [], []
    await gallery.nearest(queries[0], model_id=model, collections=["global"], k=K, **kw)  # warm-up
    for q in queries:
        start = time.perf_counter()
        hits = await gallery.nearest(q, model_id=model, collections=["global"], k=K, **kw)
        seconds.append(time.perf_counter() - start)
        found.append(hits.ids.tolist())
    return found, seconds


async def _copy_vectors(pg: Any, ids: list[int], vectors: np.ndarray, model: str) -> None:
    """A second model's vectors for the same images, by COPY (bench set-up, not measured)."""
    async with pg._conn() as conn:
        cur = conn.cursor()
        async with cur.copy("COPY embeddings(image_id, model_id, dim, vector) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "int4", "vector"])
            for image_id, vec in zip(ids, vectors, strict=True):
                await copy.write_row((image_id, model, len(vec), vec))


async def _exact_ms(pg: Any, queries: np.ndarray, model: str, dim: int) -> float:
    """A search that scans every vector: what the fallback costs at worst."""
    seconds = []
    async with pg._conn() as conn:
        for q in queries:
            query, params = pg.search_query(model, dim, q, ["global"], K, exact=True)
            start = time.perf_counter()
            await (await conn.execute(query, params)).fetchall()
            seconds.append(time.perf_counter() - start)
    return _ms(seconds, 0.5)


def _recall(found: list[list[int]], vectors: np.ndarray, ids: list[int], queries: np.ndarray) -> float:
    id_of = np.asarray(ids, dtype=np.int64)
    hits = 0
    for got, q in zip(found, queries, strict=True):
        truth = id_of[np.argsort(-(vectors @ q), kind="stable")[:K]]
        hits += len(set(got) & set(truth.tolist()))
    return hits / (K * len(queries))


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(url: str, data_dir: Path, n: int, dim: int) -> dict[str, Any]:
    from core.storage.postgres import PostgresGallery
    from core.storage.sqlite import SqliteGallery

    vectors = _vectors(n, dim, seed=0)
    queries = _vectors(QUERIES, dim, seed=1)  # not in the data
    result: dict[str, Any] = {"n": n, "dim": dim, "queries": QUERIES, "k": K}

    sqlite, pg = SqliteGallery(data_dir), PostgresGallery(url)
    await sqlite.open()
    await pg.open()
    try:
        ids, (pg_s, sqlite_s) = await _insert_all([pg, sqlite], vectors)
        result["insert_per_s"] = {"postgres": n / pg_s, "sqlite": n / sqlite_s}
        result["insert_vs_sqlite"] = sqlite_s / pg_s
        await sqlite.prepare_search(MODEL, dim)
        result["sqlite_search_p50_ms"] = _ms((await _search(sqlite, queries))[1], 0.5)
        async with pg._conn() as conn:
            row = await (await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                                            )).fetchone()
        result["pgvector"] = str(row[0]) if row else "?"
        result["index_type"] = "halfvec" if pg.halfvec else "vector"
        result["ef_search"] = max(pg.ef_search, 4 * K)

        # Two data sets under two model ids: isotropic random (as asked), and CLIP-like.
        like, like_queries = _clip_like(n, dim, seed=3), _clip_like(QUERIES, dim, seed=4)
        await _copy_vectors(pg, ids, like, MODEL_CLIP_LIKE)
        for name, model, data, asked in (("random", MODEL, vectors, queries),
                                          ("clip_like", MODEL_CLIP_LIKE, like, like_queries)):
            start = time.perf_counter()
            await pg.prepare_search(model, dim)
            build_s = time.perf_counter() - start
            async with pg._conn() as conn:
                await conn.execute("ANALYZE embeddings")
                size = await (await conn.execute("SELECT pg_relation_size(%s::regclass)",
                                                 (pg.index_name(model, dim),))).fetchone()
            found, seconds = await _search(pg, asked, model)
            result[name] = {
                "hnsw_build_s": build_s, "index_mb": int(size[0]) / 2**20 if size else 0.0,
                "recall_at_10": _recall(found, data, ids, asked),
                "search_p50_ms": _ms(seconds, 0.5), "search_p95_ms": _ms(seconds, 0.95),
                "exact_scan_p50_ms": await _exact_ms(pg, asked[:5], model, dim),
            }
            default_ef, sweep = pg.ef_search, {}
            for ef in (40, 100, 200, 400, 1000):  # hnsw.ef_search: recall against time
                pg.ef_search = ef
                found, seconds = await _search(pg, asked[:50], model)
                sweep[str(ef)] = {"recall_at_10": _recall(found, data, ids, asked[:50]),
                                  "p50_ms": _ms(seconds, 0.5)}
            pg.ef_search = default_ef
            result[name]["ef_search_sweep"] = sweep
        # A filter (almost) nothing passes: the graph walk comes back short, the rest is scanned.
        result["filtered_fallback_p50_ms"] = _ms((await _search(pg, queries[:20], color_families=["red"]))[1], 0.5)
        # Inserts once the index is there: PostgreSQL adds each vector to the HNSW graph, SQLite
        # to its in-memory matrix.
        more = _vectors(max(100, n // 100), dim, seed=2)
        _, (pg_more, sqlite_more) = await _insert_all([pg, sqlite], more, offset=n + 1)
        result["insert_with_index_per_s"] = {"postgres": len(more) / pg_more, "sqlite": len(more) / sqlite_more}
    finally:
        await pg.close()
        await sqlite.close()
    # The headline figures, as the targets name them: the CLIP-like data's search (random data
    # defeats any graph index: see "random").
    result["hnsw_build_s"] = result["random"]["hnsw_build_s"]
    result["search_p50_ms"] = result["clip_like"]["search_p50_ms"]
    result["recall_at_10"] = result["clip_like"]["recall_at_10"]
    return result


async def _load_rows(pg: Any, vectors: np.ndarray, offset: int = 0) -> list[int]:
    """Every vector as a new image, by ``insert_images``, LOAD_BATCH at a time; returns their ids."""
    ids: list[int] = []
    for first in range(0, len(vectors), LOAD_BATCH):
        rows = vectors[first:first + LOAD_BATCH]
        done = await pg.insert_images([_image(offset + first + n) for n in range(len(rows))], rows, MODEL)
        ids += [held.id for held, _ in done]
    return ids


async def _load(url: str, vectors: np.ndarray, *, live: bool) -> dict[str, float]:
    """``vectors`` into an empty gallery whose HNSW index is there: kept live, or set aside by
    ``bulk_load`` and built after (its seconds reported apart); then recall@10 of the index."""
    from core.storage.postgres import PostgresGallery

    n, dim = vectors.shape
    pg = PostgresGallery(url)
    await pg.open()
    try:
        await pg.prepare_search(MODEL, dim)  # the (empty) index, as a gallery in service has it
        start = time.perf_counter()
        if live:
            ids = await _load_rows(pg, vectors)
            loaded = built = time.perf_counter()
        else:
            async with pg.bulk_load(MODEL, dim, n):
                ids = await _load_rows(pg, vectors)
                loaded = time.perf_counter()
            built = time.perf_counter()
        queries = _vectors(50, dim, seed=5)
        found, _ = await _search(pg, queries)
        out = {"rows_per_s": n / (built - start), "recall_at_10": _recall(found, vectors, ids, queries)}
        if not live:
            out.update(load_rows_per_s=n / (loaded - start), build_s=built - loaded)
        return out
    finally:
        await pg.close()


async def _executemany(pg: Any, images: list[NewImage], rows: np.ndarray) -> None:
    """A batch by executemany of ``insert_image``'s one-image statement, in one transaction: what
    ``insert_images``' COPY is measured against."""
    from core.records import search_text
    from core.storage.postgres_rows import _INSERT_IMAGE

    params = [{**{name: getattr(i, name) for name in (
        "collection", "label", "description", "caption", "sha256", "width", "height", "added_by", "file",
        "source_path", "colors", "color_families", "source_size", "source_mtime_ns")},
        "search_text": search_text(i.label, i.description), "model_id": MODEL, "dim": rows.shape[1], "vector": v}
        for i, v in zip(images, rows, strict=True)]
    async with pg._transaction() as conn:
        await conn.cursor().executemany(_INSERT_IMAGE, params, returning=True)


async def _transport(urls: list[str], vectors: np.ndarray) -> dict[str, float]:
    """Rows/s of COPY (``insert_images``) and of executemany, without an index, batch about batch."""
    from core.storage.postgres import PostgresGallery

    copy, many = PostgresGallery(urls[0]), PostgresGallery(urls[1])
    await copy.open()
    await many.open()
    try:
        seconds = {"copy": 0.0, "executemany": 0.0}
        for first in range(0, len(vectors), LOAD_BATCH):
            rows = vectors[first:first + LOAD_BATCH]
            images = [_image(first + n) for n in range(len(rows))]
            start = time.perf_counter()
            await copy.insert_images(images, rows, MODEL)
            middle = time.perf_counter()
            await _executemany(many, images, rows)
            seconds["copy"] += middle - start
            seconds["executemany"] += time.perf_counter() - middle
        assert await copy.embedding_counts() == await many.embedding_counts() == {MODEL: len(vectors)}
    finally:
        await copy.close()
        await many.close()
    return {name: len(vectors) / s for name, s in seconds.items()}


async def _bulk(urls: list[str], n: int, dim: int) -> dict[str, Any]:
    vectors = _vectors(n, dim, seed=0)
    live = await _load(urls[0], vectors, live=True)
    bulk = await _load(urls[1], vectors, live=False)
    return {
        "n": n, "batch": LOAD_BATCH, "live_index": live, "build_after_load": bulk,
        "speedup": bulk["rows_per_s"] / live["rows_per_s"],
        "transport_rows_per_s": await _transport(urls[2:4], vectors[:TRANSPORT_ROWS]),
    }


def server_url(tmp: Path) -> tuple[str, Any]:
    """The benchmarks' PostgreSQL: the URL given, or a private pgserver's in ``tmp`` (then also the
    server, to clean up)."""
    url = (os.environ.get("CLIPBOT_BENCH_DATABASE_URL") or os.environ.get("CLIPBOT_TEST_DATABASE_URL") or "").strip()
    if url:
        return url, None
    from tests.pg import start_server  # sets up pgserver's runtime dir first

    server = start_server(tmp / "pg")
    return str(server.get_uri()), server


@contextmanager
def bench_database(tmp: Path) -> Iterator[str]:
    """The URL of a database of the benchmark's own on the benchmarks' server, dropped afterwards."""
    with bench_databases(tmp, 1) as urls:
        yield urls[0]


@contextmanager
def bench_databases(tmp: Path, count: int) -> Iterator[list[str]]:
    """The URLs of ``count`` databases of the benchmark's own on one server, dropped afterwards."""
    from tests.pg import create_database, drop_database, with_database

    url, server = server_url(tmp)
    names: list[str] = []
    try:
        names += [create_database(url, prefix="clipbot_bench") for _ in range(count)]
        yield [with_database(url, name) for name in names]
    finally:
        for name in names:
            with suppress(Exception):
                drop_database(url, name)
        if server is not None:
            server.cleanup()


def run(*, smoke: bool) -> dict[str, Any]:
    n, dim = (2_000, 16) if smoke else (100_000, 512)
    tmp = Path(tempfile.mkdtemp(prefix="clipbot-bench-pg-"))
    try:
        with bench_databases(tmp, 5) as urls:
            result = asyncio.run(_measure(urls[0], tmp / "sqlite", n, dim))
            result["bulk"] = asyncio.run(_bulk(urls[1:], n, dim))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["targets_met"] = {
        "search_p50_ms <= 20": max(result["search_p50_ms"], result["random"]["search_p50_ms"]) <= 20,
        "recall_at_10 >= 0.95 (CLIP-like data)": result["recall_at_10"] >= 0.95,
        "recall_at_10 >= 0.95 (random data)": result["random"]["recall_at_10"] >= 0.95,
        "insert_vs_sqlite >= 0.8": result["insert_vs_sqlite"] >= 0.8,
        "bulk load >= 1000 rows/s (build included)": result["bulk"]["build_after_load"]["rows_per_s"] >= 1000,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    return standalone(run, __doc__, argv, smoke_help="2k vectors of 16 dimensions")


if __name__ == "__main__":
    raise SystemExit(main())
