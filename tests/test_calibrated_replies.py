"""Honest "no match" end to end: a gallery calibrated to itself calls an unrelated photo unrelated,
where the fixed threshold would have shown it as a confident match."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from bot.composition import build_chat_engine, build_service
from bot.settings import Settings
from core.chat.context import Chat, Context, User
from core.chat.texts import NO_MATCH, WEAK_MATCH
from core.gallery.engine import Engine
from core.models.clip import ClipEncoder

CTX = Context(Chat("console", "calibrated"), User("console", "ann", "Ann"))


def variants(path: Path, n: int) -> list[bytes]:
    """``n`` crops, mirrors and exposures of one photo: related pictures, as a real gallery holds."""
    image = Image.open(path).convert("RGB")
    out = []
    for k in range(n):
        w, h = image.size
        c = 0.04 * k
        v = image.crop((int(w * c), int(h * c), int(w * (1 - c / 2)), int(h * (1 - c / 2))))
        v = ImageEnhance.Brightness(ImageOps.mirror(v) if k % 2 else v).enhance(0.85 + 0.05 * k)
        buffer = io.BytesIO()
        v.save(buffer, "JPEG", quality=85 - k)
        out.append(buffer.getvalue())
    return out


def noise() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
async def calibrated(settings: Settings, encoder: ClipEncoder, photos: dict[str, Path]) -> AsyncIterator[Engine]:
    """24 images: six related pictures each of four photos."""
    engine = build_chat_engine(settings, encoder)
    await engine.start()
    for name in ("rocket", "coffee", "chelsea", "astronaut"):
        for n, data in enumerate(variants(photos[name], 6)):
            await engine.add_image(data, label=f"{name} {n}")
    yield engine
    await engine.close()


async def test_an_unrelated_photo_is_called_unrelated_and_still_shown(calibrated: Engine, settings: Settings,
                                                                        photos: dict[str, Path]) -> None:
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), calibrated)
    related = await service.match(CTX, variants(photos["coffee"], 8)[7])
    assert related is not None and related.kind == "result"
    assert not related.text.startswith((NO_MATCH, WEAK_MATCH)) and related.text.startswith("coffee")
    unrelated = await service.match(CTX, noise())
    assert unrelated is not None and unrelated.kind == "result" and unrelated.image is not None
    assert unrelated.text.startswith(NO_MATCH)  # ... and the closest anyway, with its score
    assert unrelated.score is not None and "Score:" in unrelated.text
    # The fixed threshold (0.75) would have shown this as a good match: the calibration is what says no.
    assert unrelated.score > settings.weak_image_score
    stats = await service.stats(CTX)
    assert stats is not None and "Photo matches: weak below" in stats.text and "calibrated on 24 images" in stats.text


async def test_a_small_gallery_keeps_the_fixed_thresholds(gallery: Engine, settings: Settings) -> None:
    service = build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)
    reply = await service.match(CTX, noise())
    assert reply is not None and not reply.text.startswith(NO_MATCH)  # 4 images: too few to measure
    stats = await service.stats(CTX)
    assert stats is not None and "fixed: gallery under 20 images" in stats.text


async def test_the_calibration_settings_reach_the_service(calibrated: Engine, settings: Settings) -> None:
    strict = settings.model_copy(update={"rate_limit_per_minute": 0, "no_match_percentile": 0.0,
                                         "weak_match_percentile": 0.0, "calibration_min_images": 100})
    service = build_service(strict, calibrated)
    reply = await service.match(CTX, noise())  # 24 images < 100: the fixed 0.75 applies again
    assert reply is not None and not reply.text.startswith((NO_MATCH, WEAK_MATCH))
