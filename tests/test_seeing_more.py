"""Captions, dominant colours, the colour filter and result cards, through engine, service and CLI."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot.cli import main
from bot.composition import build_chat_engine, build_service
from bot.settings import Settings
from core.chat.context import Chat, Context, User
from core.errors import CaptionsOffError, InputError
from core.gallery.engine import Engine
from core.models.blip import BlipCaptioner
from core.models.clip import ClipEncoder


def banded(colors: list[tuple[tuple[int, int, int], int]], size: int = 100) -> bytes:
    """A PNG of horizontal bands: (rgb, rows) each."""
    img = Image.new("RGB", (size, size))
    top = 0
    for rgb, rows in colors:
        img.paste(rgb, (0, top, size, top + rows))
        top += rows
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


RED_BLUE_WHITE = banded([((255, 0, 0), 60), ((0, 0, 255), 30), ((255, 255, 255), 10)])
GREEN = banded([((0, 160, 0), 100)])


@pytest.fixture
async def captioned(settings: Settings, encoder: ClipEncoder, captioner: BlipCaptioner) -> AsyncIterator[Engine]:
    async with build_chat_engine(settings, encoder, captioner=captioner) as engine:
        yield engine


def ctx() -> Context:
    return Context(Chat("telegram", "1"), User("telegram", "1"))


async def test_caption_becomes_the_description_and_is_searchable(
    captioned: Engine, captioner: BlipCaptioner, photos: dict[str, Path]
) -> None:
    from core.media.images import decode_image

    expected = captioner.caption_images([decode_image(photos["rocket"]).image])[0]
    assert expected  # the tiny BLIP does say something
    rec = (await captioned.add_image(photos["rocket"], label="r1")).record
    assert rec.description == expected and rec.caption == expected
    given = (await captioned.add_image(photos["coffee"], label="c1", description="my mug")).record
    assert given.description == "my mug" and given.caption is None  # a given description is kept, no caption
    word = expected.split()[0]
    [hit, *_] = await captioned.find_text(word, k=2)
    assert hit.id == rec.id and hit.text_match
    assert await captioned.describe(photos["rocket"]) == expected


async def test_unusable_caption_model_never_blocks_adding(settings: Settings, encoder: ClipEncoder,
                                                          photos: dict[str, Path]) -> None:
    broken = BlipCaptioner("/nonexistent/blip")
    async with build_chat_engine(settings, encoder, captioner=broken) as engine:
        rec = (await engine.add_image(photos["rocket"], label="rocket")).record
        assert rec.description == "" and rec.caption is None
        with pytest.raises(Exception, match="CLIPBOT_CAPTION_MODEL"):
            await engine.describe(photos["rocket"])


async def test_describe_when_captions_are_off(engine: Engine, photos: dict[str, Path]) -> None:
    with pytest.raises(CaptionsOffError, match="CLIPBOT_CAPTION_MODEL=none"):
        await engine.describe(photos["rocket"])


async def test_colours_are_stored_at_insertion_and_filter_find(engine: Engine) -> None:
    flag = (await engine.add_image(RED_BLUE_WHITE, label="flag")).record
    lawn = (await engine.add_image(GREEN, label="lawn")).record
    stored = flag.color_list
    assert [c["name"] for c in stored] == ["red", "blue", "white"]
    assert abs(float(stored[0]["percent"]) - 60) <= 3  # type: ignore[arg-type]
    assert flag.color_families == " red  blue  white " and lawn.color_families == " green "
    assert [r.id for r in await engine.find_text("flag color:red", k=5)] == [flag.id]
    assert [r.id for r in await engine.find_text("colour:Crimson", k=5)] == [flag.id]  # any CSS name, its family
    assert [r.id for r in await engine.find_text("color:green", k=5)] == [lawn.id]
    assert await engine.find_text("lawn color:red color:green", k=5) == []
    with pytest.raises(InputError, match="don't know the colour 'banana'"):
        await engine.find_text("car color:banana")
    with sqlite3.connect(Path(engine.picture_file("")).parent / "clipbot.db") as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] >= 2  # the colours' migration ran


async def test_service_colors_scores_and_top_cards(engine: Engine, settings: Settings,
                                                   photos: dict[str, Path]) -> None:
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), engine)
    for name in ("rocket", "coffee", "chelsea"):
        await engine.add_image(photos[name], label=name)
    colors = await service.colors(ctx(), RED_BLUE_WHITE)
    assert colors is not None and re.fullmatch(r" ?6\d\.\d%  red \(#ff0000\)", colors.text.splitlines()[1])
    assert Image.open(io.BytesIO(colors.image or b"")).size == (600, 120)
    scores = await service.scores(ctx(), photos["coffee"].read_bytes())
    assert scores is not None and scores.text.startswith("Scores against 3 images") and "1.00  coffee" in scores.text
    assert Image.open(io.BytesIO(scores.image or b"")).format == "PNG"
    match = await service.match(ctx(), photos["coffee"].read_bytes())
    assert match is not None and [b.text for b in match.buttons] == [
        "Next match (2/3)", "Top 3", "More like this", "Not this"]
    top = await service.press(ctx(), match.buttons[1].data)
    assert top.kind == "result" and Image.open(io.BytesIO(top.image or b"")).size == (600, 292)  # 240 + the title
    other_group = Context(Chat("telegram", "-2", private=False), User("telegram", "1"))
    assert (await service.press(other_group, match.buttons[1].data)).kind == "error"
    described = await service.describe(ctx(), photos["coffee"].read_bytes())
    assert described is not None and described.kind == "error" and "turned off" in described.text


# -- the command line -----------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_colors_json_and_plot(cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "flag.png"
    image.write_bytes(RED_BLUE_WHITE)
    code, out, _ = run(capsys, "colors", str(image), "--json", "--plot", str(tmp_path / "palette.png"))
    colors = json.loads(out)["colors"]
    assert code == 0 and [c["name"] for c in colors] == ["red", "blue", "white"]
    assert set(colors[0]) == {"hex", "name", "percent"} and colors[0]["hex"] == "#ff0000"
    assert abs(colors[1]["percent"] - 30) <= 3
    assert Image.open(tmp_path / "palette.png").size == (600, 120)


def test_cli_plots_for_search_find_and_scores(cli_env: Path, tmp_path: Path, photos: dict[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("rocket", "coffee", "chelsea"):
        assert run(capsys, "index", str(photos[name]), "--label", name)[0] == 0
    code, _, err = run(capsys, "search", str(photos["rocket"]), "-k", "3", "--plot", str(tmp_path / "s.png"))
    assert code == 0 and "Wrote" in err and Image.open(tmp_path / "s.png").size == (600, 240)
    assert run(capsys, "find", "coffee", "-k", "2", "--plot", str(tmp_path / "f.png"))[0] == 0
    assert Image.open(tmp_path / "f.png").size == (400, 240)
    assert run(capsys, "scores", str(photos["coffee"]), "--plot", str(tmp_path / "b.png"))[0] == 0
    assert Image.open(tmp_path / "b.png").format == "PNG"
    code, _out, _ = run(capsys, "find", "color:banana")
    assert code == 1


def test_cli_describe(cli_env: Path, blip_dir: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(capsys, "describe", str(photos["rocket"]))
    assert code == 1 and "Captions are turned off" in err
    monkeypatch.setenv("CLIPBOT_CAPTION_MODEL", str(blip_dir))
    code, out, _ = run(capsys, "describe", str(photos["rocket"]))
    assert code == 0 and out.strip() and out.strip()[0].isupper()
    code, out, _ = run(capsys, "download-models")
    assert code == 0 and "Caption model" in out


async def test_warm_loads_the_captioner_or_says_why_not(settings: Settings, encoder: ClipEncoder, blip_dir: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    fresh = BlipCaptioner(str(blip_dir))
    async with build_chat_engine(settings, encoder, captioner=fresh) as engine:
        await engine.warm()
        assert fresh.loaded
    broken = BlipCaptioner("/nonexistent/blip")
    async with build_chat_engine(settings, encoder, captioner=broken) as engine:
        await engine.warm()  # not fatal
    assert any("captions unavailable" in r.getMessage() and "CLIPBOT_CAPTION_MODEL" in r.getMessage()
               for r in caplog.records)
