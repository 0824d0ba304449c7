"""Discord repost alerts beyond attachments: GIF links that Discord embeds (Tenor's gifv) and
forwarded messages, end to end over the fake Discord with the real discord.py client; and the
allow-list that keeps a user's link from making the bot fetch any host it names."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import discord
import pytest

from adapters.discord import DiscordPlatform
from adapters.discord.embeds import EmbedMedia, attachments_of, embed_media_urls, embeds_of
from bot.composition import build_service
from bot.settings import Settings
from core.gallery.engine import Engine
from tests.conftest import recompressed
from tests.fakes.discord import (
    GUILD_ID,
    FakeDiscord,
    fake_fixture,  # noqa: F401  (the fixture `fake`)
)
from tests.test_discord import dispatch
from tests.test_discord_groups import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    MANAGE_GUILD,
    SERVER,
    frame,
    pictures,
    post,
    setting,
    settle,
    slash,
    video,
)

# The fake serves embed media from 127.0.0.1 over HTTP; it stands for Tenor's CDN here, and
# "localhost" (the same fake, by another name) for a host that is not on the list.
FAKE_CDN = EmbedMedia(hosts=frozenset({"127.0.0.1"}), schemes=frozenset({"http"}))


@pytest.fixture
async def platform(fake: FakeDiscord, gallery: Engine, settings: Settings) -> AsyncIterator[DiscordPlatform]:
    """A bot logged in against the fake, with the Message Content intent and repost alerts on."""
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)
    started = DiscordPlatform(service, token="fake-discord-token", guild_ids=(int(GUILD_ID),),
                              api_base_url=fake.api_base, max_file_bytes=25 * 1024 * 1024, message_content=True,
                              embed_media=FAKE_CDN)
    await started.login()
    await slash(fake, started, ALICE, "watch", setting("on"), permissions=MANAGE_GUILD)
    yield started
    await started.stop()


def png(name: str) -> bytes:
    buf = io.BytesIO()
    frame(name, (160, 96)).save(buf, "PNG")
    return buf.getvalue()


async def test_a_tenor_gif_link_posted_again_gets_an_alert(fake: FakeDiscord, platform: DiscordPlatform,
                                                           gallery: Engine, settings: Settings) -> None:
    clip, still = video(["motorcycle", "chelsea", "chelsea"]), png("chelsea")
    stored = pictures(settings)
    first = fake.gif_link(ALICE, clip, still)
    assert first["embeds"][0]["type"] == "gifv" and first["content"].startswith("https://tenor.com/view/")
    dispatch(platform, "message_create", first)
    await settle(platform)
    assert len(fake.sent("POST", CHANNEL)) == 0
    once = await gallery.count_sightings(SERVER)  # a video's sightings are its sampled moments
    assert once >= 1
    second = fake.gif_link(BOB, clip, still)
    dispatch(platform, "message_create", second)
    [alert] = await fake.wait_for("POST", CHANNEL)
    await settle(platform)
    assert alert.body["message_reference"]["message_id"] == int(second["id"])
    assert alert.body["content"].startswith("Seen before: posted by alice on ")
    assert await gallery.count_sightings(SERVER) == 2 * once
    fetched = fake.sent("GET", "/embed-media/")
    assert [f"/embed-media/{m['embeds'][0]['video']['url'].split('/')[-2]}" for m in (first, second)] == \
        [c.path for c in fetched]  # the animation of each, once; never the thumbnail
    assert pictures(settings) == stored  # a sighting keeps no picture


async def test_a_link_unfurled_after_the_message_is_checked_when_its_embed_comes(
        fake: FakeDiscord, platform: DiscordPlatform, gallery: Engine) -> None:
    """Discord often adds a link's embed in a MESSAGE_UPDATE a moment after MESSAGE_CREATE."""
    clip, still = video(["hubble", "coffee"]), png("coffee")
    dispatch(platform, "message_create", fake.gif_link(ALICE, clip, still))
    await settle(platform)
    once = await gallery.count_sightings(SERVER)
    late = fake.gif_link(BOB, clip, still)
    dispatch(platform, "message_create", {**late, "embeds": []})
    await settle(platform)
    assert len(fake.sent("GET", "/embed-media/")) == 1 and len(fake.sent("POST", CHANNEL)) == 0
    dispatch(platform, "message_update", late)
    [alert] = await fake.wait_for("POST", CHANNEL)
    await settle(platform)
    assert alert.body["message_reference"]["message_id"] == int(late["id"])
    dispatch(platform, "message_update", {**late, "content": late["content"] + " so good"})  # same embed
    await settle(platform)
    assert len(fake.sent("GET", "/embed-media/")) == 2 and await gallery.count_sightings(SERVER) == 2 * once


