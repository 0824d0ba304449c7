"""Decoding a batch of files for indexing and the enrichment passes, on the engine's decode threads."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from core.errors import ClipbotError
from core.gallery.engine import Engine
from core.media.images import DecodedImage, decode_image
from core.media.video import DecodedMedia, decode_media, representative, still_of

__all__ = ["decode_files"]


async def decode_files(engine: Engine, paths: Sequence[Path], *, side: int) -> list[DecodedImage | ClipbotError]:
    """Decode files as :meth:`Engine.decode` does, a share of them on each decode thread: one hop
    to a thread per share, not per file (on 2 cores, per-file hops cost more event-loop time than a
    reduced JPEG decode). ``side``: the shorter side the caller needs (the model's input), so a
    large JPEG is decoded at 1/2, 1/4 or 1/8 scale. A video or animation becomes its most
    representative frame, as a JPEG, which takes a model call."""
    def decode_share(share: Sequence[Path]) -> list[DecodedMedia | ClipbotError]:
        out: list[DecodedMedia | ClipbotError] = []
        for path in share:
            try:
                out.append(decode_media(path, max_pixels=engine.max_pixels, max_bytes=engine.max_bytes,
                                        limits=engine.video_limits, min_side=side, decode_still=decode_image))
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
        elif item.still is not None:
            out.append(item.still)
        else:  # a video or animation: rare in a photo folder
            vectors = await engine.frame_vectors(item)
            out.append(await engine.blocking(still_of, item.frames[representative(vectors)]))
    return out
