"""The chat service's behaviour settings, as plain values (``bot`` fills them from the settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.chat.threads import ThreadConfig
from core.search.calibration import CalibrationConfig

__all__ = ["ServiceConfig"]


@dataclass(frozen=True)
class ServiceConfig:
    """The chat behaviour settings, as plain values (``bot`` fills them from the settings)."""

    top_k: int = 5
    weak_image_score: float = 0.75
    weak_text_score: float = 0.20
    add_requires_admin: bool = False
    admin_ids: frozenset[str] = field(default_factory=frozenset)
    list_limit: int = 20
    # /add waits this long for BLIP's caption; a slower one is stored when it comes (see Engine.add_decoded).
    add_caption_seconds: float = 10.0
    repost_threshold: float = 0.95
    repost_hash_distance: int = 4
    repost_retention_days: float = 90.0
    repost_alert_seconds: float = 30.0
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    threads: ThreadConfig = field(default_factory=ThreadConfig)
