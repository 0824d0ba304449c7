"""Decoding a batch of files for indexing and the enrichment passes, on the engine's decode threads."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from core.errors import ClipbotError
from core.gallery.engine import Engine
from core.media.images import DecodedImage, decode_image
from core.media.video import DecodedMedia, decode_media, kept_animation, read_media, representative, still_of

__all__ = ["decode_files"]

# (the decoded media, the file's bytes when it is an animation: kept as the stored picture)
_Read = tuple[DecodedMedia, bytes | None]


async def decode_files(engine: Engine, paths: Sequence[Path], *, side: int) -> list[DecodedImage | ClipbotError]:
    """Decode files as :meth:`Engine.decode` does, a share of them on each decode thread: one hop
    to a thread per share, not per file (on 2 cores, per-file hops cost more event-loop time than a
    reduced JPEG decode). ``side``: the shorter side the caller needs (the model's input), so a
    large JPEG is decoded at 1/2, 1/4 or 1/8 scale. A video or animation is seen as its most
    representative frame, which takes a model call; an animated GIF or WebP keeps its own bytes as
    the picture stored (:func:`kept_animation`), a video becomes a JPEG of that frame."""
    def decode_share(share: Sequence[Path]) -> list[_Read | ClipbotError]:
        out: list[_Read | ClipbotError] = []
        for path in share:
            try:
                data = read_media(path, engine.max_bytes, engine.video_limits.max_bytes)
                media = decode_media(data, max_pixels=engine.max_pixels, max_bytes=engine.max_bytes,
                                     limits=engine.video_limits, min_side=side, decode_still=decode_image)
                # Only an animation's bytes are held past here: a video's may be 50 MB, and a still
                # image's are already in its DecodedImage.
                out.append((media, data if media.kind == "animation" else None))
            except ClipbotError as exc:
                out.append(exc)
        return out

    workers = max(1, min(engine.decode_workers, len(paths)))
    shares = await asyncio.gather(*(engine.blocking(decode_share, paths[i::workers]) for i in range(workers)))
    media = [shares[i % workers][i // workers] for i in range(len(paths))]
    out: list[DecodedImage | ClipbotError] = []
    for item in media:
        if isinstance(item, ClipbotError):
            out.append(item)
        elif item[0].still is not None:
            out.append(item[0].still)
        else:  # a video or animation: rare in a photo folder
            decoded, data = item
            frame = decoded.frames[representative(await engine.frame_vectors(decoded))]
            out.append(await (engine.blocking(kept_animation, data, frame) if data is not None
                              else engine.blocking(still_of, frame)))
    return out
