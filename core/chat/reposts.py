"""Repost alerts: in a chat that watches (``/watch on``, core.chat.switches), every posted image is
fingerprinted, and one seen there before gets a short alert, "Seen before: posted by Ann on 3 May".

A fingerprint (:class:`Sighting`) is the image's CLIP vector and 64-bit perceptual hash
(core.media.phash) with the message, its author and the time; the image itself is not kept. A new image
matches an earlier one of the same chat, within the retention, when the hashes are at most
``hash_distance`` bits apart (a re-upload, a re-encoded or resized copy) or the vectors' cosine
is at least ``threshold`` (a near duplicate: cropped, edited, screenshotted). Of the matches the
earliest is named: the picture's first poster, not the last one to repost it.

A video or animation is fingerprinted frame by frame (the frames core.media.clips samples), one
sighting per frame, and matches when any of its frames matches any earlier frame or picture: a
re-post that starts at another moment of the clip is caught too. The database finds the
candidates (:meth:`RepostEngine.matching_sightings`, searched in the backend: a busy chat's
100,000 fingerprints are never read whole); :meth:`RepostWatcher.match` decides among them.

Alerts are rate-limited per chat through the gallery's state store (shared by every process);
a suppressed alert is logged, not sent. Checks run on one background worker
(:meth:`RepostWatcher.submit`) that waits while the model has foreground requests pending, so a
check never delays a reply; chat handlers call ``submit`` and return.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any, Protocol, TypeVar

import numpy as np

from core.errors import ImageError, StorageUnavailableError
from core.media.clips import DecodedMedia
from core.media.images import DecodedImage
from core.media.phash import hash_distances, perceptual_hash
from core.storage.base import Sighting
from core.storage.state import StateStore
from core.text import clean_text, shorten

__all__ = ["Repost", "RepostEngine", "RepostWatcher", "Sighting", "alert_text"]
log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_THRESHOLD = 0.95
DEFAULT_HASH_DISTANCE = 4
DEFAULT_RETENTION_S = 90 * 86400.0
DEFAULT_ALERT_INTERVAL_S = 30.0
QUEUE_SIZE = 256
ALERT_KIND = "repost-alert"  # state: chat -> when its last alert went out (unix seconds)
NAME_CHARS = 40
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")

Downloader = Callable[[], Awaitable[bytes]]
AlertSender = Callable[[str], Awaitable[None]]


class RepostEngine(Protocol):
    """What the watcher uses of :class:`core.gallery.engine.Engine` (which is one)."""

    @property
    def sighting_retention_s(self) -> float: ...

    @property
    def model_id(self) -> str: ...

    @property
    def encoder_busy(self) -> bool: ...

    @property
    def state(self) -> StateStore: ...

    async def decode_media(self, source: bytes) -> DecodedMedia: ...

    async def frame_vectors(self, media: DecodedMedia) -> np.ndarray: ...

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T: ...

    async def encode_decoded(self, decoded: DecodedImage) -> np.ndarray: ...

    async def add_sighting(self, sighting: Sighting) -> None: ...

    async def sightings(self, chat: str, *, since: float) -> list[Sighting]: ...

    async def matching_sightings(self, chat: str, *, since: float, phashes: Sequence[int], vectors: np.ndarray,
                                 hash_distance: int, threshold: float, message_id: str) -> list[Sighting]: ...

    async def forget_sightings(self, chat: str, author: str) -> int: ...

    async def purge_sightings(self, before: float) -> int: ...


@dataclass(frozen=True)
class Fingerprints:
    """A posted image's fingerprint, or a video's or animation's, one per sampled frame (in time
    order): perceptual hashes and the rows of ``vectors``."""

    phashes: tuple[int, ...]
    vectors: np.ndarray  # (frames, dim) float32


@dataclass(frozen=True)
class Repost:
    """A new image's match: the earlier sighting to name, and how close the two are."""

    earlier: Sighting
    similarity: float  # cosine of the two vectors
    distance: int  # perceptual-hash bits that differ
    by_hash: bool  # matched by the hash (a re-upload or re-encoded copy), else by the vectors


