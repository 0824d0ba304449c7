"""The fakes refuse what Telegram and Discord refuse, in their words, as the real clients see it.

Each rule of tests/fakes/telegram/ and tests/fakes/discord/, proven with python-telegram-bot's
``telegram.Bot`` and discord.py's client pointed at the fakes (aiohttp directly where a client would
hide the response's shape).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import discord
import pytest
from discord.http import Route
from PIL import Image
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InlineQueryResultCachedPhoto, InputMediaPhoto
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.request import HTTPXRequest

import adapters.telegram  # noqa: F401  (opts in to PTB's timedelta durations, as the bot does)
from tests.fakes.discord import APP_ID, CHANNEL_ID, GUILD_ID, FakeDiscord, user
from tests.fakes.telegram import FakeTelegram, parse_html, parse_markdown_v2, utf16_len

TOKEN = "123456:STRICT-token-for-the-fake-server"
PRIVATE = 11
GROUP = -100123
MiB = 1024 * 1024


def jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, "JPEG")
    return buf.getvalue()


def retry_seconds(exc: RetryAfter) -> float:
    value = exc.retry_after  # a timedelta: adapters.telegram opts in to PTB's next-major durations
    assert isinstance(value, timedelta)
    return value.total_seconds()


# -- Telegram -----------------------------------------------------------------------------------------------------

TelegramFactory = Callable[..., Awaitable[tuple[FakeTelegram, Bot]]]


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramFactory]:
    """Start a FakeTelegram with the given limits and a real ``telegram.Bot`` initialised against it."""
    stack = contextlib.AsyncExitStack()

    async def make(read_timeout: float = 5.0, **limits: Any) -> tuple[FakeTelegram, Bot]:
        fake = FakeTelegram(TOKEN, **limits)
        fake.private.started.add(PRIVATE)  # PRIVATE wrote to the bot before: it may answer there
        await fake.start()
        stack.push_async_callback(fake.stop)
        request = HTTPXRequest(read_timeout=read_timeout, connect_timeout=2.0)
        bot = Bot(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url, request=request)
        await stack.enter_async_context(bot)  # getMe: the real client's handshake
        return fake, bot

    async with stack:
        yield make


async def test_text_is_1_to_4096_utf16_units_after_parsing_and_stripping(telegram: TelegramFactory) -> None:
    fake, bot = await telegram()
    await bot.send_message(PRIVATE, "x" * 4096)
    await bot.send_message(PRIVATE, "😀" * 2048)  # 2048 characters, 4096 UTF-16 units
    await bot.send_message(PRIVATE, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")  # tags are not text
    await bot.send_message(PRIVATE, "  " + "x" * 4096 + "\n\n")  # surrounding blanks are stripped
    for text in ("x" * 4097, "😀" * 2049):
        with pytest.raises(BadRequest, match=r"^Message is too long$"):
            await bot.send_message(PRIVATE, text)
    for text in ("   \n", "<b> </b>"):
        with pytest.raises(BadRequest, match=r"^Message text is empty$"):
            await bot.send_message(PRIVATE, text, parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"^Message is too long$"):
        await bot.edit_message_text("x" * 4097, chat_id=PRIVATE, message_id=1)
    edited = await bot.edit_message_text("short", chat_id=PRIVATE, message_id=1)
    assert edited.message_id == 1 and edited.text == "short"  # type: ignore[union-attr]
    assert [c.description for c in fake.refused("sendMessage", "editMessageText")] == [
        "Bad Request: message is too long"] * 2 + ["Bad Request: message text is empty"] * 2 + [
        "Bad Request: message is too long"]
    assert len(fake.sent("sendMessage")) == 4 and utf16_len("😀") == 2


async def test_captions_are_at_most_1024_utf16_units_everywhere(telegram: TelegramFactory) -> None:
    fake, bot = await telegram()
    photo = jpeg(64, 48)
    sent = await bot.send_photo(PRIVATE, photo, caption="c" * 1024)
    assert sent.photo[-1].width == 64 and sent.photo[-1].height == 48  # the real size, decoded
    await bot.send_photo(PRIVATE, photo, caption="<i>" + "c" * 1024 + "</i>", parse_mode="HTML")
    too_long = "c" * 1025
    attempts: list[Awaitable[Any]] = [
        bot.send_photo(PRIVATE, photo, caption=too_long),
        bot.send_photo(PRIVATE, photo, caption="😀" * 513),
        bot.send_document(PRIVATE, b"%PDF-1.4", filename="a.pdf", caption=too_long),
        bot.edit_message_caption(chat_id=PRIVATE, message_id=5, caption=too_long),
        bot.edit_message_media(InputMediaPhoto(photo, caption=too_long), chat_id=PRIVATE, message_id=5),
        bot.send_media_group(PRIVATE, [InputMediaPhoto(photo, caption=too_long), InputMediaPhoto(photo)]),
    ]
    for attempt in attempts:
        with pytest.raises(BadRequest, match=r"^Message caption is too long$"):
            await attempt
    assert len(fake.refused()) == len(attempts) and len(fake.sent("sendPhoto")) == 2


async def test_html_must_parse(telegram: TelegramFactory) -> None:
    fake, bot = await telegram()
    good = ('<b>bold</b> <strong>s</strong> <i>i</i> <u>u</u> <s>s</s> <tg-spoiler>x</tg-spoiler> '
            '<span class="tg-spoiler">y</span> <a href="http://e.com/?a=1&amp;b=2">link</a> <code>1 &lt; 2</code> '
            '<pre><code class="language-python">x = 1</code></pre> <blockquote>q</blockquote> a &amp; b & c')
    sent = await bot.send_message(PRIVATE, good, parse_mode="HTML")
    assert sent.text == parse_html(good) == "bold s i u s x y link 1 < 2 x = 1 q a & b & c"
    assert fake.sent("sendMessage")[0].params["text"] == good  # the call records what was sent
    refusals = {
        "<b>bold": 'Can\'t find end tag corresponding to start tag "b"',
        "<b>x</i>": 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"',
        "x</b>": "Unexpected end tag at byte offset 1",
        "line<br>break": 'Unsupported start tag "br" at byte offset 4',
        "1 < 2": 'Unsupported start tag "" at byte offset 2',
        '<span class="red">x</span>': 'Tag "span" must have class "tg-spoiler"',
        "<b": "Unclosed start tag at byte offset 0",
    }
    for text, reason in refusals.items():
        with pytest.raises(BadRequest, match=r"^Can't parse entities: "):
            await bot.send_message(PRIVATE, text, parse_mode="HTML")
        assert reason in fake.refused()[-1].description, text  # PTB lower-cases all but the first letter
    with pytest.raises(BadRequest, match=r"^Can't parse entities: "):  # captions parse too
        await bot.send_photo(PRIVATE, jpeg(8, 8), caption="<b>unclosed", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"^Unsupported parse_mode$"):
        await bot.send_message(PRIVATE, "x", parse_mode="BBCode")
    await bot.send_message(PRIVATE, "1 < 2 and <b>", parse_mode=None)  # no parse mode: nothing to parse
    assert len(fake.refused()) == len(refusals) + 2


async def test_markdown_v2_reserved_characters_must_be_escaped(telegram: TelegramFactory) -> None:
    fake, bot = await telegram()
    good = r"Score: 0\.93 *bold _italic_* __under__ ~strike~ ||spoiler|| `a.b(c)` [link](http://e.com/x\)y) \#1"
    await bot.send_message(PRIVATE, good, parse_mode="MarkdownV2")
    assert parse_markdown_v2(good) == "Score: 0.93 bold italic under strike spoiler a.b(c) link #1"
    await bot.send_message(PRIVATE, ">quoted\n>lines", parse_mode="MarkdownV2")
    await bot.send_message(PRIVATE, "```python\nprint(1.5)\n```", parse_mode="MarkdownV2")
    for text, reason in {
        "Score: 0.93": "Character '.' is reserved and must be escaped with the preceding '\\'",
        "match 1 of 4 (top)": "Character '(' is reserved",
        "a-b": "Character '-' is reserved",
        "wow!": "Character '!' is reserved",
        "*bold": "Can't find end of Bold entity at byte offset 0",
        "x _it": "Can't find end of Italic entity at byte offset 2",
        "a > b": "Character '>' is reserved",
    }.items():
        with pytest.raises(BadRequest, match=r"^Can't parse entities: "):
            await bot.send_message(PRIVATE, text, parse_mode="MarkdownV2")
        assert reason in fake.refused()[-1].description, text
    # Legacy Markdown: no escaping rules for '.', but entities must close.
    await bot.send_message(PRIVATE, "Score: 0.93 (top) *bold*", parse_mode="Markdown")
    with pytest.raises(BadRequest, match=r"^Can't parse entities: "):
        await bot.send_message(PRIVATE, "Score *bold", parse_mode="Markdown")
    assert fake.refused()[-1].description == (
        "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 6")
    assert len(fake.sent("sendMessage")) == 4


async def test_callback_data_is_1_to_64_bytes(telegram: TelegramFactory) -> None:
    fake, bot = await telegram()
    ok = InlineKeyboardMarkup([[InlineKeyboardButton("Next", callback_data="n" * 64)]])
    sent = await bot.send_message(PRIVATE, "x", reply_markup=ok)
    assert sent.reply_markup == ok
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("Next", callback_data="é" * 33)]])  # 66 bytes
    with pytest.raises(BadRequest, match=r"^Button_data_invalid$"):
        await bot.send_photo(PRIVATE, jpeg(8, 8), reply_markup=too_long)
    with pytest.raises(BadRequest, match=r"^Button_data_invalid$"):
        await bot.edit_message_media(InputMediaPhoto(jpeg(8, 8)), chat_id=PRIVATE, message_id=3,
                                     reply_markup=too_long)
    assert fake.refused()[0].description == "Bad Request: BUTTON_DATA_INVALID"


async def test_photo_dimensions_size_and_decoding(telegram: TelegramFactory) -> None:
    fake, bot = await telegram()
    await bot.send_photo(PRIVATE, jpeg(2000, 100))  # ratio exactly 20
    await bot.send_photo(PRIVATE, jpeg(6000, 4000))  # sides sum to exactly 10000
    for width, height in ((12000, 400), (2100, 100), (100, 2100), (6000, 4001)):
        with pytest.raises(BadRequest, match=r"^Photo_invalid_dimensions$"):
            await bot.send_photo(PRIVATE, jpeg(width, height))
    with pytest.raises(BadRequest, match=r"^Photo_invalid_dimensions$"):
        await bot.edit_message_media(InputMediaPhoto(jpeg(12000, 400)), chat_id=PRIVATE, message_id=9)
    with pytest.raises(BadRequest, match=r"^Photo_invalid_dimensions$"):
        await bot.send_media_group(GROUP, [InputMediaPhoto(jpeg(8, 8)), InputMediaPhoto(jpeg(12000, 400))])
    for data in (b"not an image at all", jpeg(640, 480)[:1500]):  # garbage, and a truncated JPEG
        with pytest.raises(BadRequest, match=r"^Image_process_failed$"):
            await bot.send_photo(PRIVATE, data)
    padded = jpeg(64, 64) + b"\0" * (10 * MiB + 1)  # decodes fine, but over 10 MB
    assert fake.photo_limit == 10 * MiB
    with pytest.raises(BadRequest, match=r"^Photo_save_file_invalid$"):
        await bot.send_photo(PRIVATE, padded)
    # The same bytes are fine as a document: those may be up to 50 MB.
    sent = await bot.send_document(PRIVATE, padded, filename="big.jpg")
    assert sent.document is not None and sent.document.file_size == len(padded)
    assert fake.document_limit == 50 * MiB
    assert [c.status for c in fake.refused()] == [400] * 9


async def test_documents_over_the_limit_are_too_large(telegram: TelegramFactory) -> None:
    fake, bot = await telegram(document_limit=2 * MiB)
    await bot.send_document(PRIVATE, b"x" * (2 * MiB), filename="ok.bin")
    with pytest.raises(NetworkError, match="Request Entity Too Large"):
        await bot.send_document(PRIVATE, b"x" * (2 * MiB + 1), filename="big.bin")
    [refused] = fake.refused("sendDocument")
    assert (refused.status, refused.description) == (413, "Request Entity Too Large")


async def test_the_21st_message_to_a_group_within_the_window_is_refused(telegram: TelegramFactory) -> None:
    fake, bot = await telegram(group_window=2.0)
    assert (fake.group_limit, fake.private_limit, fake.private_window) == (20, 1, 1.0)
    for n in range(20):
        await bot.send_message(GROUP, f"message {n}")
    with pytest.raises(RetryAfter) as exc:
        await bot.send_photo(GROUP, jpeg(8, 8))
    assert 1 <= retry_seconds(exc.value) <= 2
    [refused] = fake.refused("sendPhoto")
    assert refused.status == 429 and refused.description.startswith("Too Many Requests: retry after ")
    # Edits and callback answers do not count, nor do other chats; the refused call did not either.
    await bot.edit_message_text("edited", chat_id=GROUP, message_id=1)
    await bot.answer_callback_query("cb1")
    await bot.send_message(GROUP - 1, "another group")
    assert fake.max_in_window(GROUP) == 20 and fake.max_in_window(GROUP - 1) == 1
    with pytest.raises(RetryAfter):
        await bot.send_message(GROUP, "still too soon")
    assert len(fake.sent("sendMessage")) == 21 and len(fake.refused()) == 2


async def test_the_group_window_rolls(telegram: TelegramFactory) -> None:
    fake, bot = await telegram(group_limit=2, group_window=0.5)
    await bot.send_message(GROUP, "one")
    await bot.send_message(GROUP, "two")
    with pytest.raises(RetryAfter) as exc:
        await bot.send_message(GROUP, "three")
    assert retry_seconds(exc.value) == 1  # the seconds rounded up, at least 1
    await asyncio.sleep(0.55)
    await bot.send_message(GROUP, "three, later")
    assert fake.max_in_window(GROUP) == 2 and fake.max_in_window(GROUP, 10.0) == 3


async def test_media_groups_count_once_per_item(telegram: TelegramFactory) -> None:
    fake, bot = await telegram(group_limit=3, group_window=2.0)
    album = await bot.send_media_group(GROUP, [InputMediaPhoto(jpeg(8, 8)), InputMediaPhoto(jpeg(9, 9))])
    assert len(album) == 2 and album[0].media_group_id == album[1].media_group_id
    with pytest.raises(RetryAfter):  # two more do not fit in the one place left
        await bot.send_media_group(GROUP, [InputMediaPhoto(jpeg(8, 8)), InputMediaPhoto(jpeg(9, 9))])
    with pytest.raises(BadRequest, match=r"^Wrong number of messages in a media group"):
        await bot.send_media_group(GROUP, [InputMediaPhoto(jpeg(8, 8))])  # an album has 2 to 10 items
    await bot.send_message(GROUP, "the third")
    with pytest.raises(RetryAfter):
        await bot.send_message(GROUP, "the fourth")
    assert fake.max_in_window(GROUP) == 3


async def test_private_bursts_are_recorded_not_refused(telegram: TelegramFactory) -> None:
    fake, bot = await telegram()
    for n in range(5):
        await bot.send_message(PRIVATE, f"burst {n}")
    assert fake.refused() == []
    assert fake.max_in_window(PRIVATE) == 5 > fake.private_limit  # what a test of pacing asserts on
    assert fake.max_in_window(PRIVATE, 0.0) == 0 and fake.max_in_window(12345) == 0


async def test_injected_429_and_html_errors(telegram: TelegramFactory) -> None:
    fake, bot = await telegram()
    fake.inject("sendMessage", "429")
    with pytest.raises(RetryAfter) as exc:
        await bot.send_message(PRIVATE, "x")
    assert retry_seconds(exc.value) == 1
    await bot.send_message(PRIVATE, "only the next call was refused")
    fake.inject("sendPhoto", "500-html", times=2)
    for _ in range(2):
        with pytest.raises(NetworkError, match=r"Internal Server Error \(500\)\. Parsing the server response"):
            await bot.send_photo(PRIVATE, jpeg(8, 8))
    await bot.send_photo(PRIVATE, jpeg(8, 8))
    fake.inject("getFile", "502-html")
    with pytest.raises(NetworkError, match=r"Bad Gateway \(502\)"):
        await bot.get_file("anything")
    assert [(c.method, c.status) for c in fake.refused()] == [
        ("sendMessage", 429), ("sendPhoto", 500), ("sendPhoto", 500), ("getFile", 502)]
    # The body really is a proxy's HTML page, not JSON.
    fake.inject("getMe", "500-html")
    async with aiohttp.ClientSession() as session, session.post(f"{fake.base_url}{TOKEN}/getMe") as response:
        assert response.status == 500 and response.content_type == "text/html"
        assert "<h1>500 Internal Server Error</h1>" in await response.text()
    with pytest.raises(ValueError, match="unknown fault"):
        fake.inject("sendMessage", "503")


async def test_injected_download_fault(telegram: TelegramFactory) -> None:
    fake, bot = await telegram()
    fake.add_file("f1", jpeg(8, 8), "photos/f1.jpg")
    fake.inject("download", "502-html")
    tg_file = await bot.get_file("f1")
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await tg_file.download_as_bytearray()
    assert await tg_file.download_as_bytearray() == bytearray(jpeg(8, 8))


async def test_injected_hang_times_the_client_out_and_stop_still_ends_it(telegram: TelegramFactory) -> None:
    fake, bot = await telegram(read_timeout=0.3)
    fake.inject("sendMessage", "hang")
    started = time.monotonic()
    with pytest.raises(TimedOut):
        await bot.send_message(PRIVATE, "x")
    assert time.monotonic() - started < 1.0
    [hung] = fake.refused("sendMessage")
    assert hung.status == 0  # never answered
    await bot.send_message(PRIVATE, "the next call is answered")
    fake.inject("sendMessage", "hang")
    pending = asyncio.create_task(bot.send_message(PRIVATE, "y", read_timeout=30))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await fake.stop()  # releases the hanging handler: no wait for aiohttp's shutdown timeout
    assert time.monotonic() - started < 1.0
    with contextlib.suppress(NetworkError):
        await pending


async def test_error_bodies_have_the_bot_api_shape(telegram: TelegramFactory) -> None:
    fake, _ = await telegram(group_limit=1, group_window=5.0)
    url = f"{fake.base_url}{TOKEN}"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/sendMessage", json={"chat_id": PRIVATE, "text": "x" * 4097}) as response:
            assert response.status == 400
            assert await response.json() == {"ok": False, "error_code": 400,
                                             "description": "Bad Request: message is too long"}
        async with session.post(f"{url}/sendMessage", data={"chat_id": str(GROUP), "text": "123"}) as response:
            body = await response.json()
            assert body["ok"] and body["result"]["text"] == "123"  # a text stays text, even if it looks like JSON
        async with session.post(f"{url}/sendMessage", json={"chat_id": GROUP, "text": "x"}) as response:
            assert response.status == 429
            assert await response.json() == {"ok": False, "error_code": 429,
                                             "description": "Too Many Requests: retry after 5",
                                             "parameters": {"retry_after": 5}}


# -- Discord ------------------------------------------------------------------------------------------------------

class ToFake(discord.http.HTTPClient):
    """discord.py's own HTTP client, with REST routes sent to the fake (set on this instance only)."""

    api_base = ""

    async def request(self, route: Route, **kwargs: Any) -> Any:
        if route.url.startswith(Route.BASE):
            route.url = self.api_base + route.url[len(Route.BASE):]
        return await super().request(route, **kwargs)


