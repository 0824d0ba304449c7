"""Soak: a long mixed run of the real Telegram stack against the fake Bot API, for leaks and throughput.

The bot is built as ``clipbot run`` builds it (``build_chat_engine``, ``build_service`` and
``TelegramPlatform``, its flood limiter included; a second, shorter run goes without the limiter)
and talks real HTTP over loopback to the tests' fake Bot API. Updates are pushed into the fake:
photos to match, ``/find``, ``/add`` with a caption, ``/delete`` of added ids, "next" and "top"
button presses taken from the bot's own replies, and bad files (a PDF, a truncated JPEG, an empty
file), spread over many private chats and a few groups. At most ``IN_FLIGHT`` requests wait at
a time, at most one per chat, and each waits for its answer with a timeout, so the run ends by
itself.

The model is the tests' tiny random CLIP in both modes: the soak measures the bot (memory,
file descriptors, tasks, throughput), not the model, which ``encode`` and ``e2e`` measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import itertools
import logging
import os
import random
import re
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import model_dir
from tests.conftest import PHOTO_FILES
from tests.fakes.telegram import BOT_USER, Call, FakeTelegram

TOKEN = "123456:SOAK-token-for-the-fake-server"
IN_FLIGHT = 32
LONG_RUN = 10_000  # requests of the run with the flood limiter: memory must be flat over its second half
SHORT_RUN = 1000  # requests of each run without it: throughput
PRIVATE_CHATS = 100
WARMUP_FRACTION = 0.10
TRACE_FRAMES = 8  # frames kept per traced allocation (--trace)
SETTLE_S = 1.0  # quiet time before each measurement, so in-flight work and idle connections settle
APOLOGY = "Sorry, something went wrong"
ANSWERS = frozenset({"sendMessage", "sendPhoto", "sendDocument", "editMessageMedia", "editMessageCaption",
                     "editMessageText"})
GALLERY = {"rocket": "on the launch pad", "coffee": "a cup", "chelsea": "ginger cat", "astronaut": "portrait",
           "motorcycle": "red and shiny", "grace_hopper": "computer scientist"}
QUERIES = ["rocket", "cat", "coffee cup", "portrait", "red motorbike", "a scientist in uniform", "color:red",
           "flowers in a garden", "something blue", "zebra"]
ADDED = re.compile(r"(?:Added|Updated) #(\d+)")
# (kind, weight): what a private request is; groups get photos with a mention, /find and /add.
MIX = [("photo", 30), ("find", 12), ("text", 5), ("add", 8), ("delete", 5), ("next", 12), ("top", 5),
       ("pdf", 3), ("pdf_as_jpeg", 2), ("truncated", 3), ("empty", 2), ("list", 2), ("stats", 2), ("help", 1)]
# What a right answer to each kind looks like (a substring of its text or caption).
EXPECT = {"photo": "Score: ", "add": "#", "delete": "Deleted #", "next": "Score: ", "top": "Top ",
          "pdf": "PDF", "pdf_as_jpeg": "PDF", "truncated": "damaged or truncated", "empty": "",
          "list": "gallery", "stats": "gallery", "help": "/find", "find": "Score: ", "text": "Score: "}
# Kinds whose answer is a picture: the shared gallery always has a best match to show.
EXPECT_METHOD = {"photo": "sendPhoto", "find": "sendPhoto", "text": "sendPhoto", "next": "editMessageMedia",
                 "top": "sendPhoto"}


@dataclass
class ChatState:
    chat: dict[str, Any]
    users: list[dict[str, Any]]
    buttons: list[str] = field(default_factory=list)  # callback data of the bot's last reply here
    added: list[int] = field(default_factory=list)

    @property
    def private(self) -> bool:
        return bool(self.chat["type"] == "private")


class ChatPool:
    """Free chats; a request takes one that suits it (one with buttons for a press), else the longest idle."""

    def __init__(self, chats: list[ChatState]) -> None:
        self.free = chats
        self.cond = asyncio.Condition()

    async def take(self, kind: str) -> ChatState:
        async with self.cond:
            await self.cond.wait_for(lambda: bool(self.free))
            for k, state in enumerate(self.free):
                if _suits(kind, state):
                    return self.free.pop(k)
            return self.free.pop(0)

    async def give(self, state: ChatState) -> None:
        async with self.cond:
            self.free.append(state)
            self.cond.notify()


def _suits(kind: str, state: ChatState) -> bool:
    if kind == "delete":
        return bool(state.added)
    if kind in ("next", "top"):
        return any(d.startswith(f"{kind}:") for d in state.buttons)
    return True


@dataclass
class Pending:
    kind: str
    chat_id: int
    callback_id: str | None
    done: asyncio.Future[None]
    calls: list[Call] = field(default_factory=list)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _bot_rss(snapshot: dict[str, float]) -> float:
    return snapshot["rss_mb"] - snapshot["fake_files_mb"]


def _fake_files_mb(fake: FakeTelegram) -> float:
    return fake.files.memory_bytes / 2**20


def _cpu_by_thread() -> Counter[str]:
    """CPU clock ticks so far of this process's live threads, by name ("clipbot-decode_0" counts as
    "clipbot-decode"): where a request's CPU goes, as the kernel counted it."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: Counter[str] = Counter()
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # Threads Python did not start (torch's, onnxruntime's) go by their kernel name.
            name = names.get(int(tid)) or Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            out[re.sub(r"[_-]?\d+$", "", name)] += int(fields[11]) + int(fields[12])  # utime, stime
    return out


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _connections(port: int) -> tuple[int, int]:
    """Open loopback connections between the bot and the fake: (bot-side sockets, fake-side sockets).

    Both ends live in this process. The bot's HTTP pool opens connections under load and closes
    them when idle (httpx: after 5 s), and the fake's server runs one task per connection, so
    these are counted apart from the fds and tasks that a leak would leave.
    """
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                ours.add(target[8:-1])
    client = server = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                if state != "01" or inode not in ours:  # 01: established
                    continue
                if int(local.rsplit(":", 1)[1], 16) == port:
                    server += 1
                elif int(remote.rsplit(":", 1)[1], 16) == port:
                    client += 1
    return client, server


