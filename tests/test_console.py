"""The console chat: line reading (Ctrl+C, Ctrl+D, history), plain-text search, dragged-in paths,
console wording, one file per card and counted nouns, over the real service and a tiny CLIP."""

from __future__ import annotations

import io
import os
import select
import shutil
import signal
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from adapters.console import ConsoleChat, ConsoleStyle
from adapters.discord.messages import DISCORD_STYLE
from bot.composition import build_service
from bot.settings import Settings
from core.chat.service import ChatService
from core.chat.styles import CHAT_STYLE
from core.chat.texts import empty_gallery_text, expired_text
from core.gallery.engine import Engine
from core.search import fold
from core.text import plural
from tests.text_pictures import needs_reader, text_picture

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_EMPTY = "This gallery has no images yet. To add an image, use /add PATH | label | description."


def service_for(settings: Settings, engine: Engine) -> ChatService:
    return build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), engine)


def console(service: ChatService, tmp_path: Path) -> tuple[ConsoleChat, io.StringIO]:
    out = io.StringIO()
    return ConsoleChat(service, out=out, cards_dir=tmp_path / "cards"), out


async def said(chat: ConsoleChat, out: io.StringIO, line: str) -> str:
    """What the console printed in answer to one line."""
    start = len(out.getvalue())
    await chat.handle(line)
    return out.getvalue()[start:]


# -- reading lines ----------------------------------------------------------------------------------

async def test_ctrl_c_cancels_the_line_and_prompts_again(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    answers = iter([KeyboardInterrupt(), "/stats\n", ""])

    def read_line() -> str:
        answer = next(answers)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, str)
        return answer

    out = io.StringIO()
    await ConsoleChat(service_for(settings, engine), read_line=read_line, out=out).run()
    after_welcome = out.getvalue().split("/quit or Ctrl+D leaves.\n", 1)[1]
    assert after_welcome == ("you> \nyou> bot> This chat's gallery: 0 images.\nbot> Shared gallery: 0 images.\n"
                             "bot> Searches here look through 0 images.\nyou> \n")


async def test_eof_error_ends_the_chat(engine: Engine, settings: Settings) -> None:
    def read_line() -> str:
        raise EOFError

    out = io.StringIO()
    await ConsoleChat(service_for(settings, engine), read_line=read_line, out=out).run()
    assert out.getvalue().endswith("you> \n")


CHILD = """
import asyncio, sys
from pathlib import Path
from adapters.console import ConsoleChat
from bot.composition import build_chat_engine, build_service
from bot.settings import Settings

async def main() -> None:
    settings = Settings(clip_model=sys.argv[1], caption_model="none", precision="fp32", data_dir=Path(sys.argv[2]),
                        _env_file=None)
    async with build_chat_engine(settings) as engine:
        await ConsoleChat(build_service(settings, engine), history_file=Path(sys.argv[3])).run()

asyncio.run(main())
"""


