"""The composition root: the one place that turns settings into working objects."""

from __future__ import annotations

from bot.settings import Settings
from core.encoders import ClipEncoder
from core.engine import Engine
from core.inference import InferenceRunner
from core.media import MediaStore
from core.store import Store


def build_encoder(settings: Settings) -> ClipEncoder:
    """The CLIP encoder the settings name (not loaded until first use)."""
    return ClipEncoder(
        settings.clip_model, device=settings.device, torch_threads=settings.torch_threads,
        batch_size=settings.batch_size,
    )


def build_engine(settings: Settings, encoder: ClipEncoder | None = None) -> Engine:
    """The engine over ``settings.data_dir``; call ``await engine.start()`` before use."""
    return Engine(
        store=Store(settings.data_dir),
        media=MediaStore(settings.data_dir / "media"),
        runner=InferenceRunner(encoder or build_encoder(settings)),
        max_pixels=settings.max_image_pixels,
        max_bytes=settings.max_image_bytes,
        decode_workers=settings.decode_workers,
    )