def _jpeg(path: Path, scale: float, quality: int) -> bytes:
    img = Image.open(path).convert("RGB")
    img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _text_of(call: Call) -> str:
    if call.method == "editMessageMedia":
        return str((call.params.get("media") or {}).get("caption", ""))
    return str(call.params.get("text") or call.params.get("caption") or "")


def _buttons_of(call: Call) -> list[str]:
    markup = call.params.get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row if "callback_data" in b]


class _LogCounter(logging.Handler):
    """Counts warnings and errors logged during the run (instead of printing them), keeps a few."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.examples: list[str] = []
        self._warnings = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1
        if record.levelno < logging.ERROR:
            self._warnings += 1
            if self._warnings > 3:  # errors first: a few warnings only
                return
        if len(self.examples) < 8:
            exc = f" [{record.exc_info[0].__name__}: {record.exc_info[1]}]" if record.exc_info and \
                record.exc_info[0] else ""
            self.examples.append(f"{record.levelname} {record.name}: {record.getMessage()}{exc}"[:300])


class Soak:
    def __init__(self, fake: FakeTelegram, *, requests: int, groups: int, per_group: int, seed: int = 0,
                 timeout_s: float = 20.0) -> None:
        self.fake = fake
        self.requests = requests
        self.timeout_s = timeout_s
        self.seed = seed
        self.rng = random.Random(seed)
        self.users = [{"id": 5000 + i, "is_bot": False, "first_name": f"User{i}"} for i in range(PRIVATE_CHATS)]
        self.private = ChatPool([ChatState({"id": u["id"], "type": "private", "first_name": u["first_name"]}, [u])
                                 for u in self.users])
        self.groups = ChatPool([ChatState({"id": -1001000000000 - g, "type": "supergroup", "title": f"Group {g}"},
                                          self.rng.sample(self.users, 5)) for g in range(groups)])
        # The group flood limit is 20 messages a minute per group: a few messages per group keep it out of play.
        self.group_budget = groups * per_group
        self.pending_chat: dict[int, Pending] = {}
        self.pending_callback: dict[str, Pending] = {}
        self.ids = itertools.count(1)
        self.latencies: list[float] = []
        self.kind_latencies: list[tuple[str, float]] = []
        self.kinds: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()
        self.unanswered = 0
        self.timed_out: list[str] = []
        self.apologies = 0
        self.unexpected: list[str] = []
        self.unexpected_count = 0
        self.stray = 0
        self.refused: Counter[str] = Counter()  # calls the fake Bot API refused (400s, flood control's 429s)
        self.samples: dict[str, str] = {}  # the first answer to each kind, to read
        self.retired_chats = 0
        self.deadline = float("inf")
        self.not_sent = 0
        self._index = 0
        self._stop = False
        self._photos: list[str] = []
        self._load_files()

    # -- files in the fake ------------------------------------------------------------------------

    def _load_files(self) -> None:
        """Chat-app-like recompressed copies of every photo, and the bad files, each under a fixed file id."""
        self.sizes: dict[str, int] = {}
        for name, path in PHOTO_FILES.items():
            for v, (scale, quality) in enumerate(((0.6, 70), (0.4, 85), (0.8, 60))):
                file_id = f"photo-{name}-{v}"
                self._add(file_id, _jpeg(path, scale, quality), f"photos/{file_id}.jpg")
                self._photos.append(file_id)
        rocket = PHOTO_FILES["rocket"].read_bytes()
        self._add("bad-truncated", rocket[:4000], "photos/truncated.jpg")
        self._add("bad-pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", "documents/report.pdf")
        self._add("bad-pdf-jpeg", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", "documents/scan.jpg")
        self._add("bad-empty", b"", "documents/empty.jpg")

    def _add(self, file_id: str, data: bytes, path: str) -> None:
        self.fake.add_file(file_id, data, path)
        self.sizes[file_id] = len(data)

    def _photo(self, file_id: str) -> list[dict[str, Any]]:
        small = {"file_id": f"{file_id}-thumb", "file_unique_id": f"t{file_id}", "width": 90, "height": 60,
                 "file_size": 900}
        return [small, {"file_id": file_id, "file_unique_id": f"u{file_id}", "width": 640, "height": 427,
                        "file_size": self.sizes[file_id]}]

    def _document(self, file_id: str, name: str, mime: str) -> dict[str, Any]:
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_name": name, "mime_type": mime,
                "file_size": self.sizes[file_id]}

    # -- updates ----------------------------------------------------------------------------------

    def _message(self, state: ChatState, user: dict[str, Any], **content: Any) -> dict[str, Any]:
        return {"message": {"message_id": next(self.ids), "date": int(time.time()), "chat": state.chat, "from": user,
                            **content}}

    def _command(self, state: ChatState, user: dict[str, Any], text: str) -> dict[str, Any]:
        length = len(text.split()[0])
        return self._message(state, user, text=text, entities=[{"type": "bot_command", "offset": 0, "length": length}])

    def _update(self, kind: str, state: ChatState, rng: random.Random) -> tuple[dict[str, Any], str | None]:
        """The Telegram update for one request, and its callback query id when it is a button press."""
        user = rng.choice(state.users)
        at = "" if state.private else f"@{BOT_USER['username']}"
        photo = rng.choice(self._photos)
        if kind == "photo":
            mention = {} if state.private else {"caption": f"what is this {at}?"}
            return self._message(state, user, photo=self._photo(photo), **mention), None
        if kind == "find":
            return self._command(state, user, f"/find{at} {rng.choice(QUERIES)}"), None
        if kind == "text":
            return self._message(state, user, text=rng.choice(QUERIES)), None
        if kind == "add":
            label = photo.split("-")[1]
            caption = f"/add{at} {label} | added in the soak by {user['first_name']}"
            return self._message(state, user, photo=self._photo(photo), caption=caption), None
        if kind == "delete":
            return self._command(state, user, f"/delete{at} {state.added.pop(0)}"), None
        if kind in ("next", "top"):
            data = next(d for d in state.buttons if d.startswith(f"{kind}:"))
            callback_id = f"cb{next(self.ids)}"
            bot_message = {"message_id": next(self.ids), "date": int(time.time()), "chat": state.chat,
                           "from": BOT_USER, "photo": self._photo(photo), "caption": "a result"}
            return {"callback_query": {"id": callback_id, "from": user, "chat_instance": f"ci{state.chat['id']}",
                                       "data": data, "message": bot_message}}, callback_id
        if kind == "truncated":
            return self._message(state, user, photo=self._photo("bad-truncated")), None
        if kind == "pdf":
            return self._message(state, user, document=self._document("bad-pdf", "report.pdf", "application/pdf")), None
        if kind == "pdf_as_jpeg":
            return self._message(state, user, document=self._document("bad-pdf-jpeg", "scan.jpg", "image/jpeg")), None
        if kind == "empty":
            return self._message(state, user, document=self._document("bad-empty", "empty.jpg", "image/jpeg")), None
        return self._command(state, user, f"/{kind}{at}"), None  # list, stats, help

    @staticmethod
    def _kind(group: bool, rng: random.Random) -> str:
        if group:
            return rng.choice(["photo", "find", "add"])
        kinds, weights = zip(*MIX, strict=True)
        return str(rng.choices(kinds, weights)[0])

    @staticmethod
    def _fallback(kind: str, state: ChatState) -> str:
        """What a chat without what ``kind`` needs gets instead: a photo (whose reply has buttons) or an /add."""
        if _suits(kind, state):
            return kind
        return "add" if kind == "delete" else "photo"

    # -- answers ----------------------------------------------------------------------------------

    async def dispatch(self) -> None:
        """Moves the fake's recorded calls to the requests they answer (and drops them: no growth)."""
        while not self._stop:
            await asyncio.sleep(0.005)
            batch = self.fake.calls[:]
            del self.fake.calls[: len(batch)]
            for call in batch:
                self._route(call)

    def _route(self, call: Call) -> None:
        status = getattr(call, "status", 200)  # the fake records refused calls too, with their HTTP status
        if status != 200:
            self.refused[f"{call.method} {status} {getattr(call, 'description', '')}".strip()] += 1
            return
        if call.method == "answerCallbackQuery":
            p = self.pending_callback.get(str(call.params.get("callback_query_id")))
            if p is None:
                self.stray += 1
                return
            p.calls.append(call)
            if p.kind == "next" or call.params.get("text"):  # "top" goes on to send its collage, unless expired
                self._finish(p)
            return
        if call.method not in ANSWERS:
            return
        p = self.pending_chat.get(int(call.params.get("chat_id", 0)))
        if p is None:
            self.stray += 1
            return
        p.calls.append(call)
        apology = _text_of(call).startswith(APOLOGY)
        if apology or (p.kind != "next" and not call.method.startswith("edit")):
            self._finish(p)

    def _finish(self, p: Pending) -> None:
        self.pending_chat.pop(p.chat_id, None)
        if p.callback_id:
            self.pending_callback.pop(p.callback_id, None)
        if not p.done.done():
            p.done.set_result(None)

    def _check(self, kind: str, state: ChatState, p: Pending) -> None:
        answers = [c for c in p.calls if c.method in ANSWERS]
        for call in answers:
            self.methods[call.method] += 1
        texts = [_text_of(c) for c in answers]
        if any(t.startswith(APOLOGY) for t in texts):
            self.apologies += 1
        final = answers[-1] if answers else None
        text = texts[-1] if texts else ""
        if final is not None:
            buttons = _buttons_of(final)
            if buttons or kind in ("photo", "find", "text"):
                state.buttons = buttons
            # The same photo added twice is one image ("Updated #n"): one id to delete.
            if kind == "add" and (m := ADDED.search(text)) and int(m.group(1)) not in state.added:
                state.added.append(int(m.group(1)))
        if final is not None and kind not in self.samples:
            self.samples[kind] = f"{final.method}: {text[:100]}"
        ok = final is not None and EXPECT[kind] in text and not text.startswith(APOLOGY)
        if kind in EXPECT_METHOD:  # a result without its picture is a wrong answer too
            ok = ok and final is not None and final.method == EXPECT_METHOD[kind]
        if not ok:
            self.unexpected_count += 1
            if len(self.unexpected) < 8:
                self.unexpected.append(f"{kind}: {final.method if final else '-'} {text[:120]!r}")

    # -- requests ---------------------------------------------------------------------------------

    async def _one(self, i: int) -> None:
        rng = random.Random(self.seed * 1_000_003 + i)
        group = rng.random() < 0.05 and self.group_budget > 0
        if group:
            self.group_budget -= 1
        pool = self.groups if group else self.private
        kind = self._kind(group, rng)
        try:
            state = await asyncio.wait_for(pool.take(kind), self.timeout_s)
        except asyncio.TimeoutError:  # every chat of its kind retired after timeouts
            self.not_sent += 1
            return
        kind = self._fallback(kind, state)
        update, callback_id = self._update(kind, state, rng)
        p = Pending(kind, state.chat["id"], callback_id, asyncio.get_running_loop().create_future())
        self.pending_chat[p.chat_id] = p
        if callback_id:
            self.pending_callback[callback_id] = p
        self.kinds[kind] += 1
        start = time.perf_counter()
        self.fake.push(update)
        try:
            await asyncio.wait_for(p.done, self.timeout_s)
        except asyncio.TimeoutError:
            self._finish(p)
            self.unanswered += 1
            if len(self.timed_out) < 8:
                self.timed_out.append(f"{kind} in chat {p.chat_id}: calls {[c.method for c in p.calls]}")
            self.retired_chats += 1  # a late answer must not be taken for the next request's: retire the chat
            return
        self.latencies.append(time.perf_counter() - start)
        self.kind_latencies.append((kind, self.latencies[-1]))
        self._check(kind, state, p)
        await pool.give(state)

    async def phase(self, count: int) -> None:
        """``count`` requests, at most IN_FLIGHT at a time; returns when every one is answered or timed out."""
        end = self._index + count

        async def worker() -> None:
            while self._index < end:
                if time.monotonic() > self.deadline:
                    self.not_sent += end - self._index
                    self._index = end
                    return
                i = self._index
                self._index += 1
                await self._one(i)

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))

    def stop(self) -> None:
        self._stop = True


