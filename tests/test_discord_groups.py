"""Discord servers as groups: repost alerts, GIFs and videos, private results and /forget, end to end
over the fake Discord with the real discord.py client."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from adapters.discord import DiscordPlatform
from adapters.discord.groups import DMS_CLOSED
from adapters.discord.messages import DISCORD_STYLE
from bot.composition import build_service
from bot.settings import Settings
from core.chat.service import ChatService
from core.gallery.engine import Engine
from tests.conftest import PHOTO_FILES, recompressed
from tests.fakes.discord import (
    BOT,
    CHANNEL_ID,
    GUILD_ID,
    Call,
    FakeDiscord,
    fake_fixture,  # noqa: F401  (the fixture `fake`)
    user,
)
from tests.test_discord import dispatch, image_option
from tests.test_discord_conversation import answer, button, description, message_id, press

ALICE = user("11", "alice")  # the server's admin (Manage Server) in these tests
BOB = user("12", "bob")
CAROL = user("13", "carol")
MANAGE_GUILD = str(1 << 5)
MANAGE_MESSAGES = str(1 << 13)
SERVER = f"discord:{GUILD_ID}"
CHANNEL = f"/channels/{CHANNEL_ID}/messages"
Start = Callable[..., Awaitable[DiscordPlatform]]


@pytest.fixture
async def start(fake: FakeDiscord, gallery: Engine, settings: Settings) -> AsyncIterator[Start]:
    """A bot logged in against the fake, with the Message Content intent unless told otherwise
    (repost alerts see the server messages that do not mention the bot only with it)."""
    started: list[DiscordPlatform] = []

    async def make(*, message_content: bool = True) -> DiscordPlatform:
        service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)
        platform = DiscordPlatform(service, token="fake-discord-token", guild_ids=(int(GUILD_ID),),
                                   api_base_url=fake.api_base, max_file_bytes=25 * 1024 * 1024,
                                   message_content=message_content)
        await platform.login()
        started.append(platform)
        return platform

    yield make
    for platform in started:
        await platform.stop()  # the engine closes each service's repost watcher


@pytest.fixture
async def platform(start: Start) -> DiscordPlatform:
    return await start()


def service_of(platform: DiscordPlatform) -> ChatService:
    return platform.bot.service


async def slash(fake: FakeDiscord, platform: DiscordPlatform, who: dict[str, Any], name: str,
                options: list[dict[str, Any]] | None = None, attachments: dict[str, dict[str, Any]] | None = None,
                **kw: Any) -> Call:
    """A slash command; the follow-up that answered it."""
    return await answer(fake, platform, "interaction_create", fake.slash(who, name, options, attachments, **kw))


def setting(value: str) -> list[dict[str, Any]]:
    return [{"name": "setting", "type": 3, "value": value}]


async def settle(platform: DiscordPlatform) -> None:
    """Until every message dispatched so far was handled and every repost check it queued ran."""
    for _ in range(5):
        await asyncio.sleep(0)  # discord.py starts each listener as a task of its own
    while platform.bot.in_flight.count:  # noqa: ASYNC110  # InFlight signals only when drained
        await asyncio.sleep(0.01)
    await service_of(platform).watcher.join()


def post(fake: FakeDiscord, who: dict[str, Any], data: bytes, name: str = "photo.jpg",
         content_type: str = "image/jpeg", **kw: Any) -> dict[str, Any]:
    """A server message with one attachment (not addressed to the bot unless ``kw`` says so)."""
    return fake.message(who, attachments=[fake.attachment(data, name, content_type)], **kw)


def pictures(settings: Settings) -> int:
    return sum(1 for p in settings.pictures_dir.rglob("*") if p.is_file())


# -- making media: one gallery photo among frames of photos the gallery lacks ------------------------------

def frame(name: str, size: tuple[int, int]) -> Image.Image:
    return Image.open(PHOTO_FILES[name]).convert("RGB").resize(size, Image.Resampling.LANCZOS)


def gif(names: Sequence[str], *, size: tuple[int, int] = (240, 160), ms: int = 500) -> bytes:
    frames = [frame(n, size) for n in names]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], loop=0, duration=ms)
    return buf.getvalue()


def video(names: Sequence[str], *, fmt: str = "mp4", codec: str = "libx264", size: tuple[int, int] = (320, 240),
          fps: int = 4, seconds: float = 1.0) -> bytes:
    options = {"deadline": "realtime", "cpu-used": "8"} if codec.startswith("libvpx") else {}
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as box:
        stream = box.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for name in names:
            picture = av.VideoFrame.from_ndarray(np.asarray(frame(name, size)), format="rgb24")
            for _ in range(round(seconds * fps)):
                box.mux(stream.encode(picture))
        box.mux(stream.encode(None))
    return buf.getvalue()


# -- repost alerts ---------------------------------------------------------------------------------------------

async def test_watch_is_for_admins_and_a_repost_gets_one_alert(fake: FakeDiscord, platform: DiscordPlatform,
                                                               gallery: Engine, photos: dict[str, Path]) -> None:
    refused = await slash(fake, platform, BOB, "watch", setting("on"))
    assert description(refused) == "Only this chat's admins can switch repost alerts."
    on = await slash(fake, platform, ALICE, "watch", setting("on"), permissions=MANAGE_GUILD)
    assert description(on).startswith("Repost alerts are on.") and DISCORD_STYLE.watch_note() in description(on)
    state = await slash(fake, platform, BOB, "watch")
    assert description(state).startswith("Repost alerts are on here.")

    rocket = photos["rocket"].read_bytes()
    first = post(fake, ALICE, rocket, "rocket.jpg", content="look at this")
    dispatch(platform, "message_create", first)
    await settle(platform)
    second = post(fake, BOB, recompressed(photos["rocket"], scale=0.5, quality=60), "again.jpg")  # re-encoded, resized
    dispatch(platform, "message_create", second)
    [alert] = await fake.wait_for("POST", CHANNEL)
    await settle(platform)
    assert len(fake.sent("POST", CHANNEL)) == 1  # exactly one alert, for the second post
    assert alert.body["message_reference"]["message_id"] == int(second["id"])
    text = alert.body["content"]
    assert text.startswith("Seen before: posted by alice on ") and text.endswith(f"\u2014 {fake.jump_url(first)}")
    assert alert.body["allowed_mentions"] == {"parse": [], "replied_user": False}  # nobody is pinged
    assert await gallery.count_sightings(SERVER) == 2
    assert len(fake.sent("GET", "/attachments/")) == 2  # each picture downloaded once, by the watcher

    off = await slash(fake, platform, ALICE, "watch", setting("off"), permissions=MANAGE_MESSAGES)
    assert description(off).startswith("Repost alerts are off")
    dispatch(platform, "message_create", post(fake, CAROL, rocket, "third.jpg"))
    await settle(platform)
    assert len(fake.sent("POST", CHANNEL)) == 1  # no alert
    assert await gallery.count_sightings(SERVER) == 2  # and nothing recorded
    assert len(fake.sent("GET", "/attachments/")) == 2  # nor downloaded


async def test_without_watch_nothing_is_recorded(fake: FakeDiscord, platform: DiscordPlatform, gallery: Engine,
                                                 photos: dict[str, Path]) -> None:
    coffee = photos["coffee"].read_bytes()
    for who in (ALICE, BOB):
        dispatch(platform, "message_create", post(fake, who, coffee))
    addressed = post(fake, CAROL, coffee, content="<@900>", mentions=[BOT])
    reply = await answer(fake, platform, "message_create", addressed, path=CHANNEL)
    assert description(reply).startswith("coffee")  # the mention is answered, as always
    await settle(platform)
    assert await gallery.count_sightings(SERVER) == 0 and await gallery.count_sightings() == 0
    assert len(fake.sent("POST", CHANNEL)) == 1
    assert len(fake.sent("GET", "/attachments/")) == 1  # only the mention's photo, for its match


async def test_without_the_message_content_intent_mentions_are_still_checked(
        fake: FakeDiscord, start: Start, gallery: Engine, photos: dict[str, Path]) -> None:
    fake.message_content = False
    platform = await start(message_content=False)
    await slash(fake, platform, ALICE, "watch", setting("on"), permissions=MANAGE_GUILD)
    chelsea = photos["chelsea"].read_bytes()
    unread = post(fake, ALICE, chelsea)  # Discord blanks it: the bot never sees the picture
    assert unread["attachments"] == []
    dispatch(platform, "message_create", unread)
    mention = post(fake, ALICE, chelsea, content="<@900>", mentions=[BOT])
    matched = await answer(fake, platform, "message_create", mention, path=CHANNEL)
    assert description(matched).startswith("chelsea")
    again = post(fake, BOB, recompressed(photos["chelsea"]), content="<@900> seen this?", mentions=[BOT])
    dispatch(platform, "message_create", again)
    replies = await fake.wait_for("POST", CHANNEL, count=3)
    await settle(platform)
    [bobs] = [c for c in replies[1:] if c.body.get("embeds")]
    [alert] = [c for c in replies[1:] if c.body.get("content")]
    assert description(bobs).startswith("chelsea")
    assert alert.body["content"].startswith("Seen before: posted by alice on ")
    assert fake.calls.index(bobs) < fake.calls.index(alert)  # the answer first, the alert after it
    assert await gallery.count_sightings(SERVER) == 2
    # One download per picture: the match's bytes served the repost check too.
    assert len(fake.sent("GET", "/attachments/")) == 2


# -- GIFs and videos -------------------------------------------------------------------------------------------

async def test_gifs_and_videos_match_wherever_photos_do(fake: FakeDiscord, platform: DiscordPlatform,
                                                        gallery: Engine) -> None:
    animation = gif(["motorcycle", "rocket", "hubble"])
    dm = fake.message(ALICE, guild=False, attachments=[fake.attachment(animation, "fun.gif", "image/gif")])
    result = await answer(fake, platform, "message_create", dm, path="/channels/601/messages")
    assert description(result).startswith("rocket") and "Matched at 0:00." in description(result)

    clip = video(["hubble", "coffee", "motorcycle"])
    options, resolved = image_option(fake, clip, "clip.mp4", "video/mp4")
    result = await slash(fake, platform, BOB, "match", options, resolved)
    assert description(result).startswith("coffee") and "Matched at 0:01." in description(result)  # its 2nd second

    webm = video(["motorcycle", "chelsea"], fmt="webm", codec="libvpx-vp9", size=(160, 96))
    mention = post(fake, BOB, webm, "cat.webm", "video/webm", content="<@900>", mentions=[BOT])
    result = await answer(fake, platform, "message_create", mention, path=CHANNEL)
    assert description(result).startswith("chelsea") and "Matched at 0:01." in description(result)

    options, resolved = image_option(fake, video(["hubble"]), "sky.mp4", "video/mp4")
    options.append({"name": "label", "type": 3, "value": "deep sky"})
    added = await slash(fake, platform, BOB, "add", options, resolved)
    assert description(added).startswith("Added #")
    [record] = await gallery.list_images(SERVER)
    assert record.label == "deep sky" and record.added_by == "discord:12"


async def test_videos_over_the_limit_are_refused_before_download(fake: FakeDiscord, platform: DiscordPlatform,
                                                                 gallery: Engine) -> None:
    limit = gallery.video_limits.max_bytes
    size = min(limit, 25 * 1024 * 1024) + 1
    options, resolved = image_option(fake, b"\x00" * 16, "long.mp4", "video/mp4", size=size)
    told = await slash(fake, platform, ALICE, "match", options, resolved)
    assert "Send a smaller video." in description(told)
    text = fake.message(ALICE, guild=False, attachments=[fake.attachment(b"x", "notes.txt", "text/plain")])
    told = await answer(fake, platform, "message_create", text, path="/channels/601/messages")
    assert "not an image or a video" in description(told)
    assert fake.sent("GET", "/attachments/") == []


# -- private results -------------------------------------------------------------------------------------------

async def test_private_results_are_ephemeral_or_go_by_dm(fake: FakeDiscord, platform: DiscordPlatform,
                                                         photos: dict[str, Path]) -> None:
    refused = await slash(fake, platform, BOB, "results", setting("private"))
    assert description(refused) == "Only this chat's admins can change where results go."
    done = await slash(fake, platform, ALICE, "results", setting("private"), permissions=MANAGE_GUILD)
    assert description(done) == "Results now go privately to whoever asked."

    # A slash command's result: "thinking" and the result for Bob alone.
    found = await slash(fake, platform, BOB, "find", [{"name": "text", "type": 3, "value": "rocket"}])
    assert fake.sent("POST", "/callback")[-1].json == {"type": 5, "data": {"flags": 64}}
    assert description(found).startswith("rocket") and found.response["flags"] == 64
    assert fake.ephemeral_to[message_id(found)] == BOB["id"]
    again = await press(fake, platform, BOB, found, "Not this")  # its buttons answer him alone too
    assert description(again).startswith("Not #") and again.body["flags"] == 64
    with pytest.raises(AssertionError, match="ephemeral"):
        fake.press(CAROL, message_id(found), button(found, "Not this"))  # nobody else sees it
    stats = await slash(fake, platform, BOB, "stats")  # not a result: for everyone, as before
    assert fake.sent("POST", "/callback")[-1].json == {"type": 5} and not stats.response["flags"]

    # A result asked for by a message: by DM, with a pointer in the channel.
    mention = post(fake, BOB, recompressed(photos["coffee"]), content="<@900>", mentions=[BOT])
    dispatch(platform, "message_create", mention)
    [opened] = await fake.wait_for("POST", "/users/@me/channels")
    assert opened.body == {"recipient_id": int(BOB["id"])}
    dm = fake.dm_channels[BOB["id"]]
    [result] = await fake.wait_for("POST", f"/channels/{dm}/messages")
    assert description(result).startswith("coffee") and result.files
    [pointer] = await fake.wait_for("POST", CHANNEL)
    link = fake.jump_url(result.response)
    assert pointer.body["content"] == f"bob, I sent you the result in a direct message: {link}"
    assert pointer.body["message_reference"]["message_id"] == int(mention["id"])
    # Its buttons work in the DM, on the server's gallery.
    liked = await press(fake, platform, BOB, result, "More like this")
    assert description(liked).startswith("More like #")

    # Carol does not take DMs from the bot: the channel hears how to open them.
    fake.dms_closed.add(CAROL["id"])
    dispatch(platform, "message_create", post(fake, CAROL, recompressed(photos["rocket"]), content="<@900>",
                                              mentions=[BOT]))
    told = (await fake.wait_for("POST", CHANNEL, count=2))[1]
    assert told.body["content"] == DMS_CLOSED.format(name="carol")
    [closed] = fake.refused("POST", f"/channels/{fake.dm_channels[CAROL['id']]}/messages")
    assert (closed.status, closed.response["code"]) == (403, 50007)

    await slash(fake, platform, ALICE, "results", setting("here"), permissions=MANAGE_MESSAGES)
    mention = post(fake, BOB, recompressed(photos["chelsea"]), content="<@900>", mentions=[BOT])
    here = await answer(fake, platform, "message_create", mention, path=CHANNEL)
    assert description(here).startswith("chelsea")
    found = await slash(fake, platform, BOB, "find", [{"name": "text", "type": 3, "value": "rocket"}])
    assert not found.response["flags"]


# -- /forget ---------------------------------------------------------------------------------------------------

async def add(fake: FakeDiscord, platform: DiscordPlatform, who: dict[str, Any], photo: Path, label: str) -> None:
    options, resolved = image_option(fake, photo.read_bytes(), f"{label}.jpg", "image/jpeg")
    options.append({"name": "label", "type": 3, "value": label})
    added = await slash(fake, platform, who, "add", options, resolved)
    assert description(added).startswith("Added #")


async def test_forget_asks_the_asker_alone_and_erases_rows_and_files(
        fake: FakeDiscord, start: Start, gallery: Engine, settings: Settings, photos: dict[str, Path]) -> None:
    platform = await start()
    before = pictures(settings)
    await add(fake, platform, BOB, photos["china"], "temple")
    await add(fake, platform, CAROL, photos["flower"], "flower")
    assert pictures(settings) == before + 2

    ask = await slash(fake, platform, BOB, "forget")
    assert fake.sent("POST", "/callback")[-1].json == {"type": 5, "data": {"flags": 64}}  # for Bob alone
    assert description(ask).startswith("Forget your images, repost records and conversations in this chat?")
    buttons = [b for row in ask.body["components"] for b in row["components"]]
    assert [(b["label"], b["style"]) for b in buttons] == [("Yes, forget", 4), ("Cancel", 2)]
    with pytest.raises(AssertionError, match="ephemeral"):
        fake.press(CAROL, message_id(ask), button(ask, "Yes"))  # nobody else even sees the question

    cancel = await press(fake, platform, BOB, ask, "Cancel", method="PATCH")
    assert description(cancel) == "Nothing was forgotten." and cancel.body["components"] == []
    assert fake.messages[message_id(ask)]["components"] == []  # the question, answered in place

    ask = await slash(fake, platform, BOB, "forget")
    await platform.stop()
    platform = await start()  # the question outlives a restart: a dynamic item, the request in the database
    done = await press(fake, platform, BOB, ask, "Yes", method="PATCH")
    assert description(done) == "Forgot your 1 image, 0 repost records and 0 conversations in this chat."
    assert [r.label for r in await gallery.list_images(SERVER)] == ["flower"]
    assert pictures(settings) == before + 1

    # Someone else: admins only, picked as a user.
    carol = [{"name": "user", "type": 6, "value": CAROL["id"]}]
    refused = await slash(fake, platform, BOB, "forget", carol, users=[CAROL])
    assert description(refused) == "Only this chat's admins can make me forget someone else."
    ask = await slash(fake, platform, ALICE, "forget", carol, users=[CAROL], permissions=MANAGE_MESSAGES)
    assert description(ask).startswith(f"Forget {CAROL['id']}'s images")
    done = await press(fake, platform, ALICE, ask, "Yes", method="PATCH")
    assert description(done).startswith(f"Forgot {CAROL['id']}'s 1 image")
    assert await gallery.list_images(SERVER) == [] and pictures(settings) == before
    # An answered question's buttons are gone; a second press could only come from an old client.
    assert fake.messages[message_id(ask)]["components"] == []


# -- the fake's rules for all of it ----------------------------------------------------------------------------

async def test_fake_dms_and_ephemeral_messages_follow_discords_rules(fake: FakeDiscord) -> None:
    import aiohttp

    base = fake.api_base
    fake.message(BOB, content="hi")  # the fake has seen Bob
    fake.dms_closed.add(BOB["id"])
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/users/@me/channels", json={"recipient_id": "999"}) as response:
            assert (response.status, (await response.json())["code"]) == (400, 50033)
        async with session.post(f"{base}/users/@me/channels", json={"recipient_id": BOB["id"]}) as response:
            channel = await response.json()
        assert channel["type"] == 1 and channel["recipients"] == [BOB]
        async with session.post(f"{base}/channels/{channel['id']}/messages", json={"content": "hi"}) as response:
            assert await response.json() == {"message": "Cannot send messages to this user", "code": 50007}
            assert response.status == 403
        async with session.post(f"{base}/channels/424242/messages", json={"content": "hi"}) as response:
            assert (response.status, (await response.json())["code"]) == (404, 10003)
        command = fake.slash(ALICE, "stats")
        async with session.post(f"{base}/interactions/{command['id']}/{command['token']}/callback",
                                json={"type": 4, "data": {"content": "only you", "flags": 64}}) as response:
            secret = (await response.json())["resource"]["message"]
        async with session.get(f"{base}/channels/{CHANNEL_ID}/messages/{secret['id']}") as response:
            assert response.status == 404  # not a message of the channel
        async with session.post(f"{base}/channels/{CHANNEL_ID}/messages", json={
                "content": "re", "message_reference": {"message_id": secret["id"]}}) as response:
            assert response.status == 400
    assert fake.ephemeral_to[secret["id"]] == ALICE["id"]
    with pytest.raises(AssertionError, match="ephemeral"):
        fake.reply(BOB, secret["id"], content="what?")
    # Without the Message Content intent, server messages that do not mention the bot come blank.
    fake.message_content = False
    att = fake.attachment(b"GIF89a", "a.gif", "image/gif")
    assert fake.message(BOB, content="hello", attachments=[att])["attachments"] == []
    assert fake.message(BOB, content="<@900> hi", mentions=[BOT], attachments=[att])["attachments"] == [att]
    assert fake.message(BOB, guild=False, content="hi", attachments=[att])["content"] == "hi"
