"""The one typed settings object, read from the environment and ``.env`` (``CLIPBOT_*``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError
from core.models import DEFAULT_CLIP_MODEL

APP_NAME = "clipbot"
LEGACY_DATA_DIR = Path("data")


def default_data_dir() -> Path:
    """``./data`` where a gallery already lies there (how clipbot started), else the user's data
    directory: the gallery must not depend on the directory a command is run from."""
    if (LEGACY_DATA_DIR / "clipbot.db").is_file():
        return LEGACY_DATA_DIR
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


def env_files() -> tuple[Path, ...]:
    """``.env`` in the user config directory, then in the working directory, which wins."""
    return (Path(platformdirs.user_config_dir(APP_NAME)) / ".env", Path(".env"))


class Settings(BaseSettings):
    """Every setting clipbot reads; ``.env.example`` documents each with its default."""

    # Empty values (as in .env.example) mean "use the default", not "set to an empty string".
    model_config = SettingsConfigDict(env_prefix="CLIPBOT_", env_file=".env", extra="ignore", env_ignore_empty=True)

    clip_model: str = Field(DEFAULT_CLIP_MODEL, min_length=1)
    caption_model: str = "Salesforce/blip-image-captioning-base"
    # Reading the text in pictures (OCR): "auto" (PP-OCRv4 when the ocr extra is installed, else off),
    # "rapidocr" (the same, and an error when it is missing), "none", or a folder holding the two ONNX files.
    ocr: str = "auto"
    ocr_threads: int = Field(1, ge=1, le=16)
    # A multilingual text encoder aligned to the CLIP model's image space (hub id or directory); unset: CLIP's own.
    text_model: str | None = None
    color_count: int = Field(5, ge=1, le=16)
    data_dir: Path = Field(default_factory=default_data_dir)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    # postgresql://user:password@host/db keeps the gallery in PostgreSQL with pgvector; unset: SQLite in data_dir.
    database_url: SecretStr | None = None
    media_dir: Path | None = None  # the stored pictures; default data_dir/media. Shared by every worker.
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"
    torch_threads: int = Field(0, ge=0)
    # glibc malloc arenas for the whole process, and a fixed mmap threshold (bot/allocator.py);
    # 0 leaves glibc's defaults.
    malloc_arenas: int = Field(2, ge=0, le=64)
    # Unset: 8 per model call on a CPU, 256 on a GPU (the encoder decides when it loads).
    batch_size: int | None = Field(None, ge=1, le=1024)
    decode_workers: int | None = Field(None, ge=1, le=64)  # unset: one per CPU core, at most 16
    max_image_pixels: int = Field(40_000_000, ge=1)
    max_image_mb: float = Field(100.0, gt=0)
    # Videos, animations and video stickers (core.media.video): frames sampled evenly over the duration,
    # the largest file and longest duration accepted, and the wall-clock time one may take to decode.
    video_frames: int = Field(8, ge=1, le=64)
    video_max_mb: float = Field(50.0, gt=0)
    video_max_seconds: float = Field(600.0, gt=0)
    video_decode_seconds: float = Field(10.0, gt=0, le=600)
    index_precision: Literal["fp16", "fp32"] = "fp16"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    # Chat behaviour
    top_k: int = Field(5, ge=1, le=50)
    weak_image_score: float = Field(0.75, ge=-1, le=1)
    weak_text_score: float = Field(0.20, ge=-1, le=1)
    # Per-gallery calibration of "weak" and "no match" (core.search.calibration); the fixed scores above
    # are the fallback for galleries smaller than calibration_min_images.
    weak_match_percentile: float = Field(20, ge=0, le=100)
    no_match_percentile: float = Field(5, ge=0, le=100)
    calibration_min_images: int = Field(20, ge=2, le=1_000_000)
    # Conversation threads (core.chat.threads): refine by replying, "More like this" / "Not this".
    thread_hours: float = Field(24, gt=0, le=24 * 90)
    refine_text_weight: float = Field(0.5, gt=0, lt=1)
    feedback_query_weight: float = Field(1.0, ge=0, le=10)
    feedback_like_weight: float = Field(0.75, ge=0, le=10)
    feedback_reject_weight: float = Field(0.25, ge=0, le=10)
    # Repost alerts (core.chat.reposts), for chats whose admins switched them on with /watch on.
    repost_threshold: float = Field(0.95, gt=0, le=1.01)
    repost_hash_distance: int = Field(4, ge=0, le=32)
    repost_retention_days: float = Field(90, gt=0, le=3650)
    repost_alert_seconds: float = Field(30, ge=0, le=86400)
    add_requires_admin: bool = False
    add_caption_seconds: float = Field(10, ge=0, le=600)
    admin_ids: str = ""
    rate_limit_per_minute: float = Field(10, ge=0)
    queue_size: int = Field(64, ge=1)
    max_batch: int = Field(8, ge=1, le=1024)
    batch_wait_ms: float = Field(5, ge=0, le=1000)
    max_label_chars: int = Field(200, ge=1, le=10_000)
    max_description_chars: int = Field(1000, ge=1, le=100_000)
    shutdown_timeout: float = Field(30, ge=0)
    sweep_interval_minutes: float = Field(60, ge=0)

    # Telegram (names without the CLIPBOT_ prefix, as Telegram tooling spells them)
    telegram_bot_token: SecretStr | None = Field(None, validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN"))
    telegram_base_url: str | None = Field(None, validation_alias=AliasChoices("TELEGRAM_BASE_URL"))
    telegram_base_file_url: str | None = Field(None, validation_alias=AliasChoices("TELEGRAM_BASE_FILE_URL"))
    telegram_max_file_mb: float = Field(20, gt=0, le=2000)
    telegram_group_messages_per_minute: int = Field(20, ge=1, le=1000)
    # Webhook mode (several processes behind a load balancer share one token); checked by the adapter.
    telegram_webhook_url: str | None = Field(None, validation_alias=AliasChoices("TELEGRAM_WEBHOOK_URL"))
    telegram_webhook_listen: str = Field("127.0.0.1", min_length=1,
                                         validation_alias=AliasChoices("TELEGRAM_WEBHOOK_LISTEN"))
    telegram_webhook_port: int = Field(8443, ge=1, le=65535, validation_alias=AliasChoices("TELEGRAM_WEBHOOK_PORT"))
    telegram_webhook_secret: SecretStr | None = Field(None, validation_alias=AliasChoices("TELEGRAM_WEBHOOK_SECRET"))

    # Discord
    discord_bot_token: SecretStr | None = Field(None, validation_alias=AliasChoices("DISCORD_BOT_TOKEN"))
    discord_guild_ids: str = Field("", validation_alias=AliasChoices("DISCORD_GUILD_IDS"))
    discord_api_base_url: str | None = Field(None, validation_alias=AliasChoices("DISCORD_API_BASE_URL"))
    discord_gateway_url: str | None = Field(None, validation_alias=AliasChoices("DISCORD_GATEWAY_URL"))
    discord_max_file_mb: float = Field(25, gt=0, le=500)
    discord_message_content: bool = False
    # Sharding (several processes split the bot's servers); the ids are checked by the adapter.
    discord_shard_count: int | None = Field(None, ge=1, validation_alias=AliasChoices("DISCORD_SHARD_COUNT"))
    discord_shard_ids: str = Field("", validation_alias=AliasChoices("DISCORD_SHARD_IDS"))

    # Web
    web_host: str = Field("127.0.0.1", min_length=1)
    web_port: int | None = Field(None, ge=1, le=65535)  # unset: `clipbot web` uses 7860, `clipbot run` no web
    # name:password,... hashed as they are read (adapters.web.users): no password stays in memory.
    web_users: SecretStr | None = None
    web_open_add: bool = False
    web_session_hours: float = Field(12.0, gt=0, le=24 * 365)  # a sign-in lasts this long
    # Reverse proxies whose X-Forwarded-For / -Proto / -Host are believed (addresses or networks).
    # Empty: the connection's own address is the client's, whatever a header says.
    web_trusted_proxies: str = ""
    web_guest_upload_mb_per_hour: float = Field(200.0, gt=0)  # what one address may upload as a guest

    @field_validator("web_trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        from adapters.web.sessions import parse_proxies

        parse_proxies(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("web_users", mode="after")
    @classmethod
    def _hash_web_passwords(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        from adapters.web.users import hash_users

        hashed = hash_users(value.get_secret_value())
        return SecretStr(hashed) if hashed else None

    @field_validator("discord_guild_ids")
    @classmethod
    def _guild_ids_are_numbers(cls, value: str) -> str:
        if any(not part.strip().isdigit() for part in value.split(",") if part.strip()):
            raise ValueError("must be comma-separated server ids (numbers)")
        return value

    @property
    def database(self) -> str | None:
        url = self.database_url.get_secret_value().strip() if self.database_url else ""
        return url or None

    @property
    def pictures_dir(self) -> Path:
        return self.media_dir or self.data_dir / "media"

    @property
    def history_file(self) -> Path:
        """Where the console chat keeps its line history."""
        return Path(platformdirs.user_data_dir(APP_NAME)) / "console_history"

    @property
    def decode_threads(self) -> int:
        """``CLIPBOT_DECODE_WORKERS``, or one per CPU core (at most 16): decoding feeds the model."""
        return self.decode_workers or max(1, min(16, os.cpu_count() or 2))

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 1024 * 1024)

    @property
    def video_max_bytes(self) -> int:
        return int(self.video_max_mb * 1024 * 1024)

    @property
    def admin_id_set(self) -> frozenset[str]:
        """``CLIPBOT_ADMIN_IDS``: comma-separated user ids, bare (``123``) or per platform (``telegram:123``)."""
        return frozenset(part.strip() for part in self.admin_ids.split(",") if part.strip())

    @property
    def discord_token(self) -> str | None:
        token = self.discord_bot_token.get_secret_value().strip() if self.discord_bot_token else ""
        return token or None

    @property
    def discord_guild_id_list(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.discord_guild_ids.split(",") if part.strip())

    @property
    def telegram_token(self) -> str | None:
        token = self.telegram_bot_token.get_secret_value().strip() if self.telegram_bot_token else ""
        return token or None


def load_settings(env_file: str | Path | tuple[Path, ...] | Literal["default"] | None = "default") -> Settings:
    """Read settings (``.env`` files: :func:`env_files` by default, none with ``None``), turning
    validation errors into one :class:`ConfigError` line per problem."""
    try:
        files = env_files() if env_file == "default" else env_file
        # _env_file is pydantic-settings' init-only option, absent from the generated signature.
        return Settings(_env_file=files)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(f"{_env_name(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"Invalid setting: {problems}") from None


def _env_name(loc: tuple[object, ...]) -> str:
    name = "_".join(str(p) for p in loc).upper()
    return name if name.startswith(("TELEGRAM_", "DISCORD_")) else f"CLIPBOT_{name}"