def alert_text(earlier: Sighting, now: float, *, tz: tzinfo = timezone.utc) -> str:
    """"Seen before: posted by Ann on 3 May" (the year too when it is not ``now``'s), then
    " — <link>" when the earlier message has one. Dates in ``tz`` (UTC by default)."""
    when = datetime.fromtimestamp(earlier.posted_at, tz)
    date = f"{when.day} {MONTHS[when.month - 1]}"
    if when.year != datetime.fromtimestamp(now, tz).year:
        date += f" {when.year}"
    name = shorten(clean_text(earlier.author_name), NAME_CHARS) or "someone"
    text = f"Seen before: posted by {name} on {date}"
    link = clean_text(earlier.link or "")
    return f"{text} \u2014 {link}" if link else text


@dataclass(frozen=True)
class _Job:
    chat: str
    image: bytes | Downloader
    message_id: str
    author: str
    author_name: str
    link: str | None
    posted_at: float | None
    on_alert: AlertSender


class RepostWatcher:
    """Fingerprints posted images and finds reposts; see the module's description.

    ``threshold``: the cosine from which two images are the same picture (above 1: never, leaving
    the hash); ``hash_distance``: the most hash bits that may differ (below 0: the hash never
    matches); ``retention_s``: how long fingerprints count, and are kept (the engine's sweep purges
    older ones with the same retention); ``alert_interval_s``: at most one alert per chat this
    often (0: no limit). ``busy`` says whether foreground work is pending (default: the engine's
    micro-batcher); ``is_watched``, when given, is asked before a queued check runs, so a chat
    that turned watching off meanwhile is not recorded.
    """

    def __init__(self, engine: RepostEngine, *, threshold: float = DEFAULT_THRESHOLD,
                 hash_distance: int = DEFAULT_HASH_DISTANCE, retention_s: float = DEFAULT_RETENTION_S,
                 alert_interval_s: float = DEFAULT_ALERT_INTERVAL_S, clock: Callable[[], float] = time.time,
                 state: StateStore | None = None, busy: Callable[[], bool] | None = None,
                 is_watched: Callable[[str], Awaitable[bool]] | None = None, max_queue: int = QUEUE_SIZE,
                 idle_poll_s: float = 0.02, job_timeout_s: float = 120.0) -> None:
        self.engine = engine
        self.threshold = threshold
        self.hash_distance = hash_distance
        self.retention_s = retention_s
        self.alert_interval_s = alert_interval_s
        self.clock = clock
        self.state = state if state is not None else engine.state
        self._busy = busy if busy is not None else (lambda: engine.encoder_busy)
        self._is_watched = is_watched
        self.max_queue = max(1, max_queue)
        self.idle_poll_s = max(0.001, idle_poll_s)
        self.job_timeout_s = job_timeout_s
        self._jobs: collections.deque[_Job] = collections.deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.dropped = 0  # checks dropped from a full queue: observable by tests and stats
        if engine.sighting_retention_s < retention_s:  # the sweep would purge what checks still look at
            log.warning("repost checks look back %.0f days, but the gallery keeps fingerprints %.0f days",
                        retention_s / 86400, engine.sighting_retention_s / 86400)

    # -- the check ----------------------------------------------------------------------------------

    async def check(self, chat: str, image: bytes, *, message_id: str, author: str, author_name: str,
                    link: str | None, posted_at: float | None = None) -> Repost | None:
        """Fingerprint ``image`` (a picture, or each sampled frame of a video or animation), posted in
        ``chat`` (at ``posted_at``, default now), record it, and return the earlier sighting to
        alert about: None when it is new, or when the chat's alert interval suppresses it. A
        message already recorded with this picture (delivered twice) is neither recorded again
        nor announced. However many frames match, a message gets one answer.

        Image errors (not an image, too large) propagate: nothing is recorded then.
        """
        now = self.clock()
        when = now if posted_at is None else posted_at
        prints = await self.fingerprints(image)
        candidates = await self.engine.matching_sightings(
            chat, since=now - self.retention_s, phashes=prints.phashes, vectors=prints.vectors,
            hash_distance=self.hash_distance, threshold=self.threshold, message_id=message_id)
        if any(s.message_id == message_id and s.phash in prints.phashes for s in candidates):
            log.debug("message %s in %s was checked already", message_id, chat)  # delivered twice
            return None
        repost = self.match(candidates, prints.phashes, prints.vectors)
        for phash, vector in zip(prints.phashes, prints.vectors, strict=True):  # in time order
            await self.engine.add_sighting(Sighting(
                chat=chat, message_id=message_id, author=author, author_name=author_name, posted_at=when,
                phash=phash, vector=vector, model_id=self.engine.model_id, link=link,
            ))
        if repost is None:
            return None
        if not await self._may_alert(chat, now):
            log.info("repost in %s not announced (one alert per %gs): message %s repeats %s's message %s "
                     "(cosine %.3f, hash distance %d)", chat, self.alert_interval_s, message_id,
                     repost.earlier.author, repost.earlier.message_id, repost.similarity, repost.distance)
            return None
        return repost

    async def fingerprints(self, image: bytes) -> Fingerprints:
        """``image``'s fingerprint: a picture's one, or one per sampled frame of a video or animation
        (frames whose hash an earlier frame has already are left out: a still scene is one print)."""
        media = await self.engine.decode_media(image)
        if media.still is not None:  # as engine.decode and adding a picture see it
            phash = await self.engine.blocking(perceptual_hash, media.still.image)
            vector = np.asarray(await self.engine.encode_decoded(media.still), dtype=np.float32).reshape(1, -1)
            return Fingerprints((phash,), vector)
        vectors = np.asarray(await self.engine.frame_vectors(media), dtype=np.float32)
        phashes = await self.engine.blocking(lambda: [perceptual_hash(frame) for frame in media.frames])
        first = list(dict.fromkeys(phashes).keys())
        keep = [phashes.index(p) for p in first]
        return Fingerprints(tuple(first), vectors[keep].reshape(len(keep), -1))

    def match(self, earlier: Sequence[Sighting], phash: int | Sequence[int], vector: np.ndarray) -> Repost | None:
        """The earliest of ``earlier`` (newest first) that the hash or the vector matches, if any.

        ``phash`` and ``vector`` may be a video's, one per frame (a sequence, and a row each): a
        sighting matches when any frame does; its distance is the nearest frame's, its
        similarity the most similar one's."""
        if not earlier:
            return None
        hashes = [phash] if isinstance(phash, int) else list(phash)
        queries = np.asarray(vector, dtype=np.float32)
        queries = queries.reshape(1, -1) if queries.ndim == 1 else queries
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        similarities = np.full(len(earlier), -1.0, dtype=np.float32)
        alike = [n for n, s in enumerate(earlier) if s.vector.size == queries.shape[1]]
        if alike and len(queries):
            matrix = np.stack([earlier[n].vector for n in alike]).astype(np.float32, copy=False)
            norms = np.maximum(np.linalg.norm(matrix, axis=1), 1e-12)
            similarities[alike] = (matrix @ queries.T).max(axis=1) / norms
        stored = [s.phash for s in earlier]
        distances = np.min([hash_distances(h, stored) for h in hashes], axis=0)
        found = np.flatnonzero((distances <= self.hash_distance) | (similarities >= self.threshold))
        if not found.size:
            return None
        n = int(found[-1])  # newest first: the last is the earliest
        distance = int(distances[n])
        return Repost(earlier[n], float(similarities[n]), distance, distance <= self.hash_distance)

    async def _may_alert(self, chat: str, now: float) -> bool:
        """Whether the chat may get an alert now (and if so, the interval starts again)."""
        if self.alert_interval_s <= 0:
            return True
        allowed: list[bool] = []

        def take(current: str | None) -> tuple[str, float | None]:
            last = float(current) if current else -math.inf
            ok = now - last >= self.alert_interval_s or now < last  # a clock set back: no lock-out
            allowed.append(ok)
            return (repr(now) if ok else current or repr(now)), self.alert_interval_s + 60

        await self.state.update_state(ALERT_KIND, chat, take)
        return allowed[-1]

    async def forget(self, chat: str, author: str) -> int:
        """Delete the fingerprints of what ``author`` posted in ``chat``; returns how many."""
        return await self.engine.forget_sightings(chat, author)

    async def purge(self) -> int:
        """Delete fingerprints older than the retention, in every chat; returns how many."""
        return await self.engine.purge_sightings(self.clock() - self.retention_s)

    # -- the background worker ------------------------------------------------------------------------

    def submit(self, chat: str, image: bytes | Downloader, *, message_id: str, author: str, author_name: str,
               link: str | None = None, posted_at: float | None = None, on_alert: AlertSender) -> None:
        """Queue a check of an image posted in ``chat`` and return at once (call it from the event
        loop). ``image``: its bytes, or a coroutine function that downloads them (called by the
        worker, when it gets to it). ``posted_at``: the message's time (default: when checked).
        ``on_alert`` is awaited with the alert's text for a repost.

        The worker waits while foreground work is pending; a full queue drops its oldest check.
        Errors are logged, never raised here.
        """
        if self._closed:
            log.debug("repost watcher closed: message %s in %s not checked", message_id, chat)
            return
        if len(self._jobs) >= self.max_queue:
            old = self._jobs.popleft()
            self.dropped += 1
            log.warning("repost checks queue full (%d): dropped the check of message %s in %s", self.max_queue,
                        old.message_id, old.chat)
        self._jobs.append(_Job(chat, image, message_id, author, author_name, link, posted_at, on_alert))
        self._drained.clear()
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="clipbot-reposts")

    @property
    def pending(self) -> int:
        """Checks queued, not yet started."""
        return len(self._jobs)

    async def join(self) -> None:
        """Wait until every queued check is done."""
        await self._drained.wait()

    async def aclose(self) -> None:
        """Stop the worker; checks still queued are dropped. Safe to call twice."""
        self._closed = True
        if self._jobs:
            log.info("repost watcher closing: %d queued check(s) dropped", len(self._jobs))
            self._jobs.clear()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._drained.set()

    async def _run(self) -> None:
        while True:
            if not self._jobs:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep(0)  # a reply whose request is on its way goes first
            # Polled: "busy" is a predicate of the batcher (or any callable), which signals nothing.
            while self._busy():  # noqa: ASYNC110
                await asyncio.sleep(self.idle_poll_s)
            if not self._jobs:  # closed meanwhile
                continue
            job = self._jobs.popleft()
            try:
                await asyncio.wait_for(self._handle(job), self.job_timeout_s)
            except asyncio.TimeoutError:
                log.warning("repost check of message %s in %s gave up after %gs", job.message_id, job.chat,
                            self.job_timeout_s)

    async def _handle(self, job: _Job) -> None:
        """One check; logs what goes wrong, raises nothing but cancellation."""
        try:
            if self._is_watched is not None and not await self._is_watched(job.chat):
                return
            data = job.image if isinstance(job.image, bytes) else await job.image()
            repost = await self.check(job.chat, data, message_id=job.message_id, author=job.author,
                                      author_name=job.author_name, link=job.link, posted_at=job.posted_at)
            if repost is not None:
                log.info("repost in %s: message %s repeats %s's message %s (cosine %.3f, hash distance %d)",
                         job.chat, job.message_id, repost.earlier.author, repost.earlier.message_id,
                         repost.similarity, repost.distance)
                await job.on_alert(alert_text(repost.earlier, self.clock()))
        except ImageError as exc:
            log.info("repost check of message %s in %s skipped: %s", job.message_id, job.chat, exc)
        except StorageUnavailableError as exc:
            log.warning("repost check of message %s in %s skipped: %s", job.message_id, job.chat, exc)
        except Exception:
            log.exception("repost check of message %s in %s failed", job.message_id, job.chat)