async def _snapshot(fake: FakeTelegram) -> dict[str, float]:
    """Memory, fds and tasks once the run is quiet; fds and tasks also without the bot-fake connections.

    ``fake_files_mb``: the files the fake holds in memory. Like Telegram, it keeps every photo the
    bot sends, so that its file id can be sent again; the soak has it keep them on disk, and any
    it held in memory would be RSS the bot does not hold: the memory target is about the bot.
    """
    await asyncio.sleep(SETTLE_S)
    gc.collect()
    fds, tasks = _fds(), len(asyncio.all_tasks())
    client, server = _connections(fake.port)
    return {"rss_mb": _rss_mb(), "fds": fds, "tasks": tasks, "connections": client,
            "fds_net": fds - client - server, "tasks_net": tasks - server,
            "fake_files_mb": _fake_files_mb(fake)}


async def _run(model: Path, *, requests: int, groups: int, per_group: int, time_limit_s: float,
               rate_limit: bool = True, trace: bool = False, ocr: str = "auto") -> dict[str, Any]:
    from adapters.telegram import TelegramPlatform
    from bot.composition import apply_process_settings, build_chat_engine, build_service
    from bot.settings import Settings

    counter = _LogCounter()
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [counter]
    try:
        with tempfile.TemporaryDirectory() as data:
            settings = Settings(  # type: ignore[call-arg]
                clip_model=str(model), data_dir=Path(data), caption_model="none", rate_limit_per_minute=0, ocr=ocr,
                _env_file=None,
            )
            apply_process_settings(settings)  # as `clipbot run` does first: glibc's arenas, torch's threads
            # Its files on disk, as Telegram keeps them on its servers: not in this process's RSS.
            fake = FakeTelegram(TOKEN, files_dir=Path(data) / "telegram-servers")
            await fake.start()
            engine = build_chat_engine(settings)
            await engine.start()
            for name, description in GALLERY.items():
                await engine.add_image(PHOTO_FILES[name], label=name, description=description)
            service = build_service(settings, engine)
            platform = TelegramPlatform(service, token=TOKEN, base_url=fake.base_url,
                                        base_file_url=fake.base_file_url,
                                        max_file_bytes=int(settings.telegram_max_file_mb * 1024 * 1024),
                                        poll_timeout=1, rate_limit=rate_limit)
            await platform.start()
            soak = Soak(fake, requests=requests, groups=groups, per_group=per_group)
            dispatcher = asyncio.create_task(soak.dispatch())
            soak.deadline = time.monotonic() + time_limit_s
            warmup = max(1, round(requests * WARMUP_FRACTION))
            try:
                await soak.phase(warmup)
                before = await _snapshot(fake)
                measured_latencies = len(soak.latencies)
                measured_kinds = len(soak.kind_latencies)
                if trace:  # only what the measured part allocates and keeps is traced
                    tracemalloc.start(TRACE_FRAMES)
                rss = [before["rss_mb"]]
                cpu_before = _cpu_by_thread()
                start = time.perf_counter()
                rest = requests - warmup
                for k in range(10):  # the measured part in tenths, RSS after each: a slope, not two points
                    await soak.phase(rest * (k + 1) // 10 - rest * k // 10)
                    rss.append(_rss_mb() - _fake_files_mb(fake) + before["fake_files_mb"])
                    if k == 4:  # halfway: memory once quiet, as at both ends, so growth is not a passing peak
                        paused = time.perf_counter()
                        middle = await _snapshot(fake)
                        start += time.perf_counter() - paused  # the quiet second is no one's request
                seconds = time.perf_counter() - start
                cpu = _cpu_by_thread()
                cpu.subtract(cpu_before)
                after = await _snapshot(fake)
                kept = _kept_allocations() if trace else None
            finally:
                soak.stop()
                await dispatcher
                await platform.stop()
                await engine.close()
                await fake.stop()
            await asyncio.sleep(0.1)
            leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    finally:
        root.handlers = saved
    latencies = soak.latencies[measured_latencies:]
    fake_growth = after["fake_files_mb"] - before["fake_files_mb"]
    answered = len(latencies)
    return {
        "requests": requests,
        "measured_requests": requests - warmup,
        "seconds": seconds,
        "rps": answered / seconds if seconds else 0.0,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p95_ms": 1000 * sorted(latencies)[round(0.95 * (len(latencies) - 1))] if latencies else float("nan"),
        "p50_ms_by_kind": _medians_ms(soak.kind_latencies[measured_kinds:]),
        "rss_mb_after_warmup": before["rss_mb"],
        "rss_mb_end": after["rss_mb"],
        # The bot's growth: the process's, less what the fake's store of sent files grew by.
        "rss_growth_mb": after["rss_mb"] - before["rss_mb"] - fake_growth,
        "process_rss_growth_mb": after["rss_mb"] - before["rss_mb"],
        "fake_files_growth_mb": fake_growth,
        "rss_trace_mb": [round(v, 1) for v in rss],
        "rss_growth_second_half_mb": _bot_rss(after) - _bot_rss(middle),
        # CPU ms per answered request over the measured part, by thread (the fake's share is in
        # MainThread: its HTTP handlers run on the bot's event loop).
        "cpu_ms_per_request": {name: round(1000 * ticks / os.sysconf("SC_CLK_TCK") / max(1, len(latencies)), 1)
                               for name, ticks in cpu.most_common() if ticks > 0},
        # Growth without the bot's pooled connections to the fake (each one 2 fds and a server task here).
        "fd_growth": after["fds_net"] - before["fds_net"],
        "task_growth": after["tasks_net"] - before["tasks_net"],
        "fds_after_warmup": before["fds"],
        "fds_end": after["fds"],
        "tasks_after_warmup": before["tasks"],
        "tasks_end": after["tasks"],
        "connections_after_warmup": before["connections"],
        "connections_end": after["connections"],
        "tasks_left_after_stop": len(leftover),
        "unanswered": soak.unanswered + soak.not_sent,
        "not_sent": soak.not_sent,
        "timed_out_examples": soak.timed_out,
        "apologies": soak.apologies,
        "unexpected_answers": soak.unexpected_count,
        "unexpected_examples": soak.unexpected,
        "stray_answers": soak.stray,
        "refused_calls": sum(soak.refused.values()),
        "refused_examples": dict(soak.refused.most_common(8)),
        "kinds": dict(sorted(soak.kinds.items())),
        "sample_answers": dict(sorted(soak.samples.items())),
        "answer_methods": dict(sorted(soak.methods.items())),
        "log_records": dict(counter.counts),
        "log_examples": counter.examples,
        "in_flight": IN_FLIGHT,
        "rate_limiter": rate_limit,
        "chats": {"private": PRIVATE_CHATS, "groups": groups},
        "model": "tiny random CLIP (the bot is measured, not the model)",
        **({"python_growth": kept} if kept is not None else {}),
    }


def _medians_ms(timed: list[tuple[str, float]]) -> dict[str, float]:
    by_kind: dict[str, list[float]] = {}
    for kind, seconds in timed:
        by_kind.setdefault(kind, []).append(seconds)
    return {kind: round(1000 * statistics.median(v), 1) for kind, v in sorted(by_kind.items())}


def _kept_allocations(top: int = 12) -> dict[str, Any]:
    """What the measured part allocated and still holds, by the line of our code that allocated it."""
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = snapshot.statistics("traceback")
    total = sum(s.size for s in stats)
    lines = []
    for stat in stats[:top]:
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in list(stat.traceback)[::-1][:TRACE_FRAMES])
        lines.append(f"{stat.size / 2**20:6.2f} MB {stat.count:7d} blocks  {where}")
    return {"mb": round(total / 2**20, 2), "blocks": sum(s.count for s in stats), "top": lines}


