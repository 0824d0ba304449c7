"""Several processes, one gallery: engines and services over one PostgreSQL database see each
other's adds, deletes, result pages and rate limits; the CLI moves a SQLite gallery there."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from bot.composition import build_chat_engine, build_service
from bot.settings import Settings
from core.chat.context import User
from core.chat.switches import ChatSettings
from core.errors import StoreError
from core.models.clip import ClipEncoder
from tests.conftest import labelled_folder, recompressed
from tests.pg import pg_server_url_fixture, pg_url_fixture  # noqa: F401
from tests.test_cli import run
from tests.test_service import ctx


def as_url(conninfo: str) -> str:
    """The test database as operators write CLIPBOT_DATABASE_URL: a postgresql:// URL."""
    if conninfo.startswith(("postgresql://", "postgres://")):
        return conninfo
    parts = conninfo_to_dict(conninfo)
    host = str(parts.get("host", ""))
    where = f"?host={quote(host)}" if host.startswith("/") else ""
    netloc = f"{parts.get('user', '')}@{'' if where else host}{':' + str(parts['port']) if 'port' in parts else ''}"
    return f"postgresql://{netloc}/{parts['dbname']}{where}"


@pytest.fixture
def pg_address(pg_url: str) -> str:
    """A fresh test database's URL."""
    return as_url(pg_url)


def on_postgres(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"database_url": SecretStr(url), "rate_limit_per_minute": 0})


async def test_two_engines_share_adds_deletes_and_pages(settings: Settings, encoder: ClipEncoder, pg_address: str,
                                                        photos: dict[str, Path]) -> None:
    shared = on_postgres(settings, pg_address)
    async with build_chat_engine(shared, encoder, serving=True) as one, \
            build_chat_engine(shared, encoder, serving=True) as two:
        first, second = build_service(shared, one), build_service(shared, two)
        added = await first.add(ctx(), photos["rocket"].read_bytes(), "rocket")
        assert added is not None and added.text.startswith("Added #")
        await first.add(ctx(), photos["coffee"].read_bytes(), "coffee")
        match = await second.match(ctx(), recompressed(photos["rocket"]))  # found through the other at once
        assert match is not None and match.result_id == added.result_id and match.buttons
        # The Next button of a reply the first process sent works on the second, and Top too.
        following = await first.press(ctx(), match.buttons[0].data)
        assert following is not None and following.result_id != added.result_id
        top = await first.press(ctx(), match.buttons[1].data)
        assert top.kind == "result" and top.image
        deleted = await second.delete(ctx(admin=True), added.result_id or 0)
        assert deleted is not None and deleted.text.startswith("Deleted")
        left = await one.search_image(photos["rocket"], collections=["telegram:100"])
        assert added.result_id not in {r.id for r in left}  # the delete is seen by the other process


async def test_concurrent_adds_of_one_picture_store_it_once(settings: Settings, encoder: ClipEncoder,
                                                            pg_address: str, photos: dict[str, Path]) -> None:
    shared = on_postgres(settings, pg_address)
    async with build_chat_engine(shared, encoder) as one, build_chat_engine(shared, encoder) as two:
        results = await asyncio.gather(*(engine.add_image(photos["chelsea"], label="cat")
                                         for engine in (one, two, one, two)))
        assert len({r.record.id for r in results}) == 1
        assert await one.collection_counts() == {"global": 1}
        assert sorted(r.status for r in results).count("added") == 1


async def test_rate_limits_count_across_processes(settings: Settings, encoder: ClipEncoder, pg_address: str) -> None:
    limited = on_postgres(settings, pg_address).model_copy(update={"rate_limit_per_minute": 2})
    async with build_chat_engine(limited, encoder) as one, build_chat_engine(limited, encoder) as two:
        first, second = build_service(limited, one), build_service(limited, two)
        assert (await first.find(ctx(), "cat")) is not None
        assert (await second.find(ctx(), "cat")) is not None
        refused = await first.find(ctx(), "cat")  # the third request of the minute, wherever it lands
        assert refused is not None and refused.kind == "rate_limited"


async def test_buttons_survive_a_restart_on_sqlite(settings: Settings, encoder: ClipEncoder,
                                                   photos: dict[str, Path]) -> None:
    calm = settings.model_copy(update={"rate_limit_per_minute": 0})
    async with build_chat_engine(calm, encoder) as engine:
        for name in ("rocket", "coffee", "chelsea"):
            await engine.add_image(photos[name], label=name)
        match = await build_service(calm, engine).match(ctx(), recompressed(photos["rocket"]))
    assert match is not None and match.buttons
    async with build_chat_engine(calm, encoder) as restarted:
        following = await build_service(calm, restarted).press(ctx(), match.buttons[0].data)
    assert following is not None and following.kind == "result" and "2 of 3" in following.text


async def test_a_second_bot_process_on_one_sqlite_gallery_is_refused(settings: Settings,
                                                                      encoder: ClipEncoder) -> None:
    async with build_chat_engine(settings, encoder, serving=True):
        second = build_chat_engine(settings, encoder, serving=True)
        with pytest.raises(StoreError, match=r"Another clipbot bot process .* is serving") as info:
            await second.start()
        assert "CLIPBOT_DATABASE_URL" in str(info.value) and not second.started
        async with build_chat_engine(settings, encoder) as one_off:  # `clipbot index` alongside still works
            assert await one_off.collection_counts() == {}
    async with build_chat_engine(settings, encoder, serving=True):  # released on close
        pass


