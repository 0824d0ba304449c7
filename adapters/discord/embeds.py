"""The pictures a Discord message shows without attaching them: GIF links and forwarded messages.

A Tenor or Giphy link, or a link to a picture, is shown by Discord as an embed of type ``gifv``
or ``image`` whose media URLs point at the GIF site's or Discord's media hosts. For repost alerts
such an embed is fetched and checked like an attachment, but only from :data:`EMBED_MEDIA_HOSTS`
over HTTPS: the URL comes from a user's message (an embed's ``url`` is whatever the link said),
and fetching any host it names would let a user make the bot request internal addresses (SSRF).
Redirects are not followed, for the same reason, and a body over the size limit is cut off
while it streams: an embed tells no size before the download, as an attachment does.

A forwarded message (discord.py >= 2.5: ``message.message_snapshots``) carries the original's
attachments and embeds in its snapshots; they are the forwarder's pictures as much as their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import discord

from core.errors import FileMissingError, ImageTooLargeError
from core.media import refusal_before_download

__all__ = ["EMBED_MEDIA_HOSTS", "EmbedMedia", "attachments_of", "embed_media_urls", "embeds_of"]

# Where Discord's gifv/image embeds keep their media: Tenor's and Giphy's CDNs, and Discord's own.
EMBED_MEDIA_HOSTS: frozenset[str] = frozenset({
    "media.tenor.com", "media.discordapp.net", "cdn.discordapp.com", "i.giphy.com", "media.giphy.com",
})
# Embed types that are a picture or an animation; a "rich", "article" or "link" embed is a page's
# preview, whose thumbnail is not what the user posted.
PICTURE_EMBEDS = frozenset({"gifv", "image"})
CHUNK = 64 * 1024
FETCH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class EmbedMedia:
    """Which embed media URLs may be fetched: the host must be one of ``hosts`` (exactly, no
    subdomains: ``media.tenor.com.example`` is not Tenor) and the scheme one of ``schemes``.
    Tests point it at their fake server; nothing else should widen it."""

    hosts: frozenset[str] = EMBED_MEDIA_HOSTS
    schemes: frozenset[str] = field(default_factory=lambda: frozenset({"https"}))
    timeout_s: float = FETCH_TIMEOUT_S

    def allows(self, url: str) -> bool:
        """Whether ``url`` is on the allow-list (credentials in a URL are refused outright)."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            _ = parts.port  # a malformed port raises here, not in the download
        except ValueError:
            return False
        return parts.scheme in self.schemes and host in self.hosts and not parts.username and not parts.password

    def reader(self, url: str, max_bytes: int, video_max_bytes: int | None) -> Callable[[], Awaitable[bytes]]:
        """A download of an allowed ``url`` (check :meth:`allows` first) for the repost watcher."""
        if not self.allows(url):
            raise ValueError(f"not an allowed embed media URL: {url!r}")

        async def read() -> bytes:
            return await self._fetch(url, max_bytes, video_max_bytes)

        return read

    async def _fetch(self, url: str, max_bytes: int, video_max_bytes: int | None) -> bytes:
        """The body at ``url``, refused (as an :class:`ImageError`, which the watcher logs and
        skips) when it is no picture or video, or larger than the limit."""
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.get(url, allow_redirects=False) as response:
                if response.status != 200:  # a redirect too: it could lead anywhere
                    raise FileMissingError(f"embed media {url} answered HTTP {response.status}")
                refusal = refusal_before_download(response.headers.get("Content-Type"), response.content_length,
                                                  max_bytes, "The embedded file", video_max_bytes=video_max_bytes)
                if refusal:
                    raise ImageTooLargeError(refusal)
                data = bytearray()
                async for chunk in response.content.iter_chunked(CHUNK):
                    data += chunk
                    if len(data) > max_bytes:  # the header may be missing, or lie
                        raise ImageTooLargeError(f"embed media {url} is over {max_bytes} bytes")
                return bytes(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FileMissingError(f"could not fetch embed media {url}: {exc!r}") from None


def embed_media_urls(embed: discord.Embed) -> list[str]:
    """The media URLs of a picture embed, best first: a gifv's animation (Discord plays it as a
    video), then its picture, then the thumbnail Discord made; none for a page preview."""
    if embed.type not in PICTURE_EMBEDS:
        return []
    found = [embed.video.url, embed.image.url, embed.thumbnail.url]
    return [url for url in dict.fromkeys(found) if isinstance(url, str) and url]


def attachments_of(message: discord.Message) -> list[discord.Attachment]:
    """A message's attachments, then those of the messages it forwards."""
    snapshots = getattr(message, "message_snapshots", None) or []  # discord.py < 2.5 has none
    return [*message.attachments, *(a for snapshot in snapshots for a in snapshot.attachments)]


def embeds_of(message: discord.Message) -> list[discord.Embed]:
    """A message's embeds, then those of the messages it forwards."""
    snapshots = getattr(message, "message_snapshots", None) or []
    return [*message.embeds, *(e for snapshot in snapshots for e in snapshot.embeds)]
