"""Image captioners: BLIP through Hugging Face transformers, loaded lazily like the CLIP encoder."""

from __future__ import annotations

import logging
import re
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from PIL import Image

from core.models.clip import Announce, Encoder, PretrainedModel
from core.models.hub import BLIP_CAPTIONS
from core.models.precision import convert

log = logging.getLogger(__name__)

DEFAULT_CAPTION_MODEL = BLIP_CAPTIONS.example
# Values of the setting that turn captioning off instead of naming a model.
DISABLED = frozenset({"", "none", "off"})
CAPTION_PRECISIONS = ("fp32", "int8")
# fp32, measured against int8 by bench/captions.py (BLIP-base architecture, random weights, CPU):
# int8 is 2-3x faster, but its dynamically quantised activations take their scale from the whole
# batch, so an image's caption can change with its batch companions (5 of 8 on the tests' tiny
# BLIP), and random weights cannot show whether int8 captions stay as good. int8 is opt-in.
DEFAULT_CAPTION_PRECISION = "fp32"
_SPACES = re.compile(r"\s+")


class Captioner(Encoder):
    """Writes a short English caption for each image; nothing heavy happens in ``__init__``."""

    model_id: str

    @abstractmethod
    def caption_images(self, images: Sequence[Image.Image]) -> list[str]:
        """Return one caption per image, in order; ``""`` where the model produced nothing."""


class BlipCaptioner(PretrainedModel, Captioner):
    """BLIP (``BlipForConditionalGeneration`` + ``BlipProcessor``) from a hub id or a local directory.

    Decoding is greedy (one beam, no sampling), so one image always gets the same caption,
    alone or inside a batch.
    """

    KIND = BLIP_CAPTIONS
    SETTING = BLIP_CAPTIONS.setting

    def __init__(
        self,
        source: str,
        *,
        device: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 30,
        precision: str = DEFAULT_CAPTION_PRECISION,
        announce: Announce | None = None,
    ) -> None:
        """``announce`` is told, once, when loading takes over a second. ``precision``: ``"fp32"``,
        or ``"int8"`` (dynamically quantised linear layers, CPU only; on a GPU it stays fp32)."""
        super().__init__(source, device=device, batch_size=batch_size, announce=announce)
        self.max_new_tokens = max(1, max_new_tokens)
        if precision not in CAPTION_PRECISIONS:
            raise ValueError(f"caption precision must be one of {', '.join(CAPTION_PRECISIONS)}, not {precision!r}")
        self.precision = precision
        self.precision_used = ""  # what it runs at, once loaded

    def _load(self) -> None:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        model = self._from_pretrained(BlipProcessor, BlipForConditionalGeneration)
        precision = self.precision if self._device == "cpu" else "fp32"
        self._model = convert(model, precision, self._device).model
        self.precision_used = precision
        log.info("loaded BLIP captioner %s on %s (%s)", self.source, self._device, precision)

    def caption_images(self, images: Sequence[Image.Image]) -> list[str]:
        self.load()
        captions: list[str] = []
        for i in range(0, len(images), self.batch_size):
            captions.extend(self._run(images[i:i + self.batch_size]))
        return captions

    def _run(self, images: Sequence[Image.Image]) -> list[str]:
        import torch

        # Images only, no text prompt: every row starts from the same decoder start token, so there
        # is no prompt padding, and finished rows are padded after their end, which decoding drops.
        inputs = self._processor(images=list(images), return_tensors="pt")
        inputs = {name: tensor.to(self._device) for name, tensor in inputs.items()}
        with torch.inference_mode():
            ids = self._model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, num_beams=1, do_sample=False
            )
        texts = self._processor.batch_decode(ids.cpu(), skip_special_tokens=True)
        return [tidy_caption(text) for text in texts]


def tidy_caption(text: str) -> str:
    """One line, single spaces, first letter capitalised; ``""`` stays ``""``."""
    text = _SPACES.sub(" ", text).strip()
    return text[:1].upper() + text[1:]


def captioner_from_setting(source: str | None, **kw: Any) -> BlipCaptioner | None:
    """A captioner for the ``CLIPBOT_CAPTION_MODEL`` value, or ``None`` when captioning is off
    (unset, empty, ``none`` or ``off``, in any case). Nothing is loaded here."""
    if source is None or source.strip().lower() in DISABLED:
        return None
    return BlipCaptioner(source.strip(), **kw)
