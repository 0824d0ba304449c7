"""Honest "weak" and "no match" verdicts, calibrated to each searchable gallery.

What counts as close depends on the model and the gallery (a tuple of collection names), so for
a deterministic sample of its images we measure each one's best cosine against the rest (what a
related photo scores) and its cosine to its own label's text (what a related text scores). Below
the ``weak_percentile`` of those is a weak match, below the ``none_percentile`` no match. Small
galleries keep the caller's fixed weak scores and never say "no match".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from core.errors import StorageUnavailableError
from core.storage.base import GalleryStorage

__all__ = ["CalibrationConfig", "Calibrator", "TextEncoding", "Thresholds", "Verdict", "measure", "thresholds_from"]
log = logging.getLogger(__name__)

Verdict = Literal["good", "weak", "none"]
_Key = tuple[str, tuple[str, ...]]  # (model id, sorted collection names)
_Signature = tuple[int, tuple[tuple[str, int], ...]]  # (vectors of the model, images per collection)
CACHE_SIZE = 512
RETRY_AFTER_S = 30.0  # after a failed measurement, serve what we have this long before trying again
_EMPTY = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class CalibrationConfig:
    weak_percentile: float = 20.0
    none_percentile: float = 5.0
    min_images: int = 20
    sample: int = 256
    max_age_s: float = 3600.0  # recompute at least this often even if the gallery looks unchanged
    # A first search of a gallery waits this long for its measurement, then gets the fixed values
    # while it finishes (a 50,000-image gallery: about 0.7 s on SQLite, 2.6 s on PostgreSQL, on
    # 2 cores; see docs/performance.md); None waits for it.
    first_wait_s: float | None = 2.0
    check_every_s: float = 2.0  # look at the gallery's signature at most this often (two queries)


@dataclass(frozen=True)
class Thresholds:
    """Scores below ``*_weak`` are weak matches, below ``*_none`` no match (``-inf``: never)."""

    image_weak: float
    image_none: float
    text_weak: float
    text_none: float
    calibrated_image: bool
    calibrated_text: bool
    images: int  # how many vectors the gallery had
    texts: int = 0  # how many labelled images the text thresholds were measured on
    min_images: int = 20
    reason: str = ""  # why the fixed values are used, when not for a small gallery

    def verdict(self, score: float, *, kind: Literal["image", "text"]) -> Verdict:
        weak, none = (self.image_weak, self.image_none) if kind == "image" else (self.text_weak, self.text_none)
        if score < none:
            return "none"
        return "weak" if score < weak else "good"

    def describe(self) -> str:
        """Two lines for operators (/stats): where each kind of match turns weak, and why."""
        if self.reason:
            fixed_image = fixed_text = f"fixed: {self.reason}"
        else:
            fixed_image = f"fixed: gallery under {self.min_images} images"
            fixed_text = (fixed_image if self.images < self.min_images
                          else f"fixed: under {max(1, self.min_images // 2)} labelled images")
        lines = []
        for kind, weak, none, how in (
            ("Photo", self.image_weak, self.image_none,
             f"calibrated on {self.images} images" if self.calibrated_image else fixed_image),
            ("Text", self.text_weak, self.text_none,
             f"calibrated on {self.texts} labels" if self.calibrated_text else fixed_text),
        ):
            none_part = f", none below {none:.2f}" if np.isfinite(none) else ""
            lines.append(f"{kind} matches: weak below {weak:.2f}{none_part} ({how})")
        return "\n".join(lines)


def _cuts(scores: np.ndarray, config: CalibrationConfig) -> tuple[float, float]:
    weak, none = np.percentile(np.asarray(scores, dtype=np.float64), [config.weak_percentile, config.none_percentile])
    return float(weak), float(min(none, weak))  # "no match" never sits above "weak"


def thresholds_from(image_scores: np.ndarray, text_scores: np.ndarray, *, images: int, config: CalibrationConfig,
                    fallback_image: float, fallback_text: float) -> Thresholds:
    """Percentile thresholds of measured scores (see :func:`measure`); the fixed fallback (weak
    only, never "no match") for a gallery under ``min_images`` vectors, and for text when fewer
    than ``min_images // 2`` labelled images were measured."""
    image_scores = np.asarray(image_scores, dtype=np.float64).reshape(-1)
    text_scores = np.asarray(text_scores, dtype=np.float64).reshape(-1)
    image_scores, text_scores = image_scores[np.isfinite(image_scores)], text_scores[np.isfinite(text_scores)]
    enough = max(1, min(config.min_images, config.sample))  # a small sample setting is the operator's choice
    image_ok = images >= config.min_images and image_scores.size >= enough
    text_ok = image_ok and text_scores.size >= max(1, enough // 2)
    image_weak, image_none = _cuts(image_scores, config) if image_ok else (fallback_image, -np.inf)
    text_weak, text_none = _cuts(text_scores, config) if text_ok else (fallback_text, -np.inf)
    return Thresholds(image_weak, image_none, text_weak, text_none, image_ok, text_ok, images,
                      texts=int(text_scores.size) if text_ok else 0, min_images=config.min_images)


class TextEncoding(Protocol):
    """All :func:`measure` needs of :class:`core.models.inference.Encoding`."""

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def _spread(ids: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random key per id (splitmix64): every process samples the same images, and a
    growing gallery keeps most of its sample."""
    z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    keys: np.ndarray = z ^ (z >> np.uint64(31))
    return keys


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    unit: np.ndarray = rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)
    return unit


async def measure(gallery: GalleryStorage, runner: TextEncoding, *, model_id: str, collections: Sequence[str],
                  sample: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(sampled images' best cosines against the rest of the gallery, labelled sampled images'
    cosines to their own label's text, how many vectors of ``model_id`` the gallery has).

    The gallery must be prepared for search. The sample: the ``sample`` images with a vector
    whose ids have the smallest :func:`_spread` keys."""
    names = list(dict.fromkeys(c for c in collections if c))
    count = await gallery.count_vectors(model_id, names)
    if count < 2 or sample <= 0:
        return _EMPTY, _EMPTY, count
    ids = np.asarray(await gallery.image_ids(names), dtype=np.int64)
    order = ids[np.lexsort((ids, _spread(ids)))]
    chosen: list[tuple[int, np.ndarray]] = []
    for start in range(0, len(order), sample):  # a few images may have no vector of this model
        chunk = [int(i) for i in order[start:start + sample]]
        vectors = await gallery.vectors_for(chunk, model_id)
        chosen.extend((i, vectors[i]) for i in chunk if i in vectors)
        if len(chosen) >= sample:
            break
    chosen = chosen[:sample]
    best: list[float] = []
    # One batched search for the whole sample: a matrix product in memory, one round trip to a
    # server, where 256 single searches cost 256 scans (seconds at 50,000 images).
    found = await gallery.nearest_many(np.stack([v for _, v in chosen]), model_id=model_id, collections=names,
                                       k=2) if chosen else []
    for (image_id, _), hits in zip(chosen, found, strict=True):
        others = [s for i, s in zip(hits.ids.tolist(), hits.scores.tolist(), strict=True) if i != image_id]
        if others:
            best.append(float(others[0]))
    # Folder labels such as "grace_hopper" are searched for as "grace hopper".
    records = await gallery.get_images([image_id for image_id, _ in chosen])
    labelled = [(text, vector) for image_id, vector in chosen if image_id in records
                if (text := " ".join(records[image_id].label.replace("_", " ").split()))]
    own = _EMPTY
    if labelled:
        texts = _unit(await runner.encode_texts([text for text, _ in labelled]))
        own = np.einsum("ij,ij->i", texts, _unit(np.stack([v for _, v in labelled]))).astype(np.float32)
    return np.asarray(best, dtype=np.float32), own, count


@dataclass
class _Entry:
    thresholds: Thresholds
    signature: _Signature | None  # None: not measured (the storage failed)
    computed_at: float
    checked_at: float
    failed_at: float | None = None


class Calibrator:
    """Thresholds per searchable gallery, cached (LRU, :data:`CACHE_SIZE` entries), recomputed when
    the gallery's signature changes (the model's vector count in those collections, their image
    counts) or after ``max_age_s``. The first computation is awaited (concurrent first requests
    share it); a stale entry is served while one background refresh per gallery runs. Failures are
    logged and answered with the cache, else the fixed fallback: never raised into a request."""

    def __init__(self, gallery: GalleryStorage, runner: TextEncoding, *, model_id: Callable[[], str] | str,
                 config: CalibrationConfig, fallback_image: float, fallback_text: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._gallery, self._runner, self.config = gallery, runner, config
        self._model_id: Callable[[], str] = model_id if callable(model_id) else (lambda: model_id)
        self.fallback_image, self.fallback_text = fallback_image, fallback_text
        self._clock = clock
        self._cache: OrderedDict[_Key, _Entry] = OrderedDict()
        self._tasks: dict[_Key, asyncio.Task[Thresholds]] = {}
        self._closed = False

    def fallback(self, reason: str) -> Thresholds:
        """The caller's fixed weak scores, never "no match"."""
        return Thresholds(self.fallback_image, -np.inf, self.fallback_text, -np.inf, False, False, 0,
                          min_images=self.config.min_images, reason=reason)

    async def thresholds(self, collections: Sequence[str]) -> Thresholds:
        key: _Key = (self._model_id(), tuple(sorted({c for c in collections if c})))
        entry = self._cache.get(key)
        if entry is None:
            if self._closed:
                return self.fallback("calibration stopped")
            task = self._tasks.get(key) or self._start(key)
            # Not shielded: a cancelled request leaves the computation to the others.
            done, _ = await asyncio.wait({task}, timeout=self.config.first_wait_s)
            if not done:
                return self.fallback("still measuring this gallery")
            return self.fallback("calibration stopped") if task.cancelled() else task.result()
        self._cache.move_to_end(key)
        if not self._closed and key not in self._tasks and await self._stale(key, entry) and key not in self._tasks:
            self._start(key)
        return entry.thresholds

    async def wait_refreshes(self) -> None:
        """Wait for the computations running now (tests, orderly shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks.values()))

    async def aclose(self) -> None:
        """Cancel the computations running now; later calls serve the cache or the fallback."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, key: _Key) -> asyncio.Task[Thresholds]:
        task = asyncio.get_running_loop().create_task(self._compute(key), name=f"calibrate {key[1]}")
        self._tasks[key] = task

        def forget(done: asyncio.Task[Thresholds]) -> None:
            if self._tasks.get(key) is done:
                del self._tasks[key]

        task.add_done_callback(forget)
        return task

    async def _signature(self, model_id: str, names: Sequence[str]) -> _Signature:
        vectors = await self._gallery.count_vectors(model_id, list(names))
        counts = await self._gallery.collection_counts()
        return vectors, tuple((name, counts.get(name, 0)) for name in names)

    async def _stale(self, key: _Key, entry: _Entry) -> bool:
        now = self._clock()
        if entry.failed_at is not None and now - entry.failed_at < min(RETRY_AFTER_S, self.config.max_age_s):
            return False
        if now - entry.computed_at >= self.config.max_age_s:
            return True
        if now - entry.checked_at < self.config.check_every_s:
            return False
        entry.checked_at = now
        try:
            return await self._signature(*key) != entry.signature
        except Exception as exc:  # the search will say what is wrong; the cached thresholds still stand
            log.debug("calibration: gallery signature of %s unavailable: %s", key[1], exc)
            return False

    async def _compute(self, key: _Key) -> Thresholds:
        model_id, names = key
        config = self.config
        try:
            signature = await self._signature(model_id, names)
            if signature[0] < config.min_images:  # nothing to measure: the fixed values
                image_scores, text_scores, count = _EMPTY, _EMPTY, signature[0]
            else:
                image_scores, text_scores, count = await measure(
                    self._gallery, self._runner, model_id=model_id, collections=names, sample=config.sample)
            thresholds = thresholds_from(image_scores, text_scores, images=count, config=config,
                                         fallback_image=self.fallback_image, fallback_text=self.fallback_text)
        except Exception as exc:
            if isinstance(exc, StorageUnavailableError):
                log.warning("calibration of %s postponed: %s", names, exc.detail)
            else:
                log.exception("calibration of %s failed", names)
            now = self._clock()
            old = self._cache.get(key)
            if old is not None:
                old.failed_at = now
                return old.thresholds
            reason = "gallery unavailable" if isinstance(exc, StorageUnavailableError) else "calibration failed"
            fallback = self.fallback(reason)
            self._store(key, _Entry(fallback, None, now, now, failed_at=now))
            return fallback
        now = self._clock()
        self._store(key, _Entry(thresholds, signature, now, now))
        log.info("calibrated %s: %s", names, thresholds.describe().replace("\n", "; "))
        return thresholds

    def _store(self, key: _Key, entry: _Entry) -> None:
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
