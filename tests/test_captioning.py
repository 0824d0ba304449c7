"""Captions never stall indexing: images are searchable first, a resumable pass captions them after,
and chat /add waits for BLIP only so long."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from bot.cli import main
from bot.composition import build_chat_engine, build_engine
from bot.settings import Settings
from core.chat.ratelimit import RateLimiter
from core.chat.service import ChatService, ServiceConfig
from core.gallery.caption_pass import caption_pending
from core.gallery.ingest import IngestItem, ingest
from core.media.images import decode_image
from core.models.blip import BlipCaptioner, Captioner
from core.models.clip import ClipEncoder
from tests.test_service import ctx


class FakeCaptioner(Captioner):
    """Captions "Picture <width>x<height>"; can block until released, or fail after some images."""

    def __init__(self, *, fail_after: int | None = None, delay: float = 0.0) -> None:
        super().__init__()
        self.model_id = "fake/captioner"
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.fail_after = fail_after
        self.delay = delay
        self.done = 0
        self.batches: list[int] = []

    def _load(self) -> None:
        pass

    def caption_images(self, images: Sequence[Image.Image]) -> list[str]:
        self.started.set()
        assert self.release.wait(30), "never released"
        time.sleep(self.delay)
        if self.fail_after is not None and self.done + len(images) > self.fail_after:
            raise RuntimeError("killed mid-pass")
        self.done += len(images)
        self.batches.append(len(images))
        return [f"Picture {im.width}x{im.height}" for im in images]


def items(photos: dict[str, Path], names: Sequence[str], description: str | None = None) -> list[IngestItem]:
    return [IngestItem(photos[n], label=n, description=description) for n in names]


async def test_images_are_searchable_before_any_caption(settings: Settings, encoder: ClipEncoder,
                                                        photos: dict[str, Path]) -> None:
    blocking = FakeCaptioner()
    blocking.release.clear()
    async with build_engine(settings, encoder, captioner=blocking) as engine:
        summary = await ingest(engine, items(photos, ["rocket", "coffee", "chelsea"]), collection="global")
        assert summary.added == 3 and not blocking.started.is_set()  # indexing never called BLIP
        rows = await engine.list_images("global")
        assert [(r.caption, r.description) for r in rows] == [(None, "")] * 3
        passing = asyncio.ensure_future(caption_pending(engine, collection="global", batch_size=2))
        assert await asyncio.to_thread(blocking.started.wait, 10)
        # While BLIP is busy (blocked) on the first batch, the images are found by their vectors.
        vectors = await engine.vectors_for([r.id for r in rows])
        hits = await engine.search_vector(vectors[rows[1].id], k=3)
        assert hits[0].id == rows[1].id and len(hits) == 3
        assert all(r.caption is None for r in await engine.list_images("global")) and not passing.done()
        blocking.release.set()
        done = await passing
        assert done.done == 3 and blocking.batches == [2, 1]
        for row in await engine.list_images("global"):
            assert row.caption == row.description == f"Picture {row.width}x{row.height}"
        assert await engine.awaiting_captions() == []


async def test_the_pass_writes_blip_captions_as_searchable_descriptions(
    settings: Settings, encoder: ClipEncoder, captioner: BlipCaptioner, photos: dict[str, Path]
) -> None:
    async with build_engine(settings, encoder, captioner=captioner) as engine:
        await ingest(engine, items(photos, ["rocket", "astronaut"]), collection="global")
        done = await caption_pending(engine)
        assert done.done == 2
        for row, name in zip(await engine.list_images("global"), ["rocket", "astronaut"], strict=True):
            want = captioner.caption_images([decode_image(photos[name]).image])[0]
            assert row.caption == row.description == want
        first = (await engine.list_images("global"))[0]
        if first.caption:
            hits = await engine.find_text(first.caption.split()[0], k=2)
            assert any(h.id == first.id and h.text_match for h in hits)


async def test_an_interrupted_pass_resumes_where_it_stopped(settings: Settings, encoder: ClipEncoder,
                                                            photos: dict[str, Path]) -> None:
    names = ["rocket", "coffee", "chelsea", "astronaut", "hubble"]
    dying = FakeCaptioner(fail_after=2)
    async with build_engine(settings, encoder, captioner=dying) as engine:
        await ingest(engine, items(photos, names), collection="global")
        with pytest.raises(RuntimeError, match="killed"):
            await caption_pending(engine, batch_size=2)
        rows = await engine.list_images("global")
        assert [r.caption is not None for r in rows] == [True, True, False, False, False]
    healthy = FakeCaptioner()
    async with build_engine(settings, encoder, captioner=healthy) as engine:
        assert len(await engine.awaiting_captions()) == 3
        done = await caption_pending(engine, batch_size=2)
        assert done.done == 3 and healthy.done == 3  # the first two are not captioned again
        assert all(r.caption for r in await engine.list_images("global"))


async def test_given_descriptions_are_never_overwritten(settings: Settings, encoder: ClipEncoder,
                                                        photos: dict[str, Path]) -> None:
    fake = FakeCaptioner()
    async with build_engine(settings, encoder, captioner=fake) as engine:
        await ingest(engine, items(photos, ["rocket"], description="my rocket"), collection="global")
        await ingest(engine, items(photos, ["coffee"]), collection="global")
        [waiting] = await engine.awaiting_captions()
        await engine.relabel(waiting.id, label="coffee", description="typed meanwhile")  # after being picked
        await caption_pending(engine, records=[waiting])
        rocket, coffee = await engine.list_images("global")
        assert (rocket.description, rocket.caption) == ("my rocket", None) and fake.done == 1
        assert coffee.description == "typed meanwhile" and coffee.caption is not None


async def test_an_edited_file_waits_for_the_pass_too(settings: Settings, encoder: ClipEncoder,
                                                     photos: dict[str, Path], tmp_path: Path) -> None:
    fake = FakeCaptioner()
    path = tmp_path / "pic.png"
    path.write_bytes(photos["rocket"].read_bytes())
    async with build_engine(settings, encoder, captioner=fake) as engine:
        await ingest(engine, [IngestItem(path, label="pic")], collection="global")
        await caption_pending(engine)
        old = (await engine.list_images("global"))[0]
        assert old.caption and old.description == old.caption
        path.write_bytes(photos["coffee"].read_bytes())
        summary = await ingest(engine, [IngestItem(path)], collection="global")
        assert summary.changed == 1
        edited = await engine.get_image(old.id)
        assert (edited.caption, edited.description, edited.label) == (None, "", "pic")
        await caption_pending(engine)
        again = await engine.get_image(old.id)
        assert again.caption == again.description == f"Picture {again.width}x{again.height}" != old.caption


async def test_chat_add_waits_for_the_caption_only_so_long(settings: Settings, encoder: ClipEncoder,
                                                           photos: dict[str, Path]) -> None:
    slow = FakeCaptioner()
    slow.release.clear()
    async with build_chat_engine(settings, encoder, captioner=slow) as engine:
        service = ChatService(engine, config=ServiceConfig(add_caption_seconds=0.3), limiter=RateLimiter(0))
        context = ctx("5", private=True)
        started = time.monotonic()
        reply = await service.add(context, photos["coffee"].read_bytes(), "mug")
        assert time.monotonic() - started < 5
        assert reply is not None and reply.kind == "info" and reply.result_id is not None
        stored = await engine.get_image(reply.result_id)
        assert (stored.caption, stored.description) == (None, "")
        slow.release.set()  # the caption comes late, and is stored when it comes
        for _ in range(200):
            if (await engine.get_image(reply.result_id)).caption:
                break
            await asyncio.sleep(0.05)
        stored = await engine.get_image(reply.result_id)
        assert stored.caption == stored.description == f"Picture {stored.width}x{stored.height}"
        # Fast enough: inline, as before.
        quick = await service.add(context, photos["rocket"].read_bytes(), "rocket")
        assert quick is not None and quick.result_id is not None
        assert (await engine.get_image(quick.result_id)).caption is not None


async def test_a_late_caption_is_dropped_cleanly_when_the_engine_closes(
    settings: Settings, encoder: ClipEncoder, photos: dict[str, Path]
) -> None:
    slow = FakeCaptioner()
    slow.release.clear()
    engine = build_chat_engine(settings, encoder, captioner=slow)
    await engine.start()
    try:
        result = await engine.add_image(photos["coffee"], label="mug", caption_limit_s=0.1)
        assert result.record.caption is None
    finally:
        slow.release.set()
        await engine.close()
    async with build_engine(settings, encoder, captioner=FakeCaptioner()) as again:
        rec = await again.get_image(result.record.id)
        if rec.caption is None:  # not written before the close: the next pass writes it
            assert (await caption_pending(again)).done == 1


def _rows(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows: list[dict[str, object]] = data["images"]
    return rows


def test_cli_no_captions_then_caption(cli_env: Path, blip_dir: Path, photos: dict[str, Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("rocket", "coffee", "chelsea"):
        (folder / photos[name].name).write_bytes(photos[name].read_bytes())
    (folder / "given.png").write_bytes(photos["astronaut"].read_bytes())
    monkeypatch.setenv("CLIPBOT_CAPTION_MODEL", str(blip_dir))
    assert main(["index", str(folder / "given.png"), "--description", "my astronaut"]) == 0
    assert main(["index", str(folder), "--no-captions"]) == 0
    out = capsys.readouterr().out
    assert "Captioned" not in out
    rows = _rows(capsys)
    assert len(rows) == 4
    assert [r["description"] for r in rows] == ["my astronaut", "", "", ""]
    assert main(["caption"]) == 0
    assert "Captioned 3 image(s); 0 skipped." in capsys.readouterr().out
    rows = _rows(capsys)
    assert rows[0]["description"] == "my astronaut"
    assert all(isinstance(r["description"], str) for r in rows[1:])
    assert main(["caption"]) == 0  # nothing left: a second pass does nothing
    assert "Captioned" not in capsys.readouterr().out


def test_cli_index_captions_after_indexing(cli_env: Path, blip_dir: Path, photos: dict[str, Path],
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLIPBOT_CAPTION_MODEL", str(blip_dir))
    assert main(["index", str(photos["rocket"]), str(photos["coffee"])]) == 0
    out = capsys.readouterr().out
    assert out.index("Captioned 2 image(s)") > 0


def test_cli_caption_when_captions_are_off(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["caption"]) == 1
    assert "CLIPBOT_CAPTION_MODEL=none" in capsys.readouterr().err