class Terminal:
    """The parent's side of a pseudo-terminal a child process runs in."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.seen = b""
        self._at = 0

    def expect(self, text: bytes, timeout: float = 60) -> None:
        """Read until ``text`` appears past the last thing expected."""
        deadline = time.monotonic() + timeout
        while text not in self.seen[self._at:]:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{text!r} never came; the terminal shows:\n{self.seen.decode(errors='replace')}")
        self._at = self.seen.index(text, self._at) + len(text)

    def send(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def drain(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(deadline - time.monotonic()):
            pass

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed its side
            return False
        self.seen += chunk
        return bool(chunk)


class ConsoleOnATerminal:
    """The console chat in a child process on a pseudo-terminal (``CHILD``), killed if a test fails."""

    def __init__(self, clip_dir: Path, data: Path, history: Path) -> None:
        import pty

        self.pid, fd = pty.fork()
        if self.pid == 0:  # the child: the console on the terminal's other side
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "-c", CHILD, str(clip_dir), str(data), str(history)],
                      {**os.environ, "TERM": "xterm", "HF_HUB_OFFLINE": "1"})
        self.term = Terminal(fd)
        self._running = True

    def leave(self) -> str:
        """Ctrl+D at an empty prompt; what the terminal showed, once the console exited with 0."""
        self.term.send(b"\x04")
        self.term.drain()
        _, status = os.waitpid(self.pid, 0)
        self._running = False
        shown = self.term.seen.decode(errors="replace")
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, shown
        return shown

    def close(self) -> None:
        if self._running:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self._running = False
        os.close(self.term.fd)


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_on_a_terminal_keys_edit_cancel_recall_and_quit(clip_dir: Path, tmp_path: Path) -> None:
    history = tmp_path / "state" / "console_history"
    history.parent.mkdir()
    history.write_text("/stats\n", encoding="utf-8")  # a line from an earlier chat
    console = ConsoleOnATerminal(clip_dir, tmp_path / "data", history)
    term = console.term
    try:
        term.expect(b"you> ", timeout=180)  # the model loads first
        term.send(b"\x1b[A")  # Up: the earlier chat's line, from the history file
        term.expect(b"/stats")
        term.send(b"\r")
        term.expect(b"bot> This chat's gallery: 0 images.")
        term.expect(b"you> ")
        term.send(b"red car")
        term.expect(b"red car")
        term.send(b"\x03")  # Ctrl+C: the line goes, the chat stays
        term.expect(b"you> ")
        term.send(b"/find rocket\r")
        term.expect(CONSOLE_EMPTY.encode())
        term.expect(b"you> ")
        shown = console.leave()
    finally:
        console.close()
    assert "Traceback" not in shown and "^[[A" not in shown
    assert shown.count("no images yet") == 1, shown  # "red car" was never searched
    assert history.read_text(encoding="utf-8").splitlines() == ["/stats", "/find rocket"]


def _tgkill() -> Any:
    """glibc's tgkill(2): a signal to one thread of another process (what the kernel may do to a Ctrl+C)."""
    import ctypes

    fn = getattr(ctypes.CDLL(None, use_errno=True), "tgkill", None)
    if fn is None:
        pytest.skip("no tgkill in this C library")
    return fn


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads as /proc tasks, tgkill: Linux")
def test_ctrl_c_handed_to_a_worker_thread_still_cancels_the_line_once(clip_dir: Path, tmp_path: Path) -> None:
    """The kernel gives a terminal's SIGINT to any thread; one given to a worker left input() asleep
    until the next key (the flake of the test above). Now the line is cancelled, and only once."""
    tgkill = _tgkill()
    console = ConsoleOnATerminal(clip_dir, tmp_path / "data", tmp_path / "history")
    term, pid = console.term, console.pid
    try:
        term.expect(b"you> ", timeout=180)
        term.send(b"/stats\r")  # the engine's threads are running now
        term.expect(b"bot> This chat's gallery: 0 images.")
        term.expect(b"you> ")
        workers = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
        assert workers, "the console runs threads besides the main one"
        for attempt in range(2):  # twice: the forwarder is set up again for every line
            term.send(b"red car")
            term.expect(b"red car")
            assert tgkill(pid, workers[attempt % len(workers)], signal.SIGINT) == 0
            term.expect(b"you> ", timeout=30)
        term.send(b"/find rocket\r")  # not cancelled by a second, late interrupt
        term.expect(CONSOLE_EMPTY.encode())
        term.expect(b"you> ")
        shown = console.leave()
    finally:
        console.close()
    assert "Traceback" not in shown and "KeyboardInterrupt" not in shown, shown
    assert shown.count("no images yet") == 1, shown  # "red car" was never searched


# -- what a line means -----------------------------------------------------------------------------

async def test_plain_text_searches_as_find_does(gallery: Engine, settings: Settings, tmp_path: Path) -> None:
    chat, out = console(service_for(settings, gallery), tmp_path)
    found = await said(chat, out, "/find rocket")
    assert found.startswith("bot> rocket\nbot> on the launch pad\nbot> Score: ")
    assert await said(chat, out, "rocket") == found
    coffee = await said(chat, out, "a cup of coffee")
    assert coffee == await said(chat, out, "/find a cup of coffee") and coffee.startswith("bot> coffee\n")


async def test_dragged_in_paths_are_matched(gallery: Engine, settings: Settings, tmp_path: Path,
                                            photos: dict[str, Path]) -> None:
    folder = tmp_path / "my photos"
    folder.mkdir()
    path = folder / "the rocket's photo #1.jpg"
    shutil.copy(photos["rocket"], path)
    chat, out = console(service_for(settings, gallery), tmp_path)
    expected = await said(chat, out, f"/match {path}")  # typed as is, spaces and all
    assert expected.startswith("bot> rocket\n") and "bot>   image: " in expected
    escaped = str(path).replace(" ", "\\ ").replace("'", "\\'").replace("#", "\\#")
    url = "file://" + urllib.parse.quote(str(path))
    double_quoted = '"' + str(path) + '"'
    for written in (double_quoted, escaped, url, str(path), f"{double_quoted} "):
        assert await said(chat, out, written) == expected, written
        assert await said(chat, out, f"/match {written}") == expected, written


async def test_add_takes_quoted_paths_and_keeps_the_label_whole(engine: Engine, settings: Settings, tmp_path: Path,
                                                                photos: dict[str, Path]) -> None:
    path = tmp_path / "a flower.jpg"
    shutil.copy(photos["flower"], path)
    chat, out = console(service_for(settings, engine), tmp_path)
    added = await said(chat, out, f"/add '{path}' | red \"rose\" | it's a 'flower' | in bloom")
    assert added == "bot> Added #1 \u201cred \"rose\"\u201d (it's a 'flower' | in bloom) to this chat's gallery.\n"
    url = "file://" + urllib.parse.quote(str(path))
    again = await said(chat, out, f"/add {url}|rose|in a vase")
    assert again == "bot> Updated #1 \u201crose\u201d (in a vase) to this chat's gallery.\n"
    bare = await said(chat, out, f"/add {str(path).replace(' ', chr(92) + ' ')} flower")  # no "|" before the label
    assert bare == "bot> Updated #1 \u201cflower\u201d to this chat's gallery.\n"


