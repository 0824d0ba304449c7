"""The web chat without a browser: sign-in hashes, who may do what, the chat and gallery logic, serving."""

from __future__ import annotations

import asyncio
import html
import os
import signal
import socket
import struct
import zlib
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.web.chat import WebConversation
from adapters.web.files import PictureFiles
from adapters.web.gallery import ANY_COLOR, GalleryView, caption
from adapters.web.server import WebPlatform, bind, open_warning
from adapters.web.session import WEB_COLLECTION, Access, Visitor, WebStyle
from adapters.web.users import WebUsers, hash_users
from bot.cli import build_parser
from bot.composition import build_service
from bot.settings import Settings, load_settings
from core.chat.catalogue import commands_for
from core.chat.service import ChatService
from core.chat.styles import help_text
from core.errors import ConfigError
from core.galleries import GLOBAL_COLLECTION
from core.gallery.engine import Engine
from tests.conftest import recompressed

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
USERS = Access(users_configured=True, admin_ids=frozenset({"web:root"}))


def pixel_bomb(side: int = 10_000) -> bytes:
    """A PNG whose header claims ``side`` x ``side`` pixels, in a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- sign-in --------------------------------------------------------------------------------------

def test_passwords_are_kept_as_salted_hashes_only() -> None:
    hashed = hash_users("alice:wonder land, bob:s3cret:with:colons")
    assert "wonder" not in hashed and "s3cret" not in hashed
    users = WebUsers.from_setting(hashed)
    assert users.names == ["alice", "bob"] and len(users) == 2
    assert users.check("alice", "wonder land") and users.check("bob", "s3cret:with:colons")
    assert not users.check("alice", "wonderland") and not users.check("carol", "wonder land")
    assert hash_users("alice:x") != hash_users("alice:x")  # a fresh salt each time
    assert not WebUsers.from_setting(None) and not WebUsers.from_setting("")


@pytest.mark.parametrize(("text", "problem"), [
    ("alice", "name:password"), ("alice:", "name:password"), ("al ice:pw", "user name"),
    ("alice:a,alice:b", "listed twice"),
])
def test_bad_user_lists_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        hash_users(text)


def test_web_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPBOT_WEB_USERS", "alice:wonderland")
    monkeypatch.setenv("CLIPBOT_WEB_PORT", "8080")
    s = load_settings(None)
    assert s.web_port == 8080 and s.web_host == "127.0.0.1" and not s.web_open_add
    assert s.web_users is not None and "wonderland" not in s.web_users.get_secret_value()
    assert WebUsers.from_setting(s.web_users.get_secret_value()).check("alice", "wonderland")
    monkeypatch.setenv("CLIPBOT_WEB_USERS", "alice")
    with pytest.raises(ConfigError, match="CLIPBOT_WEB_USERS"):
        load_settings(None)


def test_binding_beyond_loopback_without_users_warns() -> None:
    nobody = WebUsers()
    assert open_warning("127.0.0.1", nobody, False) is None and open_warning("localhost", nobody, False) is None
    assert open_warning("::1", nobody, False) is None
    warning = open_warning("0.0.0.0", nobody, True)
    assert warning is not None and "CLIPBOT_WEB_USERS" in warning and "add images" in warning
    assert open_warning("0.0.0.0", WebUsers.from_setting(hash_users("a:b")), False) is None


def test_cli_has_a_web_command() -> None:
    args = build_parser().parse_args(["web", "--host", "0.0.0.0", "--port", "8081"])
    assert (args.command, args.host, args.port) == ("web", "0.0.0.0", 8081)


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*CLIPBOT_WEB_PORT"):
            bind("127.0.0.1", port)


# -- who may do what -------------------------------------------------------------------------------

def test_permissions_follow_the_chat_platforms() -> None:
    guest, alice, root = Visitor(), Visitor(name="alice"), Visitor(name="root")
    assert guest.user.key.startswith("web:guest-") and guest.user.key != Visitor().user.key
    assert alice.user.key == "web:alice" and root.is_admin(USERS) and not alice.is_admin(USERS)
    assert "Sign in" in (guest.add_refusal(USERS) or "")
    assert alice.add_refusal(USERS) is None
    assert "read-only" in (guest.add_refusal(Access()) or "")
    assert guest.add_refusal(Access(open_add=True)) is None
    assert "admins" in (alice.add_refusal(Access(users_configured=True, add_requires_admin=True)) or "")
    mine = {"collection": WEB_COLLECTION, "added_by": "web:alice"}
    assert alice.change_refusal(USERS, **mine) is None and root.change_refusal(USERS, **mine) is None
    assert Visitor(name="bob").change_refusal(USERS, **mine) is not None
    assert guest.change_refusal(USERS, **mine) is not None
    assert alice.change_refusal(USERS, collection=GLOBAL_COLLECTION, added_by="cli") is not None
    assert root.change_refusal(USERS, collection=GLOBAL_COLLECTION, added_by="cli") is None
    assert root.change_refusal(USERS, collection="telegram:5", added_by="web:root") is not None


def test_help_is_written_the_web_way() -> None:
    text = help_text(WebStyle(), private=False)
    for command in commands_for("web"):
        assert (f"/{command.name}" in text) == (command.name != "help")
    assert "/add label | description (with a photo attached)" in text and "Gallery tab" in text
    assert "/match (with a photo attached), or /match #12" in text and "/similar (on the last result)" in text
    assert "/refine <words> (on the last result), or > <words>" in text and "/more, /not" in text


# -- the chat --------------------------------------------------------------------------------------

@pytest.fixture
def service(settings: Settings, gallery: Engine) -> ChatService:
    return build_service(settings.model_copy(update={"rate_limit_per_minute": 0, "admin_ids": "web:root"}), gallery)


@pytest.fixture
def chat(service: ChatService, tmp_path: Path) -> WebConversation:
    return WebConversation(service, USERS, PictureFiles(tmp_path / "pictures"))


def texts(messages: list[dict[str, object]]) -> str:
    """The messages' text as the page shows it (a message's text is HTML, escaped by the server)."""
    return html.unescape("\n".join(str(c) for m in messages for c in m["content"]  # type: ignore[attr-defined]
                                   if isinstance(c, str)))


async def test_a_photo_gets_its_match_inline_with_buttons(chat: WebConversation, tmp_path: Path,
                                                          photos: dict[str, Path]) -> None:
    upload = tmp_path / "cat.jpg"
    upload.write_bytes(recompressed(photos["chelsea"]))
    visitor = Visitor()
    sent, reply = await chat.submit(visitor, "", [upload])
    assert sent["role"] == "user" and sent["content"] == [{"path": str(upload)}]
    picture, text = reply["content"]
    assert Path(picture["path"]).is_file() and text.startswith("chelsea\nginger cat\nScore: ")
    assert [o["label"] for o in reply["options"]] == [
        "Next match (2/4)", "Top 4", "More like this", "Not this"]
    [page] = await chat.press(visitor, reply["options"][0]["value"])
    assert "match 2 of 4" in texts([page])
    [_, top] = await chat.submit(visitor, "/top", [])
    assert texts([top]).startswith("Top 4 for photo") and Path(top["content"][0]["path"]).is_file()


async def test_words_commands_and_errors(chat: WebConversation, tmp_path: Path, photos: dict[str, Path]) -> None:
    visitor = Visitor()
    assert texts(await chat.submit(visitor, "coffee", [])).startswith("coffee\ncoffee\na cup\nScore")
    assert "Nothing to page through" in texts(await chat.submit(Visitor(), "/next", []))
    assert "This chat's gallery: 0 images" in texts(await chat.submit(visitor, "/stats", []))
    assert "Attach a photo to /describe" in texts(await chat.submit(visitor, "/describe", []))
    assert "I don't know that command" in texts(await chat.submit(visitor, "/frobnicate", []))
    for name, data, error in (("doc.pdf", PDF, "That is a PDF document"), ("bomb.png", pixel_bomb(), "10000x10000")):
        path = tmp_path / name
        path.write_bytes(data)
        assert error in texts(await chat.submit(visitor, "", [path]))
    colors = await chat.submit(visitor, "/colors", [photos["coffee"]])
    assert "Dominant colours" in texts(colors) and Path(colors[1]["content"][0]["path"]).is_file()


async def test_adding_needs_a_signed_in_user(chat: WebConversation, gallery: Engine, tmp_path: Path,
                                             photos: dict[str, Path]) -> None:
    upload = tmp_path / "flower.jpg"
    upload.write_bytes(photos["flower"].read_bytes())
    assert "Sign in to add" in texts(await chat.submit(Visitor(), "/add flower | pink", [upload]))
    assert await gallery.list_images(WEB_COLLECTION) == []
    alice = Visitor(name="alice")
    assert "Added #" in texts(await chat.submit(alice, "/add flower | pink", [upload]))
    [record] = await gallery.list_images(WEB_COLLECTION)
    assert (record.label, record.description, record.added_by) == ("flower", "pink", "web:alice")
    assert "Sign in to delete" in texts(await chat.submit(Visitor(), f"/delete {record.id}", []))
    assert "Only the person" in texts(await chat.submit(Visitor(name="bob"), f"/delete {record.id}", []))
    assert "Deleted" in texts(await chat.submit(alice, f"/delete #{record.id}", []))


# -- the gallery tab -------------------------------------------------------------------------------

async def test_gallery_pages_filters_adds_edits_and_deletes(service: ChatService, gallery: Engine, tmp_path: Path,
                                                            photos: dict[str, Path]) -> None:
    view = GalleryView(service, USERS, PictureFiles(tmp_path / "pictures"), page_size=3)
    first = await view.page()
    assert (first.total, first.pages, len(first.items)) == (4, 2, 3) and "Page 1 of 2" in first.summary
    assert all(Path(thumb).is_file() for thumb, _ in first.items)
    assert (await view.page(page=9)).page == 2  # past the end: the last page
    found = await view.page("ginger cat")
    assert found.total == 1 and found.items[0][1].startswith(f"#{found.ids[0]} chelsea \u2014 ginger cat \u00b7 ")
    record = await view.describe(found.ids[0])
    family = record.color_families.split()[0]
    assert found.ids[0] in (await view.page("", family)).ids and (await view.page("", ANY_COLOR)).total == 4

    files = [photos["flower"], photos["china"], tmp_path / "doc.pdf"]
    files[2].write_bytes(PDF)
    assert "Sign in" in await view.add(Visitor(), files, "", "")
    steps: list[tuple[int, int]] = []
    report = await view.add(Visitor(name="alice"), files, "", "trip", lambda n, total, _: steps.append((n, total)))
    assert report.startswith("Added 2 images.") and "doc.pdf: That is a PDF document" in report
    assert steps == [(0, 3), (1, 3), (2, 3), (3, 3)]
    added = await gallery.list_images(WEB_COLLECTION)
    assert sorted(r.label for r in added) == ["china", "flower"] and {r.description for r in added} == {"trip"}
    assert caption(added[0]).startswith(f"#{added[0].id} ")

    assert "Only the person" in await view.edit(Visitor(name="bob"), added[0].id, "x", "")
    assert await view.edit(Visitor(name="alice"), added[0].id, "blossom", "garden") == f"Saved #{added[0].id}."
    assert (await gallery.get_image(added[0].id)).label == "blossom"
    shared = first.ids[0]
    assert "bot's admins" in await view.edit(Visitor(name="alice"), shared, "x", "")
    assert "bot's admins" in await view.delete(Visitor(name="alice"), shared)
    assert (await view.delete(Visitor(name="root"), shared)).startswith("Deleted")
    assert (await view.delete(Visitor(name="alice"), added[1].id)).startswith("Deleted")
    assert await view.count() == 4


# -- serving ---------------------------------------------------------------------------------------

async def fetch(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_the_web_platform_serves_in_this_loop(service: ChatService) -> None:
    platform = WebPlatform(service, port=free_port(), stop_timeout=2)
    await platform.start()
    try:
        status, page = await fetch(platform.url)  # the page carries its config: /config is not served
        assert status == 200 and "clipbot" in page and "Gallery" in page
    finally:
        await platform.stop()
    with pytest.raises(aiohttp.ClientError):
        await fetch(platform.url)


async def test_clipbot_run_serves_the_web_when_its_port_is_set(settings: Settings, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.runner import run_bot

    monkeypatch.setattr("bot.runner.interactive", lambda: False)  # no console to fall back on
    port = free_port()
    run_settings = settings.model_copy(update={"web_port": port, "web_users": SecretStr(hash_users("a:b"))})
    task = asyncio.create_task(run_bot(run_settings))
    try:
        for _ in range(600):
            try:
                status, page = await fetch(f"http://127.0.0.1:{port}/")
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        assert status == 200 and "<html" in page
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 30) == 0
    finally:
        if not task.done():
            task.cancel()
    err = capsys.readouterr().err
    assert f"Web chat on http://127.0.0.1:{port}/" in err and "Running on web" in err


async def test_every_catalogue_command_is_reachable_on_the_web(service: ChatService, gallery: Engine, tmp_path: Path,
                                                               photos: dict[str, Path]) -> None:
    from core.chat.catalogue import ChatCommand, Takes
    from core.chat.context import CommandInput, Context, Reply

    ran: list[str] = []

    class Spy(ChatService):
        async def execute(self, command: ChatCommand, ctx: Context, args: CommandInput) -> Reply | None:
            ran.append(command.name)
            return await super().execute(command, ctx, args)

    spy = Spy(gallery, config=service.config, limiter=service.limiter, threads=service.threads)
    chat = WebConversation(spy, USERS, PictureFiles(tmp_path / "pictures"))
    alice = Visitor(name="alice")
    await chat.submit(alice, "rocket", [])  # a result for /similar and /refine to work on
    names = [(name, c) for c in commands_for("web") for name in c.names]
    arguments = {Takes.WORDS: "rocket", Takes.IMAGE_ID: "999", Takes.LABELLED_PHOTO: "flower | pink",
                 Takes.RESULT_WORDS: "at night"}
    for name, command in names:
        text = arguments.get(command.takes, "")
        photo = [photos["flower"]] if command.takes.photo else []
        reply = texts(await chat.submit(alice, f"/{name.upper()} {text}".rstrip(), photo))
        assert ran[-1] == command.name and "I don't know that command" not in reply, name
        assert "Nothing to refine" not in reply and "Attach a photo to" not in reply, name
    assert len(ran) == len(names) + 1
