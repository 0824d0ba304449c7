"""Repost alerts (core.chat.reposts): fingerprints of real photos through the real engine and the tiny
CLIP, a SQLite gallery in tmp_path, an injected clock; and the low-priority background worker."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.chat.reposts import Repost, RepostWatcher, alert_text
from core.gallery.engine import Engine
from core.media.phash import hash_distance, perceptual_hash
from core.models.batching import MicroBatcher
from core.models.clip import ClipEncoder
from core.models.inference import InferenceRunner
from core.storage.base import Sighting
from tests.conftest import recompressed

MAY_3 = datetime(2024, 5, 3, 12, tzinfo=timezone.utc).timestamp()
DAY = 86400.0
CHAT = "telegram:-100123"
OTHER_CHAT = "telegram:-100456"
ANN = "telegram:11"
BOB = "telegram:22"


class Clock:
    def __init__(self, now: float = MAY_3) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def cosine(engine: Engine, a: bytes, b: bytes) -> float:
    va, vb = await engine.image_vector(a), await engine.image_vector(b)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


async def between(engine: Engine, same: tuple[bytes, bytes], different: tuple[bytes, bytes]) -> float:
    """A threshold that the tiny random CLIP's cosines put between a re-encoded copy and another
    picture (random weights make every photo look alike, near 0.98; a copy is nearer still)."""
    near, far = await cosine(engine, *same), await cosine(engine, *different)
    assert near > far, (near, far)
    return (near + far) / 2


async def post(watcher: RepostWatcher, image: bytes, message_id: str, *, chat: str = CHAT, author: str = ANN,
               name: str = "Ann", link: str | None = None) -> Repost | None:
    return await watcher.check(chat, image, message_id=message_id, author=author, author_name=name, link=link)


# -- the check ------------------------------------------------------------------------------------


async def test_a_reencoded_resized_repost_names_the_first_poster_and_date(
        engine: Engine, photos: dict[str, Path]) -> None:
    rocket, copy, coffee = photos["rocket"].read_bytes(), recompressed(photos["rocket"]), photos["coffee"].read_bytes()
    clock = Clock()
    watcher = RepostWatcher(engine, threshold=await between(engine, (rocket, copy), (rocket, coffee)), clock=clock)
    assert await post(watcher, rocket, "1", name="Ann", link="https://t.me/c/100123/1") is None  # new
    clock.now += 2 * DAY
    assert await post(watcher, coffee, "2", author=BOB, name="Bob") is None  # a different picture
    clock.now += DAY
    repost = await post(watcher, copy, "3", author=BOB, name="Bob")
    assert repost is not None
    assert (repost.earlier.message_id, repost.earlier.author, repost.earlier.posted_at) == ("1", ANN, MAY_3)
    assert repost.by_hash and repost.distance <= 4 and repost.similarity > 0.99
    assert alert_text(repost.earlier, clock.now) == "Seen before: posted by Ann on 3 May \u2014 https://t.me/c/100123/1"
    assert await engine.count_sightings(CHAT) == 3  # every image is recorded, reposts too
    [latest, *_] = await engine.sightings(CHAT, since=0)
    assert (latest.message_id, latest.author_name, latest.posted_at, latest.model_id) == \
        ("3", "Bob", MAY_3 + 3 * DAY, engine.model_id)
    assert latest.phash == perceptual_hash((await engine.decode(copy)).image)
    assert latest.vector.tobytes() == np.asarray(await engine.image_vector(copy), np.float32).tobytes()


async def test_an_exact_reupload_matches_by_hash_with_the_vectors_off(engine: Engine, photos: dict[str, Path]) -> None:
    clock = Clock()
    watcher = RepostWatcher(engine, threshold=1.01, clock=clock)
    data = photos["chelsea"].read_bytes()
    assert await post(watcher, data, "1") is None
    assert await post(watcher, photos["coffee"].read_bytes(), "2") is None
    clock.now += 60
    repost = await post(watcher, data, "3", author=BOB)
    assert repost is not None and repost.by_hash and repost.distance == 0
    assert repost.earlier.message_id == "1"


async def test_the_vectors_alone_find_a_near_duplicate(engine: Engine, photos: dict[str, Path]) -> None:
    astronaut, copy = photos["astronaut"].read_bytes(), recompressed(photos["astronaut"], scale=0.5, quality=60)
    coffee = photos["coffee"].read_bytes()
    threshold = await between(engine, (astronaut, copy), (astronaut, coffee))
    watcher = RepostWatcher(engine, threshold=threshold, hash_distance=-1, clock=Clock())  # the hash never matches
    assert await post(watcher, astronaut, "1") is None
    assert await post(watcher, coffee, "2") is None
    repost = await post(watcher, copy, "3")
    assert repost is not None and not repost.by_hash and repost.similarity >= threshold
    assert repost.earlier.message_id == "1"


async def test_the_earliest_match_is_named_and_a_message_counts_once(engine: Engine, photos: dict[str, Path]) -> None:
    clock = Clock()
    watcher = RepostWatcher(engine, threshold=1.01, alert_interval_s=0, clock=clock)
    data = photos["china"].read_bytes()
    assert await post(watcher, data, "1", name="Ann") is None
    clock.now += DAY
    first = await post(watcher, data, "2", author=BOB, name="Bob")
    clock.now += DAY
    second = await post(watcher, data, "3", author="telegram:33", name="Cy")
    assert first is not None and second is not None
    assert first.earlier.message_id == second.earlier.message_id == "1"  # the original, not the last repost
    assert await post(watcher, data, "3", author="telegram:33", name="Cy") is None  # the same message again
    assert await engine.count_sightings(CHAT) == 3


async def test_sightings_expire_after_the_retention_and_purge_removes_them(
        engine: Engine, photos: dict[str, Path]) -> None:
    clock = Clock()
    watcher = RepostWatcher(engine, threshold=1.01, retention_s=10 * DAY, clock=clock)
    data = photos["flower"].read_bytes()
    assert await post(watcher, data, "1") is None
    clock.now += 10 * DAY + 1  # the first is past the retention: not a repost any more
    assert await post(watcher, data, "2", author=BOB) is None
    assert await engine.count_sightings(CHAT) == 2
    assert await watcher.purge() == 1
    assert [s.message_id for s in await engine.sightings(CHAT, since=0)] == ["2"]
    clock.now += 1
    assert await post(watcher, data, "3") is not None  # within the retention of the second
    assert await watcher.purge() == 0


async def test_the_sweep_purges_sightings_past_the_retention(engine: Engine, photos: dict[str, Path],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """The engine is built with the retention (bot.composition passes CLIPBOT_REPOST_RETENTION_DAYS to
    both); the watcher never sets it, and says so when it would look back further than the sweep keeps."""
    data = photos["retina"].read_bytes()
    days = engine.sighting_retention_s / DAY
    assert days == 90  # the engine's default, as the setting's
    old = RepostWatcher(engine, retention_s=engine.sighting_retention_s,
                        clock=lambda: datetime.now(timezone.utc).timestamp() - (days + 1) * DAY)
    await post(old, data, "1")
    recent = RepostWatcher(engine, clock=lambda: datetime.now(timezone.utc).timestamp() - DAY)
    await post(recent, data, "2")
    await engine.sweep()
    assert [s.message_id for s in await engine.sightings(CHAT, since=0)] == ["2"]
    with caplog.at_level(logging.WARNING, logger="core.chat.reposts"):
        RepostWatcher(engine, retention_s=(days + 10) * DAY)
    assert engine.sighting_retention_s == 90 * DAY and "keeps fingerprints 90 days" in caplog.text


async def test_alerts_are_rate_limited_per_chat(engine: Engine, photos: dict[str, Path],
                                                caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    watcher = RepostWatcher(engine, threshold=1.01, alert_interval_s=30, clock=clock)
    rocket, coffee = photos["rocket"].read_bytes(), photos["coffee"].read_bytes()
    for chat in (CHAT, OTHER_CHAT):
        assert await post(watcher, rocket, "1", chat=chat) is None
        assert await post(watcher, coffee, "2", chat=chat) is None
    clock.now += 1
    assert await post(watcher, rocket, "3") is not None
    clock.now += 10
    with caplog.at_level(logging.INFO, logger="core.chat.reposts"):
        assert await post(watcher, coffee, "4") is None  # a repost, 10 s after the last alert: suppressed
    assert "not announced (one alert per 30s)" in caplog.text
    assert await post(watcher, rocket, "3", chat=OTHER_CHAT) is not None  # the other chat has its own interval
    clock.now += 20  # 30 s after the first alert
    assert await post(watcher, coffee, "5") is not None
    assert await engine.count_sightings(CHAT) == 5  # a suppressed alert's image is recorded all the same


async def test_forget_removes_only_that_authors_sightings_in_that_chat(engine: Engine,
                                                                       photos: dict[str, Path]) -> None:
    watcher = RepostWatcher(engine, clock=Clock())
    for n, (chat, author) in enumerate(((CHAT, ANN), (CHAT, BOB), (CHAT, ANN), (OTHER_CHAT, ANN))):
        await post(watcher, photos[["rocket", "coffee", "chelsea", "astronaut"][n]].read_bytes(), str(n),
                   chat=chat, author=author)
    assert await watcher.forget(CHAT, ANN) == 2
    assert [s.author for s in await engine.sightings(CHAT, since=0)] == [BOB]
    assert [s.author for s in await engine.sightings(OTHER_CHAT, since=0)] == [ANN]
    assert await watcher.forget(CHAT, ANN) == 0


async def test_an_unreadable_image_is_refused_and_not_recorded(engine: Engine) -> None:
    from core.errors import ImageError

    watcher = RepostWatcher(engine, clock=Clock())
    with pytest.raises(ImageError):
        await post(watcher, b"not an image", "1")
    assert await engine.count_sightings() == 0


def test_alert_text() -> None:
    def seen(**kw: object) -> Sighting:
        fields: dict[str, object] = {"chat": CHAT, "message_id": "1", "author": ANN, "author_name": "Ann",
                                     "posted_at": MAY_3, "phash": 0, "vector": np.zeros(2, np.float32)}
        fields.update(kw)
        return Sighting(**fields)  # type: ignore[arg-type]

    assert alert_text(seen(), MAY_3 + 5 * DAY) == "Seen before: posted by Ann on 3 May"
    assert alert_text(seen(), MAY_3 + 365 * DAY) == "Seen before: posted by Ann on 3 May 2024"  # another year
    assert alert_text(seen(link="https://discord.com/channels/1/2/3"), MAY_3) == \
        "Seen before: posted by Ann on 3 May \u2014 https://discord.com/channels/1/2/3"
    assert alert_text(seen(author_name="  Ann\n\u202eBob\x00  "), MAY_3) == "Seen before: posted by Ann Bob on 3 May"
    assert alert_text(seen(author_name="A" * 100), MAY_3) == f"Seen before: posted by {'A' * 39}\u2026 on 3 May"
    assert alert_text(seen(author_name=""), MAY_3) == "Seen before: posted by someone on 3 May"


def test_the_hash_tells_copies_from_other_pictures(photos: dict[str, Path]) -> None:
    from core.media.images import decode_image

    hashes = {name: perceptual_hash(decode_image(path, min_side=448).image) for name, path in photos.items()}
    for name, path in photos.items():
        copy = perceptual_hash(decode_image(recompressed(path, scale=0.4, quality=50), min_side=448).image)
        assert hash_distance(hashes[name], copy) <= 4, name
        assert 0 <= hashes[name] < 2**64
    names = list(hashes)
    assert min(hash_distance(hashes[a], hashes[b]) for n, a in enumerate(names) for b in names[n + 1:]) > 12


# -- the background worker ------------------------------------------------------------------------


class Alerts:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, text: str) -> None:
        self.texts.append(text)


def downloader(data: bytes, calls: list[str], name: str) -> Callable[[], Awaitable[bytes]]:
    async def download() -> bytes:
        calls.append(name)
        return data

    return download


async def test_submit_returns_at_once_and_the_worker_waits_while_the_model_is_busy(
        engine: Engine, photos: dict[str, Path]) -> None:
    assert not engine.encoder_busy  # a plain runner has no queue: never busy
    busy = [True]
    watcher = RepostWatcher(engine, threshold=1.01, clock=Clock(), busy=lambda: busy[0], idle_poll_s=0.005)
    alerts, calls = Alerts(), []
    data = photos["rocket"].read_bytes()
    try:
        watcher.submit(CHAT, downloader(data, calls, "a"), message_id="1", author=ANN, author_name="Ann",
                       on_alert=alerts)
        watcher.submit(CHAT, data, message_id="2", author=BOB, author_name="Bob", link="https://t.me/x/2",
                       posted_at=MAY_3 + 60, on_alert=alerts)
        assert watcher.pending == 2  # nothing ran: submit only queues
        await asyncio.sleep(0.1)
        assert (calls, watcher.pending, await engine.count_sightings()) == ([], 2, 0)  # still busy: waits
        busy[0] = False
        await asyncio.wait_for(watcher.join(), 60)
        assert calls == ["a"] and watcher.pending == 0
        assert alerts.texts == ["Seen before: posted by Ann on 3 May"]
        assert [(s.message_id, s.posted_at, s.link) for s in await engine.sightings(CHAT, since=0)] == \
            [("2", MAY_3 + 60, "https://t.me/x/2"), ("1", MAY_3, None)]  # the message's time, when given
    finally:
        await watcher.aclose()


async def test_a_full_queue_drops_its_oldest_check(engine: Engine, photos: dict[str, Path],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    busy = [True]
    watcher = RepostWatcher(engine, clock=Clock(), busy=lambda: busy[0], max_queue=3, idle_poll_s=0.005)
    calls: list[str] = []
    data = photos["coffee"].read_bytes()
    try:
        with caplog.at_level(logging.WARNING, logger="core.chat.reposts"):
            for n in range(5):
                watcher.submit(CHAT, downloader(data, calls, str(n)), message_id=str(n), author=ANN,
                               author_name="Ann", on_alert=Alerts())
        assert (watcher.pending, watcher.dropped) == (3, 2)
        assert "queue full (3): dropped the check of message 0" in caplog.text
        assert "dropped the check of message 1" in caplog.text
        busy[0] = False
        await asyncio.wait_for(watcher.join(), 60)
        assert calls == ["2", "3", "4"]
    finally:
        await watcher.aclose()


async def test_errors_are_logged_and_the_worker_goes_on(engine: Engine, photos: dict[str, Path],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    watcher = RepostWatcher(engine, threshold=1.01, clock=Clock())
    alerts = Alerts()
    data = photos["hubble"].read_bytes()

    async def broken() -> bytes:
        raise ConnectionError("the platform hung up")

    async def failing_alert(text: str) -> None:
        raise RuntimeError("cannot send")

    try:
        with caplog.at_level(logging.INFO, logger="core.chat.reposts"):
            watcher.submit(CHAT, broken, message_id="1", author=ANN, author_name="Ann", on_alert=alerts)
            watcher.submit(CHAT, b"not an image", message_id="2", author=ANN, author_name="Ann", on_alert=alerts)
            watcher.submit(CHAT, data, message_id="3", author=ANN, author_name="Ann", on_alert=alerts)
            watcher.submit(CHAT, data, message_id="4", author=BOB, author_name="Bob", on_alert=failing_alert)
            watcher.submit(OTHER_CHAT, data, message_id="5", author=BOB, author_name="Bob", on_alert=alerts)
            watcher.submit(OTHER_CHAT, data, message_id="6", author=ANN, author_name="Ann", on_alert=alerts)
            await asyncio.wait_for(watcher.join(), 60)
        assert "repost check of message 1 in telegram:-100123 failed" in caplog.text
        assert "ConnectionError: the platform hung up" in caplog.text
        assert "repost check of message 2 in telegram:-100123 skipped" in caplog.text
        assert "repost check of message 4 in telegram:-100123 failed" in caplog.text  # the alert could not go
        assert alerts.texts == ["Seen before: posted by Bob on 3 May"]  # the last one, in the other chat
        assert await engine.count_sightings() == 4
    finally:
        await watcher.aclose()


async def test_a_chat_that_stopped_watching_is_not_recorded_and_aclose_stops(
        engine: Engine, photos: dict[str, Path]) -> None:
    watched = {CHAT: False}

    async def is_watched(chat: str) -> bool:
        return watched.get(chat, False)

    watcher = RepostWatcher(engine, clock=Clock(), is_watched=is_watched)
    calls: list[str] = []
    watcher.submit(CHAT, downloader(photos["rocket"].read_bytes(), calls, "1"), message_id="1", author=ANN,
                   author_name="Ann", on_alert=Alerts())
    await asyncio.wait_for(watcher.join(), 60)
    assert calls == [] and await engine.count_sightings() == 0  # not even downloaded
    await watcher.aclose()
    await watcher.aclose()  # twice: harmless
    watched[CHAT] = True
    watcher.submit(CHAT, downloader(photos["rocket"].read_bytes(), calls, "2"), message_id="2", author=ANN,
                   author_name="Ann", on_alert=Alerts())
    assert watcher.pending == 0  # closed: nothing queued
    await asyncio.sleep(0.05)
    assert calls == []


async def test_the_micro_batcher_says_when_it_is_busy(encoder: ClipEncoder) -> None:
    batcher = MicroBatcher(InferenceRunner(encoder), max_wait_ms=20)
    await batcher.start()
    try:
        assert not batcher.busy
        task = asyncio.create_task(batcher.encode_texts(["a cat"]))
        await asyncio.sleep(0)
        assert batcher.busy  # queued, then encoding
        await task
        assert not batcher.busy
        failing = asyncio.create_task(batcher.encode_pixels(np.zeros((1, 2), np.float32)))  # wrong shape
        with pytest.raises(Exception):  # noqa: B017 - whatever the model says
            await failing
        assert not batcher.busy
    finally:
        await batcher.aclose()


async def test_the_chat_engine_reports_its_batcher_busy_and_the_watcher_waits_for_it(
        gallery: Engine, photos: dict[str, Path]) -> None:
    assert not gallery.encoder_busy
    decoded = await gallery.decode(photos["chelsea"].read_bytes())
    encoding = asyncio.create_task(gallery.encode_decoded(decoded))
    seen_busy = False
    while not encoding.done():
        seen_busy = seen_busy or gallery.encoder_busy
        await asyncio.sleep(0)
    await encoding
    assert seen_busy and not gallery.encoder_busy

    watcher = RepostWatcher(gallery, threshold=1.01, clock=Clock())
    alerts = Alerts()
    try:
        for n in range(2):
            watcher.submit(CHAT, photos["chelsea"].read_bytes(), message_id=str(n), author=ANN, author_name="Ann",
                           on_alert=alerts)
        await asyncio.wait_for(watcher.join(), 60)
        assert alerts.texts == ["Seen before: posted by Ann on 3 May"]
    finally:
        await watcher.aclose()


# -- videos and animations: every sampled frame is a fingerprint ------------------------------------


def gif(names: list[str], photos: dict[str, Path], size: tuple[int, int] = (240, 160)) -> bytes:
    """An animated GIF showing each photo for a second."""
    frames = [Image.open(photos[n]).convert("RGB").resize(size, Image.Resampling.LANCZOS) for n in names]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], loop=0, duration=[1000] * len(frames))
    return buf.getvalue()


async def test_a_clip_reposted_from_another_moment_is_caught_an_unrelated_one_is_not(
        engine: Engine, photos: dict[str, Path]) -> None:
    clock = Clock()
    # The hash alone (the tiny random CLIP finds every photo alike): a frame matches the same frame.
    watcher = RepostWatcher(engine, threshold=1.01, alert_interval_s=0, clock=clock)
    first = gif(["astronaut", "coffee", "chelsea", "rocket"], photos)  # A-B-C-D
    assert await post(watcher, first, "1", name="Ann") is None
    stored = await engine.sightings(CHAT, since=0)
    assert len(stored) >= 4 and {s.message_id for s in stored} == {"1"}  # a fingerprint per frame
    clock.now += DAY
    unrelated = gif(["hubble", "retina", "grace_hopper"], photos)
    assert await post(watcher, unrelated, "2", author=BOB, name="Bob") is None
    clock.now += DAY
    later = gif(["chelsea", "rocket", "motorcycle"], photos)  # C-D-E: a different moment of the clip
    repost = await post(watcher, later, "3", author=BOB, name="Bob")
    assert repost is not None and repost.by_hash  # one answer for the message, however many frames match
    assert (repost.earlier.message_id, repost.earlier.author_name) == ("1", "Ann")
    assert await post(watcher, later, "3", author=BOB, name="Bob") is None  # delivered twice: not again
    assert await post(watcher, later, "4", author=ANN, name="Ann") is not None  # reposted again: named again
    clock.now += DAY
    watcher.hash_distance = 0  # a still of one frame (as the GIF showed it) matches that frame
    buf = io.BytesIO()
    Image.open(io.BytesIO(unrelated)).convert("RGB").save(buf, "PNG")  # the GIF's first frame, as a PNG
    found = await post(watcher, buf.getvalue(), "5")
    assert found is not None and found.earlier.message_id == "2"