async def test_missing_paths_and_unknown_commands(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    chat, out = console(service_for(settings, engine), tmp_path)
    missing = tmp_path / "no such" / "photo.jpg"
    assert await said(chat, out, f"/match '{missing}'") == f"bot> No such file: {missing}\n"
    assert await said(chat, out, f"'{missing}'") == f"bot> No such file: {missing}\n"
    assert await said(chat, out, f"/add {missing} | label") == f"bot> No such file: {missing}\n"
    assert await said(chat, out, "cat.jpg") == "bot> No such file: cat.jpg\n"
    folder = await said(chat, out, f"/colors {tmp_path}")
    assert folder == f"bot> {tmp_path} is a folder; give the path of an image file in it.\n"
    assert await said(chat, out, "/frobnicate now") == "bot> I don't know that command; /help lists them.\n"
    assert await said(chat, out, "/match") == "bot> Give a path to an image file, for example: /match photos/cat.jpg\n"


# -- wording --------------------------------------------------------------------------------------

async def test_hints_use_the_console_syntax(engine: Engine, settings: Settings, tmp_path: Path,
                                            photos: dict[str, Path]) -> None:
    service = service_for(settings, engine)
    chat, out = console(service, tmp_path)
    assert await said(chat, out, "/list") == f"bot> {CONSOLE_EMPTY}\n"
    assert await said(chat, out, "a red car") == f"bot> {CONSOLE_EMPTY}\n"
    assert await said(chat, out, f"/add {photos['rocket']}") == (
        "bot> Give the photo a label. To add an image, use /add PATH | label | description.\n")
    expired = await service.press(chat.ctx, "next:gone:1")
    assert expired.text == "These results have expired; give me an image file's path or /find again."
    help_text = await said(chat, out, "/help")
    assert help_text.startswith("bot> Give me an image file's path and I'll answer with the closest image")
    assert "photo" not in help_text.split("\n", 1)[0] and "any other text is searched" in help_text


def test_each_front_end_keeps_its_own_wording() -> None:
    no_images = "This gallery has no images yet. "
    assert empty_gallery_text(CHAT_STYLE) == no_images + (
        "To add an image, send a photo with the caption /add label | description "
        "(or reply /add label | description to a photo).")
    assert empty_gallery_text(DISCORD_STYLE) == no_images + "To add an image, use /add image label [description]."
    assert empty_gallery_text(ConsoleStyle()) == CONSOLE_EMPTY
    assert expired_text(CHAT_STYLE) == "These results have expired; send me a photo or /find again."


# -- cards and counts ------------------------------------------------------------------------------

async def test_each_card_gets_its_own_file(gallery: Engine, settings: Settings, tmp_path: Path) -> None:
    chat, out = console(service_for(settings, gallery), tmp_path)
    await said(chat, out, "rocket")
    shown = [await said(chat, out, "/top") for _ in range(2)]
    cards = [Path(text.split("  image: ")[1].strip()) for text in shown]
    assert cards[0] != cards[1] and sorted((tmp_path / "cards").iterdir()) == sorted(cards)
    assert all(card.name.endswith("-top.png") and card.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for card in cards)


async def test_counts_have_the_right_plural(gallery: Engine, settings: Settings, tmp_path: Path,
                                            photos: dict[str, Path]) -> None:
    chat, out = console(service_for(settings, gallery), tmp_path)
    await said(chat, out, f"/add {photos['flower']} | flower")
    assert (await said(chat, out, "/stats")).startswith(  # then how matches are judged (core.search.calibration)
        "bot> This chat's gallery: 1 image.\nbot> Shared gallery: 4 images.\n"
        "bot> Searches here look through 5 images.\n")
    assert (await said(chat, out, "/list")).startswith("bot> This chat's gallery (1 image, newest first):\n")
    assert (await said(chat, out, f"/scores {photos['rocket']}")).startswith("bot> Scores against 5 images, best")
    assert [plural(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert plural(1, "match", "matches") == "1 match" and plural(3, "match", "matches") == "3 matches"


async def test_read_prints_the_text_in_the_picture(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    needs_reader()
    chat, out = console(service_for(settings, engine), tmp_path)
    sign = tmp_path / "my photos" / "sign.jpg"  # a path with a space, as a dragged-in one may be
    sign.parent.mkdir()
    sign.write_bytes(text_picture(fmt="JPEG"))
    answer = await said(chat, out, f"/read {sign}")
    assert answer.startswith("bot> The text in this picture:\n") and "bot> SUNFLOWER42\n" in answer
    assert fold("WIFI PASSWORD") in fold(answer)
    assert await said(chat, out, "/read") == (
        "bot> Give a path to an image file, for example: /read photos/cat.jpg\n")
    assert "/read PATH" in await said(chat, out, "/help")
