"""Search over the text read in pictures (``text_search``) at 100,000 images, on SQLite (FTS5
tables of trigrams and of pairs) and PostgreSQL (a GIN index over each text's 2- and 3-grams).

    python -m bench.text_search            # 100k images (a few minutes)
    python -m bench.text_search --smoke    # 2k

Each image gets a synthetic text as the reader would store it: 2 to 20 words (a fifth of the
pictures none) drawn from a vocabulary of made-up Latin words and CJK ones with Zipf-like
frequencies, folded (no spaces). The queries are folded too, as the searcher sends them:
3 consecutive words of a stored text (``phrase``), a word drawn as often as it is used
(``common_word``: thousands of hits) or uniformly (``any_word``), a CJK word of 3 or 4
characters (``cjk_word``), the first 2 characters of one (``cjk_pair``: 2-character queries are
CJK words, mostly) and 2 characters of a stored text (``two_chars``: the worst case, mostly 2
Latin letters that a fifth of the texts hold).
Every answer is checked against a scan in Python. The server is ``CLIPBOT_BENCH_DATABASE_URL``
(or ``CLIPBOT_TEST_DATABASE_URL``) when set, else a private pgserver PostgreSQL (see
bench.postgres). Target (reported, not enforced): p50 <= 50 ms for every kind on both backends.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import standalone
from bench.postgres import bench_database
from core.records import NewImage, PictureText
from core.storage.base import GalleryStorage

MODEL = "bench/text"
OCR_MODEL = "bench/ocr"
DIM = 8  # the vectors do not matter here: as small as insert_images takes them
BATCH = 1_000  # images per insert_images, texts per set_texts
COLLECTIONS = ("global", "telegram:-100", "discord:7")  # 85%, 10%, 5% of the images
SEARCHED = ["global", "telegram:-100"]
TARGET_P50_MS = 50.0
KINDS = ("phrase", "common_word", "any_word", "cjk_word", "cjk_pair", "two_chars")
_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "ch", "st", "ng", "x"]


def vocabulary(rng: np.random.Generator, latin: int, cjk: int) -> tuple[list[str], np.ndarray]:
    """Made-up words (distinct) and how often each is used: Zipf-like, the first the most."""
    words: dict[str, None] = {}
    while len(words) < latin:
        words["".join(rng.choice(_SYLLABLES, size=int(rng.integers(1, 5))))] = None
    while len(words) < latin + cjk:
        words["".join(chr(int(c)) for c in rng.integers(0x4E00, 0x9FA5, size=int(rng.integers(2, 5))))] = None
    order = rng.permutation(len(words))  # CJK words anywhere in the ranks, not all at the tail
    listed = [list(words)[n] for n in order]
    weights = 1.0 / np.arange(10, len(listed) + 10) ** 1.07
    return listed, weights / weights.sum()


def texts(rng: np.random.Generator, n: int, words: list[str], weights: np.ndarray) -> list[list[str]]:
    """Each picture's words in reading order (a fifth of them have none)."""
    counts = np.where(rng.random(n) < 0.2, 0, rng.integers(2, 21, size=n))
    drawn = rng.choice(len(words), size=int(counts.sum()), p=weights)
    out, at = [], 0
    for count in counts:
        out.append([words[w] for w in drawn[at:at + count]])
        at += count
    return out


def picture_text(picked: list[str]) -> PictureText:
    """A text as the reader stores it: lines of up to four words; folded, the words run together."""
    lines = [" ".join(picked[n:n + 4]) for n in range(0, len(picked), 4)]
    return PictureText(lines=tuple((line, 0.9) for line in lines), folded="".join(picked), model_id=OCR_MODEL)


def queries(rng: np.random.Generator, count: int, stored: list[list[str]], words: list[str],
            weights: np.ndarray) -> dict[str, list[str]]:
    """``count`` folded queries of each kind (see the module)."""
    read = [t for t in stored if t]
    cjk = [w for w in words if not w.isascii() and len(w) >= 3]
    out: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for _ in range(count):
        text = read[int(rng.integers(len(read)))]
        start = int(rng.integers(max(1, len(text) - 2)))
        out["phrase"].append("".join(text[start:start + 3]))
        out["common_word"].append(words[int(rng.choice(len(words), p=weights))])
        out["any_word"].append(words[int(rng.integers(len(words)))])
        out["cjk_word"].append(cjk[int(rng.integers(len(cjk)))])
        out["cjk_pair"].append(cjk[int(rng.integers(len(cjk)))][:2])
        folded = "".join(read[int(rng.integers(len(read)))])
        at = int(rng.integers(len(folded) - 1))
        out["two_chars"].append(folded[at:at + 2])
    return out


