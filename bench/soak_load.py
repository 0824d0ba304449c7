"""The soak's load: Telegram updates for many chats, and the answers they must get.

A :class:`Soak` pushes updates into the fake Bot API (photos, searches, ``/add`` and ``/delete``,
button presses taken from the bot's own replies, bad files), at most ``IN_FLIGHT`` at a time and
one per chat, routes the fake's recorded calls back to the requests they answer, and checks each
answer. bench/soak.py builds the bot, runs a Soak against it and measures.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from tests.conftest import PHOTO_FILES
from tests.fakes.telegram import BOT_USER, Call, FakeTelegram

TOKEN = "123456:SOAK-token-for-the-fake-server"
IN_FLIGHT = 32
PRIVATE_CHATS = 100
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
        self.latencies: list[tuple[str, float]] = []  # (kind, seconds) of each answered request
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
        self.latencies.append((kind, time.perf_counter() - start))
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