async def test_a_forwarded_picture_gets_an_alert(fake: FakeDiscord, platform: DiscordPlatform, gallery: Engine,
                                                 photos: dict[str, Path]) -> None:
    first = post(fake, ALICE, photos["rocket"].read_bytes(), "rocket.jpg", content="launch day")
    dispatch(platform, "message_create", first)
    await settle(platform)
    forwarded = fake.forward(BOB, post(fake, CAROL, recompressed(photos["rocket"]), "elsewhere.jpg"))
    assert forwarded["attachments"] == [] and forwarded["message_reference"]["type"] == 1
    dispatch(platform, "message_create", forwarded)
    [alert] = await fake.wait_for("POST", CHANNEL)
    await settle(platform)
    assert alert.body["message_reference"]["message_id"] == int(forwarded["id"])
    assert alert.body["content"].startswith("Seen before: posted by alice on ")
    assert await gallery.count_sightings(SERVER) == 2


async def test_a_forwarded_gif_link_gets_an_alert(fake: FakeDiscord, platform: DiscordPlatform,
                                                  gallery: Engine) -> None:
    """The embed of a forwarded link travels in the snapshot, and is checked like the message's own."""
    clip = video(["motorcycle", "chelsea"])
    dispatch(platform, "message_create", fake.gif_link(ALICE, clip, png("chelsea")))
    await settle(platform)
    once = await gallery.count_sightings(SERVER)
    forwarded = fake.forward(CAROL, fake.gif_link(BOB, clip, png("chelsea")))
    assert forwarded["embeds"] == [] and forwarded["message_snapshots"][0]["message"]["embeds"]
    dispatch(platform, "message_create", forwarded)
    [alert] = await fake.wait_for("POST", CHANNEL)
    await settle(platform)
    assert alert.body["message_reference"]["message_id"] == int(forwarded["id"])
    assert len(fake.sent("GET", "/embed-media/")) == 2 and await gallery.count_sightings(SERVER) == 2 * once


async def test_a_link_to_another_host_is_never_fetched(fake: FakeDiscord, platform: DiscordPlatform,
                                                       gallery: Engine, settings: Settings) -> None:
    clip, still = video(["chelsea"]), png("chelsea")
    stored = pictures(settings)
    for who in (ALICE, BOB):  # the same GIF twice, but from a host not on the list
        dispatch(platform, "message_create", fake.gif_link(who, clip, still, host="localhost"))
    await settle(platform)
    assert [c for c in fake.calls if c.path.startswith("/embed-media/")] == []  # not even refused: never asked
    assert len(fake.sent("POST", CHANNEL)) == 0
    assert await gallery.count_sightings(SERVER) == 0 and pictures(settings) == stored


def test_the_allow_list_takes_exact_hosts_over_https() -> None:
    media = EmbedMedia()
    assert media.allows("https://media.tenor.com/abc/cat.gif") and media.allows("https://MEDIA.tenor.com/a.mp4")
    assert media.allows("https://cdn.discordapp.com/attachments/1/2/x.png")
    for url in ("http://media.tenor.com/a.gif", "https://media.tenor.com.evil.example/a.gif",
                "https://evil.example/media.tenor.com/a.gif", "https://user:pw@media.tenor.com/a.gif",
                "https://127.0.0.1/a.gif", "https://images-ext-1.discordapp.net/external/x/a.gif",
                "https://media.tenor.com:99999/a.gif", "file:///etc/passwd", "not a url"):
        assert not media.allows(url), url
    with pytest.raises(ValueError):
        media.reader("https://evil.example/a.gif", 1000, None)


def test_only_picture_embeds_give_media() -> None:
    gifv = discord.Embed.from_dict({"type": "gifv", "url": "https://tenor.com/view/x",
                                    "thumbnail": {"url": "https://media.tenor.com/x.png"},
                                    "video": {"url": "https://media.tenor.com/x.mp4"}})
    image = discord.Embed.from_dict({"type": "image", "url": "https://i.giphy.com/x.gif",
                                     "thumbnail": {"url": "https://i.giphy.com/x.gif"}})
    article = discord.Embed.from_dict({"type": "article", "url": "https://news.example/a",
                                       "thumbnail": {"url": "https://media.discordapp.net/a.png"}})
    assert embed_media_urls(gifv) == ["https://media.tenor.com/x.mp4", "https://media.tenor.com/x.png"]
    assert embed_media_urls(image) == ["https://i.giphy.com/x.gif"]
    assert embed_media_urls(article) == []


def test_a_message_without_snapshots_has_only_its_own_media() -> None:
    plain = SimpleNamespace(attachments=[], embeds=[])  # discord.py before 2.5: no message_snapshots at all
    assert attachments_of(plain) == [] and embeds_of(plain) == []  # type: ignore[arg-type]
