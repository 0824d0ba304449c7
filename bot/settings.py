"""The one typed settings object, read from the environment and ``.env`` (``CLIPBOT_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError


class Settings(BaseSettings):
    """Every setting clipbot reads; ``.env.example`` documents each with its default."""

    model_config = SettingsConfigDict(env_prefix="CLIPBOT_", env_file=".env", extra="ignore")

    clip_model: str = Field("openai/clip-vit-base-patch32", min_length=1)
    data_dir: Path = Path("data")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    torch_threads: int = Field(0, ge=0)
    batch_size: int = Field(16, ge=1, le=1024)
    decode_workers: int = Field(2, ge=1, le=64)
    max_image_pixels: int = Field(40_000_000, ge=1)
    max_image_mb: float = Field(100.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 1024 * 1024)


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Read settings, turning validation errors into one :class:`ConfigError` line per problem."""
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"CLIPBOT_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"Invalid setting: {problems}") from None