def test_migrate_then_search_on_postgres(cli_env: Path, tmp_path: Path, photos: dict[str, Path], pg_address: str,
                                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder = labelled_folder(tmp_path / "photos", photos)
    assert run(capsys, "index", str(folder), "--labels-from-folders")[0] == 0
    _, before, _ = run(capsys, "find", "grace", "--json", "-k", "3")
    code, out, err = run(capsys, "migrate", "--to", pg_address)
    assert code == 0, err
    assert f"Copied {len(photos)} image(s)" in out and f"global                   {len(photos)} -> {len(photos)}" in out
    code, out, _ = run(capsys, "migrate", "--to", pg_address)  # again: nothing to do, still matching
    assert code == 0 and "Copied 0 image(s)" in out and f"{len(photos)} were there already" in out
    monkeypatch.setenv("CLIPBOT_DATABASE_URL", pg_address)
    _, after, _ = run(capsys, "find", "grace", "--json", "-k", "3")
    ranked = [(r["id"], r["label"]) for r in json.loads(after)["results"]]
    assert [label for _, label in ranked] == [r["label"] for r in json.loads(before)["results"]]
    code, out, _ = run(capsys, "search", str(photos["rocket"]), "-k", "1")
    assert code == 0 and "rocket" in out
    code, out, _ = run(capsys, "stats")
    assert code == 0 and "postgresql://" in out and f"Images:      {len(photos)} in 1 collection(s)" in out


async def fill_a_chat(settings: Settings, encoder: ClipEncoder, photos: dict[str, Path]) -> tuple[int, str]:
    """A group with /watch on, /results private and /inline on, a member seen there, two images
    whose file ids Telegram holds (one image deleted since) and a result thread: the rocket's id
    and the thread's Next button."""
    async with build_chat_engine(settings, encoder) as engine:
        service = build_service(settings, engine)
        coffee = await service.add(ctx(), photos["coffee"].read_bytes(), "coffee")
        rocket = await service.add(ctx(), photos["rocket"].read_bytes(), "rocket")
        await service.add(ctx(), photos["chelsea"].read_bytes(), "cat")
        assert coffee is not None and rocket is not None and coffee.result_id and rocket.result_id
        await service.remember_file("telegram", coffee.result_id, "AgAC-coffee")
        await service.remember_file("telegram", rocket.result_id, "AgAC-rocket")
        # The coffee goes: the rocket's id in the copy is then another, and the coffee's file id has no image.
        assert await service.delete(ctx(admin=True), coffee.result_id) is not None
        found = await service.find(ctx(), "rocket")
        assert found is not None and found.buttons
        for command, on in (("watch", "on"), ("inline", "on"), ("results", "private")):
            assert (await getattr(service, command)(ctx(admin=True), on)).kind == "info"
        return rocket.result_id, found.buttons[0].data


@pytest.mark.parametrize("direction", ["sqlite to postgres", "postgres to sqlite"])
def test_migrate_carries_chat_switches_and_inline_file_ids_but_not_threads(
        direction: str, cli_env: Path, tmp_path: Path, settings: Settings, encoder: ClipEncoder,
        photos: dict[str, Path], pg_address: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    here, there = f"sqlite:///{settings.data_dir}", pg_address
    if direction == "postgres to sqlite":
        here, there = pg_address, f"sqlite:///{tmp_path / 'moved'}"
    source, target = on_postgres(settings, here), on_postgres(settings, there)
    monkeypatch.setenv("CLIPBOT_DATABASE_URL", here)
    old_id, next_button = asyncio.run(fill_a_chat(source, encoder, photos))

    code, out, err = run(capsys, "migrate", "--to", there)
    assert code == 0, err
    assert "  chat switches: 1 copied\n" in out and "  inline search members: 1 copied\n" in out
    assert "  inline file ids: 1 copied, 1 skipped (their image was not copied)\n" in out
    assert "Left behind: result threads (1), rate-limit counters (0)" in out
    assert 'buttons under results shown before the move answer "expired"' in out

    async def after() -> None:
        async with build_chat_engine(target, encoder) as engine:
            service = build_service(target, engine)
            assert await service.chat_settings(ctx()) == ChatSettings(watch=True, inline=True, private_results=True)
            assert await service.inline_candidates(User("telegram", "1")) == [ctx().chat.collection]
            hits = await service.inline_search(User("telegram", "2"), "rocket", member_of=[ctx().chat.collection])
            rocket = next(r for r in await engine.list_images(ctx().chat.collection) if r.label == "rocket")
            assert rocket.id != old_id and [(h.image_id, h.file_id) for h in hits] == [(rocket.id, "AgAC-rocket")]
            pressed = await service.press(ctx(), next_button)  # the thread stayed behind
            assert pressed is not None and pressed.kind == "error" and "expired" in pressed.text

    asyncio.run(after())
    code, out, err = run(capsys, "migrate", "--to", there)
    assert code == 0, err
    assert "Copied 0 image(s)" in out and "  chat switches: 0 copied, 1 already there (kept)\n" in out
    assert "  inline file ids: 0 copied, 1 already there (kept), 1 skipped (their image was not copied)\n" in out
    asyncio.run(after())  # nothing doubled, nothing overwritten


def test_a_bad_database_url_is_one_line(tmp_path: Path, clip_dir: Path) -> None:
    env = {**os.environ, "CLIPBOT_CLIP_MODEL": str(clip_dir), "CLIPBOT_DATA_DIR": str(tmp_path / "data"),
           "CLIPBOT_DATABASE_URL": "postgresql://clipbot:s3cret@127.0.0.1:9/nowhere"}
    done = subprocess.run([sys.executable, "-m", "bot", "stats"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "CLIPBOT_DATABASE_URL" in done.stderr and "s3cret" not in done.stderr and "Traceback" not in done.stderr