DiscordFactory = Callable[..., Awaitable[tuple[FakeDiscord, discord.Client]]]


@pytest.fixture
async def discord_client() -> AsyncIterator[DiscordFactory]:
    """Start a FakeDiscord and log a real ``discord.Client`` in against it (REST only, no gateway)."""
    stack = contextlib.AsyncExitStack()

    async def make(**limits: Any) -> tuple[FakeDiscord, discord.Client]:
        fake = FakeDiscord(**limits)
        await fake.start()
        stack.push_async_callback(fake.stop)
        client = discord.Client(intents=discord.Intents.none())
        client.http.__class__ = ToFake
        assert isinstance(client.http, ToFake)
        client.http.api_base = fake.api_base
        await client.login("fake-discord-token")
        stack.push_async_callback(client.close)
        return fake, client

    async with stack:
        yield make


def channel(client: discord.Client) -> discord.PartialMessageable:
    return client.get_partial_messageable(int(CHANNEL_ID), guild_id=int(GUILD_ID))


async def test_content_and_embed_lengths(discord_client: DiscordFactory) -> None:
    fake, client = await discord_client()
    await channel(client).send("x" * 2000, embed=discord.Embed(title="t" * 256, description="d" * 4096))
    refusals = {
        "In content: Must be 2000 or fewer in length.": {"content": "x" * 2001},
        "In embeds.0.description: Must be 4096 or fewer in length.": {"embed": discord.Embed(description="d" * 4097)},
        "In embeds.0.title: Must be 256 or fewer in length.": {"embed": discord.Embed(title="t" * 257)},
        "In embeds: Embed size exceeds maximum size of 6000": {
            "embeds": [discord.Embed(description="d" * 4000), discord.Embed(description="d" * 2001)]},
    }
    for reason, kwargs in refusals.items():
        with pytest.raises(discord.HTTPException) as exc:
            await channel(client).send(**kwargs)
        assert (exc.value.status, exc.value.code) == (400, 50035)
        assert reason in exc.value.text, exc.value.text
    assert len(fake.sent("POST", "/messages")) == 1 and len(fake.refused("POST", "/messages")) == len(refusals)