async def load(gallery: GalleryStorage, stored: list[list[str]], collection_of: list[str]) -> dict[str, float]:
    """Every picture as an image (insert_images), then its text (set_texts): seconds of each."""
    vectors = np.ones((BATCH, DIM), dtype=np.float32)
    ids: list[int] = []
    start = time.perf_counter()
    for first in range(0, len(stored), BATCH):
        batch = [NewImage(collection=collection_of[n], label="", description="", sha256=f"{n:064x}", width=1,
                          height=1, file=f"{n % 256:02x}/{n:064x}.jpg")
                 for n in range(first, min(first + BATCH, len(stored)))]
        ids += [held.id for held, _ in await gallery.insert_images(batch, vectors[:len(batch)], MODEL)]
    inserted = time.perf_counter()
    for first in range(0, len(stored), BATCH):
        await gallery.set_texts([(ids[n], picture_text(stored[n])) for n in range(first, min(first + BATCH,
                                                                                             len(stored)))])
    done = time.perf_counter()
    assert ids == list(range(1, len(stored) + 1)), "a fresh gallery numbers its images from 1"
    return {"insert_images_s": round(inserted - start, 2), "set_texts_s": round(done - inserted, 2),
            "texts_per_s": round(len(stored) / (done - inserted))}


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)


async def measure(gallery: GalleryStorage, asked: dict[str, list[str]],
                  expected: Callable[[str], list[int]]) -> dict[str, Any]:
    """p50 and p95 of ``text_search`` per kind of query, the mean number of hits, and whether every
    answer was the scan's."""
    out: dict[str, Any] = {}
    right = True
    for kind, folded in asked.items():
        for warm in folded[:3]:
            await gallery.text_search(SEARCHED, warm)
        seconds, hits = [], []
        for q in folded:
            start = time.perf_counter()
            found = await gallery.text_search(SEARCHED, q)
            seconds.append(time.perf_counter() - start)
            hits.append(len(found))
            right = right and found == expected(q)
        out[kind] = {"p50_ms": _ms(seconds, 0.5), "p95_ms": _ms(seconds, 0.95),
                     "mean_hits": round(float(np.mean(hits)))}
    out["answers_match_a_scan"] = right
    return out


async def _run(n: int, count: int, data_dir: Path, url: str) -> dict[str, Any]:
    from core.storage.postgres import PostgresGallery
    from core.storage.sqlite import SqliteGallery

    rng = np.random.default_rng(7)
    words, weights = vocabulary(rng, 5_000, 800)
    stored = texts(rng, n, words, weights)
    collection_of = [COLLECTIONS[c] for c in rng.choice(3, size=n, p=[0.85, 0.10, 0.05])]
    asked = queries(rng, count, stored, words, weights)
    searched = [(n + 1, "".join(t)) for n, t in enumerate(stored) if collection_of[n] in SEARCHED]

    def expected(q: str) -> list[int]:
        return [image_id for image_id, folded in searched if q in folded]

    result: dict[str, Any] = {"images": n, "queries_per_kind": count,
                              "mean_folded_chars": round(float(np.mean([len("".join(t)) for t in stored])))}
    for name, gallery in (("sqlite", SqliteGallery(data_dir)), ("postgres", PostgresGallery(url))):
        await gallery.open()
        try:
            loaded = await load(gallery, stored, collection_of)
            result[name] = {"load": loaded, **await measure(gallery, asked, expected)}
        finally:
            await gallery.close()
    return result


def run(*, smoke: bool) -> dict[str, Any]:
    n, count = (2_000, 30) if smoke else (100_000, 200)
    tmp = Path(tempfile.mkdtemp(prefix="clipbot-bench-text-"))
    try:
        with bench_database(tmp) as url:
            result = asyncio.run(_run(n, count, tmp / "sqlite", url))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["targets_met"] = {
        f"{backend} p50 <= {TARGET_P50_MS:g} ms (every kind)":
            max(result[backend][kind]["p50_ms"] for kind in KINDS) <= TARGET_P50_MS
        for backend in ("sqlite", "postgres")
    }
    return result


def main(argv: list[str] | None = None) -> int:
    return standalone(run, __doc__, argv, smoke_help="2k images")


if __name__ == "__main__":
    raise SystemExit(main())
