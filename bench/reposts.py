"""A repost check's lookup in a busy chat: the candidates found in the backend
(``matching_sightings``) against the old path, every sighting of the window read and matched in
Python (``sightings`` then ``RepostWatcher.match``), on SQLite and PostgreSQL in the same run.

    python -m bench.reposts            # 100,000 sightings of 512 dimensions in one chat
    python -m bench.reposts --smoke    # 2,000

Half the queries repeat an earlier picture (a vector near one stored, its hash a bit off), half
are new. Figures: p50/p95 ms per lookup; SQLite's first check of the chat (which reads the
window into memory) apart. Target (reported, not enforced): p95 under 50 ms at 100,000.
PostgreSQL is ``CLIPBOT_BENCH_DATABASE_URL`` when set, else a private pgserver (bench.postgres).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from bench.common import standalone
from core.chat.reposts import RepostWatcher
from core.storage import sql
from core.storage.base import GalleryStorage
from core.storage.sightings import phash_to_int64

MODEL = "bench/clip-like"
CHAT = "telegram:-100123"
NOW = 1_714_737_600.0
RETENTION_S = 90 * 86400.0
THRESHOLD = 0.95
HASH_DISTANCE = 4
LOAD_BATCH = 2_000


def _data(n: int, dim: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` unit vectors, 64-bit hashes and times (the last 60 days) of one chat's sightings."""
    from bench.postgres import _clip_like

    rng = np.random.default_rng(seed)
    vectors = _clip_like(n, dim, seed)
    hashes = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    times = NOW - rng.uniform(0, 60 * 86400, size=n)
    return vectors, hashes, times


def _queries(vectors: np.ndarray, hashes: np.ndarray, count: int, seed: int = 6) -> list[tuple[int, np.ndarray]]:
    """Half reposts of stored rows (a little noise, two hash bits off), half new pictures."""
    rng = np.random.default_rng(seed)
    found: list[tuple[int, np.ndarray]] = []
    for q in range(count):
        if q % 2 == 0:
            row = int(rng.integers(len(vectors)))
            vector = vectors[row] + np.asarray(rng.normal(0, 0.005, vectors.shape[1]), np.float32)
            found.append((int(hashes[row]) ^ 0b101, vector))
        else:
            fresh = np.asarray(rng.standard_normal(vectors.shape[1]), np.float32)
            found.append((int(rng.integers(0, 2**63)) * 2 + 1, fresh))
    return found


async def _load(gallery: Any, vectors: np.ndarray, hashes: np.ndarray, times: np.ndarray) -> None:
    """The sightings, in batches of one transaction each (add_sighting's statement)."""
    statement = gallery.dialect.sql(sql.ADD_SIGHTING)
    for first in range(0, len(vectors), LOAD_BATCH):
        rows = [(CHAT, str(n), f"telegram:{n % 50}", f"user {n % 50}", float(times[n]),
                 phash_to_int64(int(hashes[n])), gallery.dialect.vector_in(vectors[n]), MODEL, None)
                for n in range(first, min(first + LOAD_BATCH, len(vectors)))]
        async with gallery._transaction() as conn:
            await gallery._execute_many(conn, statement, rows)


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered) * 1000,
            "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000}


async def _measure(gallery: GalleryStorage, queries: list[tuple[int, np.ndarray]], old_count: int) -> dict[str, Any]:
    watcher = RepostWatcher(SimpleNamespace(sighting_retention_s=RETENTION_S, state=None, encoder_busy=False),
                            threshold=THRESHOLD, hash_distance=HASH_DISTANCE)
    since = NOW - RETENTION_S
    new: list[float] = []
    old: list[float] = []
    agree = 0
    first_ms = 0.0
    for n, (phash, vector) in enumerate(queries):
        start = time.perf_counter()
        candidates = await gallery.matching_sightings(CHAT, MODEL, since, phashes=[phash], vectors=vector,
                                                      hash_distance=HASH_DISTANCE, threshold=THRESHOLD,
                                                      message_id="new")
        mine = watcher.match(candidates, phash, vector)
        elapsed = time.perf_counter() - start
        if n == 0:
            first_ms = elapsed * 1000  # SQLite reads the window into memory here
        else:
            new.append(elapsed)
        if n < old_count:
            start = time.perf_counter()
            theirs = watcher.match(await gallery.sightings(CHAT, MODEL, since), phash, vector)
            old.append(time.perf_counter() - start)
            agree += (mine is None) == (theirs is None) and (mine is None or theirs is None or
                                                            mine.earlier == theirs.earlier)
    return {"first_check_ms": first_ms, "matching_sightings": _ms(new), "read_everything": _ms(old),
            "agree": f"{agree}/{min(old_count, len(queries))}",
            "reposts_asked": len(queries[::2])}


async def _both(url: str, data_dir: Path, n: int, dim: int, count: int, old_count: int) -> dict[str, Any]:
    from core.storage.postgres import PostgresGallery
    from core.storage.sqlite import SqliteGallery

    vectors, hashes, times = _data(n, dim)
    queries = _queries(vectors, hashes, count)
    result: dict[str, Any] = {"n": n, "dim": dim, "queries": count}
    for name, gallery in (("sqlite", SqliteGallery(data_dir)), ("postgres", PostgresGallery(url))):
        await gallery.open()
        try:
            start = time.perf_counter()
            await _load(gallery, vectors, hashes, times)
            load_s = time.perf_counter() - start
            result[name] = {"load_s": load_s, **await _measure(gallery, queries, old_count)}
        finally:
            await gallery.close()
    return result


def run(*, smoke: bool) -> dict[str, Any]:
    """The lookup's p50/p95 on both backends, new path against old; target p95 < 50 ms."""
    from bench.postgres import bench_database

    n, dim, count, old_count = (2_000, 512, 21, 5) if smoke else (100_000, 512, 101, 8)
    tmp = Path(tempfile.mkdtemp(prefix="clipbot-bench-reposts-"))
    try:
        with bench_database(tmp) as url:
            result = asyncio.run(_both(url, tmp / "sqlite", n, dim, count, old_count))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["targets_met"] = {f"{name} p95 < 50 ms": result[name]["matching_sightings"]["p95_ms"] < 50
                             for name in ("sqlite", "postgres")}
    return result


def main(argv: list[str] | None = None) -> int:
    return standalone(run, __doc__, argv, smoke_help="2,000 sightings")


if __name__ == "__main__":
    raise SystemExit(main())