def run(*, smoke: bool) -> dict[str, Any]:
    """The soak as ``clipbot run`` serves (its flood limiter on), then two shorter ones without it.

    The Telegram flood limiter (python-telegram-bot's AIORateLimiter) lets at most 30 messages a
    second out, the limit Telegram sets for a bot: that, not the bot, bounds the first run's rate.
    The second run shows what the bot itself can answer; the third the same with reading the
    text of added pictures (OCR, about 0.1 s of CPU each) turned off, the bot of the last round.
    """
    model = model_dir(True)
    n, groups, per_group = (60, 2, 3) if smoke else (LONG_RUN, 8, 10)
    result = asyncio.run(_run(model, requests=n, groups=groups, per_group=per_group,
                              time_limit_s=60 if smoke else 1800))
    short = 30 if smoke else SHORT_RUN
    for key, ocr in (("no_rate_limiter", "auto"), ("no_rate_limiter_without_ocr", "none")):
        free = asyncio.run(_run(model, requests=short, groups=groups, per_group=per_group,
                                time_limit_s=60 if smoke else 600, rate_limit=False, ocr=ocr))
        result[f"rps_{key}"] = free["rps"]
        result[key] = {k: free[k] for k in (
            "requests", "seconds", "rps", "p50_ms", "p95_ms", "p50_ms_by_kind", "cpu_ms_per_request", "rss_growth_mb",
            "rss_trace_mb", "fd_growth", "task_growth", "unanswered", "apologies", "unexpected_answers",
            "unexpected_examples", "stray_answers", "refused_calls", "refused_examples", "log_records",
            "log_examples")}
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.soak [--requests N] [--no-limiter] [--trace]``: one soak run alone, as JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests in all, the first 10%% a warm-up")
    parser.add_argument("--no-limiter", action="store_true", help="without the Telegram flood limiter")
    parser.add_argument("--ocr", default="auto", help="CLIPBOT_OCR for the bot (default auto, as `clipbot run`)")
    parser.add_argument("--trace", action="store_true",
                        help="tracemalloc over the measured part: what it allocated and still holds, by line")
    args = parser.parse_args(argv)
    result = asyncio.run(_run(model_dir(True), requests=args.requests, groups=8, per_group=10,
                              time_limit_s=3600, rate_limit=not args.no_limiter, trace=args.trace, ocr=args.ocr))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
