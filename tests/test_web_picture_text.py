"""The text in pictures on the web page, through Gradio's raw queue API: the Gallery tab shows each
picture's text, escaped, and filters by it.

The text read in a picture is attacker-controlled: anyone who may add a picture chooses what is
drawn in it. Here the attacker (:mod:`tests.web_attacker`) adds a picture of HTML and Markdown and
reads it back from the page. The web chat runs in this process, over the conftest gallery, so that
its service can be the one the Gallery tab reads stored text through.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.web.gallery import details, picture_text
from adapters.web.markup import escape_markdown
from adapters.web.server import WebPlatform
from adapters.web.session import WEB_COLLECTION
from bot.composition import build_service
from bot.settings import Settings
from core.gallery.engine import Engine
from core.records import ImageRecord, PictureText
from tests.browser import free_port
from tests.text_pictures import needs_reader, text_picture
from tests.web_attacker import Answer, Attacker, file_data

EVIL_LINES = ("<img src=x onerror=alert(1)>", "**bold** [pay](http://x.example)")
MARKUP = ("<img", "onerror=alert(1)>", "**bold**", "[pay](")


@pytest.fixture
async def site(gallery: Engine, settings: Settings) -> AsyncIterator[str]:
    """The web chat on a free port, anyone may add images; yields its URL."""
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)
    platform = WebPlatform(service, port=free_port(), open_add=True, stop_timeout=2)
    await platform.start()
    yield platform.url
    await platform.stop()


async def call(attacker: Attacker, elem_id: str, event: str, data: list[Any], event_data: Any = None) -> Answer:
    """One raw event, off the loop: the page is served by this test's own event loop."""
    return await asyncio.to_thread(attacker.call, elem_id, event, data, event_data=event_data)


async def selected(attacker: Attacker, words: str = "", text: str = "") -> tuple[str, str]:
    """Filter the Gallery tab, pick the first picture shown: (the summary, the picture's details)."""
    listed = await call(attacker, "clipbot-text-filter", "submit", [words, "any colour", text])
    assert listed.ok, listed.raw
    picked = await call(attacker, "clipbot-gallery", "select", [None], {"index": 0, "value": None})
    assert picked.ok, picked.raw
    return str(listed.data[1]), str(picked.data[0])


async def test_the_text_in_a_picture_comes_back_escaped_and_filters_the_gallery(site: str, gallery: Engine) -> None:
    needs_reader()
    attacker = await asyncio.to_thread(Attacker, site)
    try:
        [path] = (await asyncio.to_thread(attacker.upload, "sign.png", text_picture(EVIL_LINES, size=40))).json()
        added = await asyncio.to_thread(attacker.send, "/add sign | harmless", [file_data(path)])
        found = re.search(r"Added #(\d+)", added.text)
        assert found, added.raw
        image_id = int(found.group(1))
        for _ in range(300):  # read as it is added; at worst a moment later
            if image_id in await gallery.texts_for([image_id]):
                break
            await asyncio.sleep(0.1)

        # Filtered by words of its text, any case or punctuation: only that picture.
        summary, shown = await selected(attacker, text="ONERROR alert(1")
        assert summary.startswith("1 image of 5 match"), summary
        assert shown.startswith(f"\\#{image_id} in the web gallery") and "Text in the picture\\:  \n&lt;img" in shown
        assert "&lt;img src\\=x onerror\\=alert\\(1\\)&gt;" in shown and "\\*\\*bold\\*\\*" in shown
        for markup in MARKUP:
            assert markup not in shown, markup
        raw = (await call(attacker, "clipbot-gallery", "select", [None], {"index": 0, "value": None})).raw
        assert "<img" not in raw and "onerror=" not in raw
        # Words not in any picture's text, and the other filters still apply beside it.
        assert (await selected(attacker, text="sunflower"))[0].startswith("0 images of 5 match")
        assert (await selected(attacker, "coffee", text="onerror"))[0].startswith("0 images of 5 match")
        # A photo read and found without text.
        summary, shown = await selected(attacker, "ginger cat")
        assert summary.startswith("1 image of 5") and shown.endswith(escape_markdown("Text in the picture: no text."))
    finally:
        attacker.close()


async def test_a_picture_not_read_yet_says_so(site: str, gallery: Engine, photos: dict[str, Path]) -> None:
    decoded = await gallery.decode(photos["flower"])
    [added] = await gallery.add_decoded([decoded], collection=WEB_COLLECTION, labels=["unread flower"],
                                        descriptions=[""], defer_enrichment=True)  # waits for the text pass
    attacker = await asyncio.to_thread(Attacker, site)
    try:
        summary, shown = await selected(attacker, "unread")
        assert summary.startswith("1 image of 5") and shown.startswith(f"\\#{added.record.id} ")
        assert shown.endswith(escape_markdown("Text in the picture: not read yet."))
        assert (await selected(attacker, "unread", "flower"))[0].startswith("0 images")  # no text to match
    finally:
        attacker.close()


def test_the_details_show_each_line_of_text_on_a_line_of_its_own(gallery_record: ImageRecord) -> None:
    text = PictureText(lines=(("WIFI PASSWORD", 0.98), ("  ", 0.5), ("# not a heading", 0.9)), folded="", model_id="m")
    shown = details(gallery_record, picture_text(text))
    assert shown.endswith("\n\nText in the picture\\:  \nWIFI PASSWORD  \n\\# not a heading")
    assert details(gallery_record) == details(gallery_record, [])  # no text source: no line about text
    assert picture_text(PictureText(lines=(), folded="", model_id="m")) == ["Text in the picture: no text."]


@pytest.fixture
def gallery_record() -> ImageRecord:
    return ImageRecord(id=7, collection=WEB_COLLECTION, label="sign", description="", caption=None, sha256="0" * 64,
                       width=640, height=480, added_by="web:alice", created_at="2024-01-01", file=None,
                       source_path=None)
