"""What :class:`core.gallery.engine.Engine` says about one picture: BLIP's caption (on the
inference thread, or none when off) and its dominant colours.

A mixin of the engine, as :mod:`core.gallery.record_access` is: the caption pass, ``/add``,
``/describe`` and ``/colors`` go through these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from core.errors import CaptionsOffError, ModelLoadError
from core.media.colors import DominantColor
from core.media.images import DecodedImage
from core.media.palette import dominant_colors_batch
from core.models.blip import Captioner
from core.models.inference import Encoding
from core.records import ImageRecord
from core.storage import GalleryStorage

__all__ = ["EnginePictures"]
T = TypeVar("T")
log = logging.getLogger("core.gallery.engine")  # the engine's records, as before this was split out


class EnginePictures:
    """Captions and colours of :class:`core.gallery.engine.Engine` (see there)."""

    captioner: Captioner | None
    color_count: int
    _runner: Encoding
    _gallery: GalleryStorage
    _caption_failure_logged: bool

    async def decode(self, source: bytes | str | Path) -> DecodedImage:
        raise NotImplementedError  # the engine's

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError  # the engine's

    async def describe(self, source: bytes | str | Path) -> str:
        """BLIP's caption of an image; :class:`CaptionsOffError` when captioning is turned off."""
        decoded = await self.decode(source)
        [caption] = await self._caption([decoded.image])
        return caption

    async def colors(self, source: bytes | str | Path) -> list[DominantColor]:
        """The image's dominant colours, largest share first."""
        image = (await self.decode(source)).image
        # The palette the colour pass stores, so /colors agrees with what color: filters match.
        return (await self.blocking(dominant_colors_batch, [image], self.color_count))[0]

    async def caption_images(self, images: Sequence[Image.Image]) -> list[str]:
        """BLIP's captions of decoded images, on the inference thread (:class:`CaptionsOffError`
        when captioning is off, :class:`ModelLoadError` when its model cannot load)."""
        return await self._caption(images)

    async def awaiting_captions(self, collection: str | None = None) -> list[ImageRecord]:
        """The images a caption pass would caption: no caption yet and no description, oldest first."""
        return await self._gallery.awaiting_captions(collection)

    async def set_caption(self, image_id: int, caption: str) -> bool:
        """Store the caption of an image still waiting for one (its description too, when empty)."""
        return await self._gallery.set_caption(image_id, caption)

    async def _caption(self, images: Sequence[Image.Image]) -> list[str]:
        captioner = self.captioner
        if captioner is None:
            raise CaptionsOffError("Captions are turned off here (CLIPBOT_CAPTION_MODEL=none).")
        return await self._runner.call(lambda: captioner.caption_images(images))

    async def _captions_or_none(self, images: Sequence[Image.Image]) -> list[str | None]:
        """Captions for new images, or None each when captioning is off or its model is unusable:
        an image is still worth adding without one."""
        if not images or self.captioner is None:
            return [None] * len(images)
        try:
            return list(await self._caption(images))
        except ModelLoadError as exc:
            if not self._caption_failure_logged:
                log.warning("adding images without captions: %s", exc)
                self._caption_failure_logged = True
            return [None] * len(images)