async def test_follow_ups_and_callbacks_are_checked_too(discord_client: DiscordFactory) -> None:
    fake, _ = await discord_client()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.api_base}/webhooks/{APP_ID}/tok1", json={"content": "x" * 2001}) as response:
            assert response.status == 400
            assert await response.json() == {"code": 50035, "message": "Invalid Form Body", "errors": {
                "content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                         "message": "Must be 2000 or fewer in length."}]}}}
        callback = {"type": 7, "data": {"embeds": [{"description": "d" * 4097}], "components": [
            {"type": 1, "components": [{"type": 2, "label": "L" * 81, "custom_id": "c" * 101}]}]}}
        async with session.post(f"{fake.api_base}/interactions/1/tok/callback", json=callback) as response:
            assert response.status == 400
            errors = (await response.json())["errors"]["data"]
        assert errors["embeds"]["0"]["description"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
        assert set(errors["components"]["0"]["components"]["0"]) == {"label", "custom_id"}
        async with session.patch(f"{fake.api_base}/webhooks/{APP_ID}/tok1/messages/@original",
                                 json={"embeds": [{"description": "fine"}]}) as response:
            assert response.status == 200
    assert [c.status for c in fake.calls if c.path.startswith(("/webhooks", "/interactions"))] == [400, 400, 200]


async def test_uploads_over_the_limit_are_too_large(discord_client: DiscordFactory) -> None:
    fake, client = await discord_client()
    assert fake.upload_limit == 10 * MiB  # a server without boosts
    await channel(client).send(file=discord.File(io.BytesIO(b"x" * (10 * MiB)), "exactly.bin"))
    for files in ([discord.File(io.BytesIO(b"x" * (10 * MiB + 1)), "over.bin")],
                  [discord.File(io.BytesIO(b"x" * (6 * MiB)), f"{n}.bin") for n in range(2)]):
        with pytest.raises(discord.HTTPException) as exc:
            await channel(client).send(files=files)
        assert (exc.value.status, exc.value.code, exc.value.text) == (413, 40005, "Request entity too large")
    assert [c.status for c in fake.calls if c.path.endswith("/messages")] == [200, 413, 413]


async def test_upload_limit_agrees_with_the_guild_and_interactions(discord_client: DiscordFactory) -> None:
    fake, client = await discord_client()
    guild = await client.fetch_guild(int(GUILD_ID))
    assert guild.premium_tier == 0 and guild.filesize_limit == fake.upload_limit == 10 * MiB
    assert fake.slash(user("11", "alice"), "match")["attachment_size_limit"] == fake.upload_limit
    boosted, client = await discord_client(premium_tier=2)
    guild = await client.fetch_guild(int(GUILD_ID))
    assert guild.filesize_limit == boosted.upload_limit == 50 * MiB
    tuned, _ = await discord_client(upload_limit=1000)
    async with aiohttp.ClientSession() as session:
        form = aiohttp.FormData()
        form.add_field("payload_json", '{"content": "hi"}', content_type="application/json")
        form.add_field("files[0]", b"x" * 1001, filename="a.bin")
        async with session.post(f"{tuned.api_base}/webhooks/{APP_ID}/tok", data=form) as response:
            assert response.status == 413
            assert await response.json() == {"code": 40005, "message": "Request entity too large"}


async def test_injected_429_is_waited_out_by_discord_py(discord_client: DiscordFactory) -> None:
    fake, client = await discord_client()
    fake.inject(f"/channels/{CHANNEL_ID}/messages", "429")
    started = time.monotonic()
    await channel(client).send("after the rate limit")
    assert 0.1 <= time.monotonic() - started < 1.0
    assert [c.status for c in fake.calls if c.path.endswith("/messages")] == [429, 200]
    fake.inject("/users/@me", "429")
    async with aiohttp.ClientSession() as session, session.get(f"{fake.api_base}/users/@me") as response:
        assert response.status == 429 and response.headers["Via"]
        assert response.headers["X-RateLimit-Remaining"] == "0" and "X-RateLimit-Bucket" in response.headers
        assert float(response.headers["X-RateLimit-Reset-After"]) == 0.1
        assert await response.json() == {"message": "You are being rate limited.", "retry_after": 0.1,
                                         "global": False}


async def test_injected_html_errors(discord_client: DiscordFactory) -> None:
    fake, client = await discord_client()
    fake.inject("/users/@me", "500-html")
    fake.inject("/attachments/", "502-html")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.api_base}/users/@me") as response:
            assert response.status == 500 and response.content_type == "text/html"
            assert "500 Internal Server Error" in await response.text()
        att = fake.attachment(b"data", "a.jpg", "image/jpeg")
        async with session.get(att["url"]) as response:
            assert response.status == 502 and response.content_type == "text/html"
        async with session.get(att["url"]) as response:
            assert response.status == 200 and await response.read() == b"data"
    # discord.py retries a 5xx once after a second, and gets through.
    fake.inject(f"/channels/{CHANNEL_ID}/messages", "500-html")
    await channel(client).send("after a server error")
    assert [c.status for c in fake.calls if c.path.endswith("/messages")] == [500, 200]
    assert [c.status for c in fake.refused()] == [500, 502, 500]


async def test_injected_hang(discord_client: DiscordFactory) -> None:
    fake, client = await discord_client()
    fake.inject(f"/channels/{CHANNEL_ID}/messages", "hang")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(channel(client).send("never answered"), 0.3)
    assert [c.status for c in fake.refused()] == [0]
    await channel(client).send("the next one is")
    fake.inject(f"/channels/{CHANNEL_ID}/messages", "hang")
    pending = asyncio.create_task(channel(client).send("pending at stop"))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await fake.stop()
    assert time.monotonic() - started < 1.0
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError, discord.HTTPException, aiohttp.ClientError):
        await pending


async def test_private_chats_the_user_never_opened_and_inline_answers(telegram: TelegramFactory) -> None:
    fake, bot = await telegram()
    with pytest.raises(Forbidden, match="bot can't initiate conversation with a user"):
        await bot.send_message(99, "hello")
    fake.push({"message": {"message_id": 1, "date": 0, "chat": {"id": 99, "type": "private"},
                           "from": {"id": 99, "is_bot": False, "first_name": "New"}, "text": "/start"}})
    await bot.send_message(99, "hello")  # once they wrote, the bot may answer
    sent = await bot.send_photo(PRIVATE, photo=jpeg(40, 30), caption="x")
    file_id = sent.photo[-1].file_id
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):  # no such inline query was asked
        await bot.answer_inline_query("q0", [InlineQueryResultCachedPhoto("1", file_id)])
    for n, (results, error) in enumerate([
        ([InlineQueryResultCachedPhoto("1", "made-up-file-id")], "wrong file identifier"),
        ([InlineQueryResultCachedPhoto("1", file_id), InlineQueryResultCachedPhoto("1", file_id)],
         "RESULT_ID_DUPLICATE"),
        ([InlineQueryResultCachedPhoto(str(i), file_id) for i in range(51)], "RESULTS_TOO_MUCH"),
        ([InlineQueryResultCachedPhoto("1", file_id, caption="x" * 1025)], "caption is too long"),
    ]):
        fake.push({"inline_query": {"id": f"q{n + 1}", "from": {"id": 99, "is_bot": False, "first_name": "New"},
                                    "query": "cat", "offset": ""}})
        with pytest.raises(BadRequest, match=f"(?i){error}"):
            await bot.answer_inline_query(f"q{n + 1}", results)
    fake.push({"inline_query": {"id": "ok", "from": {"id": 99, "is_bot": False, "first_name": "New"},
                                "query": "cat", "offset": ""}})
    assert await bot.answer_inline_query("ok", [InlineQueryResultCachedPhoto("1", file_id)], cache_time=5)
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):  # answered once
        await bot.answer_inline_query("ok", [])
