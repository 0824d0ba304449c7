"""Enrichment passes: `clipbot index` stores vectors first, then each pass (colours, captions) runs
on its own, resumably; `clipbot enrich` runs them alone; chat /add still makes them inline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.composition import build_chat_engine, build_engine, build_service
from bot.settings import Settings
from core.chat.context import Chat, Context, User
from core.gallery import Colors, MediaStore, run_enrichment
from core.gallery.files import TMP_PREFIX
from core.gallery.ingest import IngestItem, ingest
from core.media.images import decode_image
from core.models.clip import ClipEncoder
from tests.test_cli import run

PICK = ("chelsea", "rocket", "coffee", "astronaut")


@pytest.fixture
def folder(tmp_path: Path, photos: dict[str, Path]) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for name in PICK:
        Image.open(photos[name]).convert("RGB").save(root / f"{name}.jpg", quality=90)
    return root


def listing(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    code, out, err = run(capsys, "list", "--json")
    assert code == 0, err
    images: list[dict[str, object]] = json.loads(out)["images"]
    return images


def test_index_stores_vectors_then_runs_the_colour_pass(cli_env: Path, folder: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "index", str(folder))
    assert code == 0, err
    assert "Found the colours of 4 image(s); 0 skipped." in out
    assert all(image["colors"] for image in listing(capsys))


def test_no_colors_leaves_them_waiting_and_enrich_makes_them(cli_env: Path, folder: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "index", str(folder), "--no-colors")
    assert code == 0, err
    assert "colours" not in out
    assert [image["colors"] for image in listing(capsys)] == [[]] * 4
    # A colour filter says why nothing matches yet, instead of a silent "none".
    code, out, _ = run(capsys, "find", "cat color:red")
    assert code == 0
    code, out, err = run(capsys, "enrich")
    assert code == 0, err
    assert "Found the colours of 4 image(s); 0 skipped." in out
    assert "Skipped the captions pass: captions are turned off" in out
    assert all(image["colors"] for image in listing(capsys))
    code, out, err = run(capsys, "enrich")  # nothing waits any more: nothing is made again
    assert code == 0 and "Found the colours" not in out


async def test_chat_add_makes_colours_inline(settings: Settings, encoder: ClipEncoder,
                                             photos: dict[str, Path]) -> None:
    async with build_chat_engine(settings, encoder) as engine:
        image = await engine.add_image(photos["coffee"], label="coffee")
        assert image.record.colors and await engine.awaiting_colors() == []


async def test_a_colour_filter_names_the_pictures_still_waiting(settings: Settings, encoder: ClipEncoder,
                                                                photos: dict[str, Path]) -> None:
    async with build_chat_engine(settings, encoder) as engine:
        await ingest(engine, [IngestItem(photos["coffee"], label="coffee")], collection="global")
        service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), engine)
        ctx = Context(Chat("telegram", "1", private=True), User("telegram", "1", "one"))
        reply = await service.find(ctx, "cup color:purple")
        assert reply is not None
        assert "1 picture(s) here have no colours yet" in reply.text
        await run_enrichment(engine, Colors(), collection="global")
        reply = await service.find(ctx, "cup color:purple")
        assert reply is not None and "no colours yet" not in reply.text


async def test_the_colour_pass_resumes_and_skips_unreadable_files(settings: Settings, encoder: ClipEncoder,
                                                                  folder: Path) -> None:
    async with build_engine(settings, encoder, captioner=None) as engine:
        items = [IngestItem(p) for p in sorted(folder.iterdir())]
        assert (await ingest(engine, items, collection="global")).added == 4
        waiting = await engine.awaiting_colors("global")
        broken = waiting[0]
        path = engine.path_of(broken)
        assert path is not None
        Path(path).write_bytes(b"not a picture any more")
        first = await run_enrichment(engine, Colors(), records=waiting[:2])
        assert first.done == 1 and [what for what, _ in first.skipped] == [f"#{broken.id}"]
        rest = await run_enrichment(engine, Colors(), collection="global")
        # The unreadable one stays waiting; the one done before is not done again.
        assert rest.done == 2 and [r.id for r in await engine.awaiting_colors("global")] == [broken.id]


def test_put_many_writes_each_file_once_and_leaves_no_temporaries(tmp_path: Path) -> None:
    media = MediaStore(tmp_path / "media")
    files = [(bytes([n]) * 1000, f"{n:02x}" * 32, ".jpg") for n in range(5)]
    old = media.put(*files[0])
    os.utime(media.absolute(old), (1, 1))
    relatives = media.put_many([*files, files[1]])  # the same picture twice in a batch: one file
    assert relatives == [media.relative_path(sha, ext) for _, sha, ext in [*files, files[1]]]
    for (data, _, _), relative in zip(files, relatives, strict=False):
        assert media.absolute(relative).read_bytes() == data
    assert os.stat(media.absolute(old)).st_mtime > 1  # made fresh again for the sweep
    assert not [p for p in media.root.rglob("*") if p.name.startswith(TMP_PREFIX)]


def test_put_many_that_fails_leaves_no_temporaries(tmp_path: Path) -> None:
    media = MediaStore(tmp_path / "media")
    media.root.mkdir()
    (media.root / "ff").write_bytes(b"")  # a file where the second one's folder goes
    with pytest.raises(OSError):
        media.put_many([(b"a" * 100, "aa" * 32, ".jpg"), (b"b" * 100, "ff" * 32, ".jpg")])
    assert not [p for p in media.root.rglob("*") if p.name.startswith(TMP_PREFIX)]


async def test_a_photo_sent_to_the_chat_gets_the_vector_of_the_same_file_indexed(
        settings: Settings, encoder: ClipEncoder, photos: dict[str, Path], tmp_path: Path) -> None:
    """Indexing decodes large JPEGs at a reduced scale (libjpeg's DCT scaling) down to the model's
    side; the chat decodes them larger (for BLIP), yet hands the model the same pixels: the same
    file scores 1.0 both ways, where a reduced against a full decode differs (pixel cosine 0.96
    on the motorcycle photo's fine texture)."""
    jpegs = []
    for name in ("motorcycle_left", "astronaut", "camera"):
        source = next(p for p in Path(photos["astronaut"]).parent.iterdir() if p.stem == name)
        jpegs.append(tmp_path / f"{name}.jpg")
        Image.open(source).convert("RGB").save(jpegs[-1], quality=92)
    async with build_engine(settings, encoder, captioner=None) as engine:
        await ingest(engine, [IngestItem(p) for p in jpegs], collection="global")
        side = await engine.index_side()
        for jpeg in jpegs:
            reduced = decode_image(jpeg, min_side=side)
            assert min(reduced.image.size) < min(decode_image(jpeg).image.size)
            chat = await engine.decode(jpeg.read_bytes())
            assert np.array_equal(await engine.prepare([chat]), await engine.prepare([reduced])), jpeg.name
            [best] = await engine.search_image(jpeg.read_bytes(), k=1)
            assert best.score > 0.9999, jpeg.name
