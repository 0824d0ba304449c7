"""BLIP captions of :class:`core.gallery.engine.Engine`: on the inference thread, or none when off.

A mixin of the engine, as :mod:`core.gallery.record_access` is: the caption pass and ``/add``
caption through these.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PIL import Image

from core.errors import CaptionsOffError, ModelLoadError
from core.models.blip import Captioner
from core.models.inference import Encoding
from core.records import ImageRecord
from core.storage import GalleryStorage

__all__ = ["EngineCaptions"]
log = logging.getLogger("core.gallery.engine")  # the engine's records, as before this was split out


class EngineCaptions:
    """Captioning of :class:`core.gallery.engine.Engine` (see there)."""

    captioner: Captioner | None
    _runner: Encoding
    _gallery: GalleryStorage
    _caption_failure_logged: bool

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
