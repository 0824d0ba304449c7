"""Reliability: bounded labels, replies that fit, limits that hold, storage faults, sweeps, killed writes."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from PIL import Image

from bot.composition import build_chat_engine, build_service
from bot.settings import Settings
from core.chat.context import Chat, Context, User
from core.chat.ratelimit import RateLimiter, SlidingWindow
from core.chat.service import ChatService
from core.chat.texts import CAPTION_BUDGET
from core.errors import StorageUnavailableError
from core.gallery.engine import Engine
from core.gallery.files import TMP_PREFIX, MediaStore
from core.models.clip import ClipEncoder
from core.records import ImageRecord, NewImage
from core.render.previews import make_preview
from core.search.words import SearchResult
from core.storage.sqlite import SqliteGallery
from core.text import TextLimits, clean_text, shorten
from tests.conftest import recompressed


def ctx(chat: str = "100", user: str = "1") -> Context:
    return Context(Chat("telegram", chat, private=False), User("telegram", user, f"user {user}"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingDownload:
    """A photo the service has to fetch; counts how often it was."""

    def __init__(self, data: bytes) -> None:
        self.data, self.calls = data, 0

    async def __call__(self) -> bytes:
        self.calls += 1
        return self.data


@pytest.fixture
async def chat_engine(settings: Settings, encoder: ClipEncoder) -> AsyncIterator[Engine]:
    async with build_chat_engine(settings, encoder) as engine:
        yield engine


@pytest.fixture
def service(chat_engine: Engine, settings: Settings) -> ChatService:
    return build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), chat_engine)


def media_files(engine: Engine) -> list[Path]:
    root = Path(engine.picture_file(""))
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# -- text ---------------------------------------------------------------------------------------


def test_clean_text_strips_controls_and_bidi_overrides() -> None:
    assert clean_text("cat\u202e gnp.exe\x07\x00") == "cat gnp.exe"
    assert clean_text("a\tb\r\nc") == "a b c"
    assert clean_text("line one\n\u2066line two\u2069", multiline=True) == "line one\nline two"
    assert clean_text("\U0001f469\u200d\U0001f4bb ok") == "\U0001f469\u200d\U0001f4bb ok"  # ZWJ emoji survive
    assert shorten("abcdef", 4) == "abc\u2026" and shorten("abc", 4) == "abc"


async def test_long_label_is_refused_before_download_and_nothing_is_stored(
    service: ChatService, chat_engine: Engine, photos: dict[str, Path]
) -> None:
    download = CountingDownload(photos["rocket"].read_bytes())
    reply = await service.add(ctx(), download, "x" * 5000, "fine")
    assert reply is not None and reply.kind == "error"
    assert reply.text == "A label can be at most 200 characters; this one has 5000. Shorten it."
    reply = await service.add(ctx(), download, "rocket", "y" * 1001)
    assert reply is not None and "A description can be at most 1000 characters" in reply.text
    assert download.calls == 0 and await chat_engine.list_images() == [] and media_files(chat_engine) == []


async def test_limits_are_settings_and_cover_clipbot_index(settings: Settings, encoder: ClipEncoder,
                                                           photos: dict[str, Path]) -> None:
    from core.gallery.ingest import IngestItem, ingest

    short = settings.model_copy(update={"max_label_chars": 5})
    async with build_chat_engine(short, encoder) as engine:
        assert engine.text_limits == TextLimits(5, 1000)
        summary = await ingest(engine, [IngestItem(photos["rocket"], "rocket ship"), IngestItem(photos["coffee"],
                                                                                                "cup")],
                               collection="global")
        assert summary.added == 1 and [reason for _, reason in summary.skipped] == [
            "A label can be at most 5 characters; this one has 11. Shorten it."]


async def test_caption_keeps_score_id_and_count_whatever_the_label(service: ChatService,
                                                                   photos: dict[str, Path]) -> None:
    await service.add(ctx(), photos["coffee"].read_bytes(), "\u202e" + "L" * 200, "D" * 1000)
    reply = await service.match(ctx(), recompressed(photos["coffee"]))
    assert reply is not None and reply.kind == "result"
    lines = reply.text.splitlines()
    assert len(reply.text) <= CAPTION_BUDGET
    assert lines[0] == "L" * 200  # the label whole, without its bidi override
    assert lines[1].startswith("DDDD") and lines[1].endswith("\u2026")  # the description gave way
    assert lines[-1].startswith(f"Score: {reply.score:.2f} \u00b7 #{reply.result_id} \u00b7 match 1 of 1")


def test_caption_budget_holds_for_legacy_rows_over_the_limits() -> None:
    from core.chat.texts import result_caption

    huge = SearchResult(id=7, label="L" * 5000, description="D" * 5000, path=None, score=0.5, collection="global")
    text = result_caption(huge, 0, 3, verdict="weak")
    assert len(text) <= CAPTION_BUDGET and text.endswith("Score: 0.50 \u00b7 #7 \u00b7 match 1 of 3")
    assert text.startswith("Weak match") and "\u2026" in text


async def test_list_fits_one_message(service: ChatService, chat_engine: Engine, photos: dict[str, Path]) -> None:
    for name, path in photos.items():
        await service.add(ctx(), path.read_bytes(), (name * 20)[:200], "d" * 1000)
    reply = await service.list(ctx())
    assert reply is not None and len(reply.text) <= 4096 and reply.text.count("\n#") == len(photos)


# -- previews -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(12000, 400), (400, 12000), (30000, 100)])
def test_panorama_previews_obey_telegram_photo_rules(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "pano.png"
    Image.new("RGB", size, "navy").save(path)
    preview = make_preview(path)
    assert preview is not None
    with Image.open(io.BytesIO(preview)) as img:
        w, h = img.size
    assert w + h <= 10000 and max(w, h) <= 20 * min(w, h) and len(preview) <= 10 * 1024 * 1024


# -- limits -------------------------------------------------------------------------------------


async def test_rate_limit_notices_once_per_window_even_with_allowed_requests_between() -> None:
    clock = Clock()
    limiter = RateLimiter(2, clock=clock)  # 2 a minute, burst 2: the window is 60 s
    assert [(await limiter.check("u")).allowed for _ in range(2)] == [True, True]
    assert (await limiter.check("u")).notify is True
    clock.now += 31  # one token back
    assert (await limiter.check("u")).allowed
    denied = await limiter.check("u")
    assert not denied.allowed and denied.notify is False  # the same window: told already
    clock.now += 60
    await limiter.check("u"), await limiter.check("u")
    assert (await limiter.check("u")).notify is True  # a new window, a new notice


async def test_rate_limited_photos_are_never_downloaded(settings: Settings, chat_engine: Engine,
                                                        photos: dict[str, Path]) -> None:
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 1}), chat_engine)
    downloads = [CountingDownload(photos["rocket"].read_bytes()) for _ in range(4)]
    replies = [await service.match(ctx(), d) for d in downloads]
    assert [d.calls for d in downloads] == [1, 0, 0, 0]
    assert replies[1] is not None and replies[1].kind == "rate_limited"
    assert replies[2] is None and replies[3] is None  # told once


async def test_sliding_window_never_lets_more_than_the_limit_into_any_window() -> None:
    window = SlidingWindow(3, 0.3)
    started = time.monotonic()
    times = []
    for _ in range(7):
        await window.acquire()
        times.append(time.monotonic() - started)
    assert all(times[i + 3] - times[i] >= 0.3 - 1e-3 for i in range(len(times) - 3))
    assert times[2] < 0.05  # the first three at once


# -- storage ------------------------------------------------------------------------------------


class FullDiskStore(SqliteGallery):
    """The real gallery whose inserts hit a full disk, as SQLite reports it."""

    async def insert_image(self, image: NewImage, vector: object, model_id: str) -> tuple[int, bool]:  # type: ignore[override]
        await self._fail()
        raise AssertionError("unreachable")

    async def insert_images(self, images: object, vectors: object, model_id: str) -> list[tuple[ImageRecord, bool]]:  # type: ignore[override]
        await self._fail()
        raise AssertionError("unreachable")

    async def _fail(self) -> None:
        async with self._transaction() as db:
            await db.execute("INSERT INTO collections(name, created_at) VALUES ('x', 'now')")
            raise sqlite3.OperationalError("database or disk is full")


async def test_failed_insert_is_named_and_leaves_no_file(settings: Settings, encoder: ClipEncoder,
                                                         photos: dict[str, Path],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    engine = build_chat_engine(settings, encoder, gallery=FullDiskStore(settings.data_dir))
    async with engine:
        service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), engine)
        reply = await service.add(ctx(), photos["rocket"].read_bytes(), "rocket")
        assert reply is not None and reply.kind == "error"
        assert reply.text == "I can't store anything right now (storage full or unavailable); searching still works."
        assert media_files(engine) == [] and await engine.collection_counts() == {}  # rolled back, file gone
    assert any("storage unavailable" in r.getMessage() and "clipbot.db" in r.getMessage() for r in caplog.records)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs: a real full disk (needs root; skipped otherwise)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_full_disk_answers_clearly_and_leaves_nothing_behind(tiny_disk: Path, settings: Settings,
                                                                   encoder: ClipEncoder,
                                                                   photos: dict[str, Path]) -> None:
    full = settings.model_copy(update={"data_dir": tiny_disk / "data"})
    async with build_chat_engine(full, encoder) as engine:
        service = build_service(full.model_copy(update={"rate_limit_per_minute": 0}), engine)
        first = await service.add(ctx(), photos["rocket"].read_bytes(), "rocket")  # 100 KB: fits
        assert first is not None and first.text.startswith("Added #1")
        fill_up(tiny_disk / "filler")
        refused = await service.add(ctx(), photos["astronaut"].read_bytes(), "astronaut")
        assert refused is not None and refused.kind == "error" and "can't store anything" in refused.text
        found = await service.find(ctx(), "rocket")  # searching still works
        assert found is not None and found.kind == "result"
        rows = await engine.list_images()
        assert [r.label for r in rows] == ["rocket"]
        assert len(media_files(engine)) == 1  # no orphan, no temporary file
        with pytest.raises(StorageUnavailableError):
            MediaStore(full.data_dir / "media").put(b"x" * 10_000, "ab" * 32, ".jpg")


def fill_up(path: Path) -> None:
    """Take every byte the disk has left."""
    with open(path, "wb", buffering=0) as fh:
        for chunk in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * chunk)


# -- sweeps and killed writes -------------------------------------------------------------------


async def test_sweep_removes_dead_writes_and_unused_pictures_only(chat_engine: Engine, service: ChatService,
                                                                  photos: dict[str, Path]) -> None:
    await service.add(ctx(), photos["rocket"].read_bytes(), "rocket")
    [kept] = media_files(chat_engine)
    folder = kept.parent
    dead = folder / f"{TMP_PREFIX}999999999-abc.jpg"  # a pid no process has
    live = folder / f"{TMP_PREFIX}{os.getpid()}-abc.jpg"  # a write of ours, under way
    old_orphan, new_orphan = folder / ("0" * 64 + ".jpg"), folder / ("1" * 64 + ".jpg")
    for f in (dead, live, old_orphan, new_orphan):
        f.write_bytes(b"partial")
    long_ago = time.time() - 3600
    os.utime(old_orphan, (long_ago, long_ago))
    report = await chat_engine.sweep()
    assert (report.temporary_removed, report.orphans_removed, report.files_kept) == (1, 1, 1)
    assert sorted(media_files(chat_engine)) == sorted([kept, live, new_orphan])


def test_killed_index_then_rerun_leaves_a_whole_gallery(cli_env: Path, tmp_path: Path,
                                                        photos: dict[str, Path]) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(40):  # distinct files: each photo recompressed at its own quality
        name = list(photos)[n % len(photos)]
        (folder / f"{n:02d}-{name}.jpg").write_bytes(recompressed(photos[name], scale=0.5, quality=50 + n))
    cmd = [sys.executable, "-m", "bot", "index", str(folder)]
    # Batches of two: a batch is one transaction, and indexing is fast enough now that the 40
    # pictures would land in two or three of them, between two looks at the row count below.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "CLIPBOT_BATCH_SIZE": "2"})
    db = cli_env / "clipbot.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:  # kill it once some rows are in
        if db.exists():
            with sqlite3.connect(db) as con, contextlib.suppress(sqlite3.Error):
                if con.execute("SELECT COUNT(*) FROM images").fetchone()[0] >= 5:
                    break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    with sqlite3.connect(db) as con:
        assert 5 <= con.execute("SELECT COUNT(*) FROM images").fetchone()[0] < 40
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    doctor = subprocess.run([sys.executable, "-m", "bot", "doctor"], capture_output=True, text=True)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert ": ok" in doctor.stdout and "0 missing" in doctor.stdout
    with sqlite3.connect(db) as con:
        files = {row[0] for row in con.execute("SELECT file FROM images")}
        assert con.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 40
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    on_disk = {p.relative_to(cli_env / "media").as_posix() for p in (cli_env / "media").rglob("*") if p.is_file()}
    assert on_disk == files  # no temporary file, no orphan


def test_doctor_reports_and_fails_on_missing_pictures(cli_env: Path, photos: dict[str, Path]) -> None:
    assert subprocess.run([sys.executable, "-m", "bot", "index", str(photos["rocket"])],
                          capture_output=True).returncode == 0
    [stored] = [p for p in (cli_env / "media").rglob("*") if p.is_file()]
    stored.unlink()
    doctor = subprocess.run([sys.executable, "-m", "bot", "doctor"], capture_output=True, text=True)
    assert doctor.returncode == 1 and "1 missing" in doctor.stdout and str(stored) in doctor.stdout


async def test_delete_in_one_chat_while_the_same_picture_is_added_in_another(
    chat_engine: Engine, photos: dict[str, Path]
) -> None:
    """Pictures are stored once per content: a delete must not take a file a concurrent add reuses."""
    import asyncio

    data = photos["coffee"].read_bytes()
    for round_ in range(15):
        first = await chat_engine.add_image(data, collection=f"telegram:a{round_}", label="cup")
        _, second = await asyncio.gather(
            chat_engine.remove(first.record.id),
            chat_engine.add_image(data, collection=f"telegram:b{round_}", label="cup"),
        )
        assert media_files(chat_engine) != [], f"round {round_}: the file is gone"
        assert chat_engine.path_of(second.record) == str(media_files(chat_engine)[0])
        await chat_engine.remove(second.record.id)
    assert media_files(chat_engine) == []  # and the last delete still removes it
