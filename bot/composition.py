"""The composition root: the one place that turns settings into working objects."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Literal, Protocol

from bot.allocator import tune_malloc
from bot.settings import Settings, load_settings
from core.chat import ChatService, RateLimiter, ServiceConfig, ThreadConfig, Threads
from core.gallery import Engine, MediaStore
from core.media import VideoLimits
from core.models import (
    Captioner,
    ClipEncoder,
    ClipWithTextModel,
    Encoding,
    ImageTextEncoder,
    InferenceRunner,
    MicroBatcher,
    MultilingualTextEncoder,
    TextReader,
    captioner_from_setting,
    reader_from_setting,
)
from core.search import CalibrationConfig
from core.storage import GalleryStorage, gallery_for
from core.text import TextLimits

if TYPE_CHECKING:
    from adapters.web import WebPlatform


class Platform(Protocol):
    """A chat platform adapter as ``clipbot run`` drives it."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def apply_process_settings(settings: Settings) -> None:
    """Settings that belong to the whole process rather than to one object: glibc's malloc
    arenas, torch's CPU threads.

    Called once by the entry point, like logging's configuration, before any thread starts;
    libraries never set them.
    """
    tune_malloc(settings.malloc_arenas)
    if settings.torch_threads > 0:
        import torch

        torch.set_num_threads(settings.torch_threads)


def announce(message: str) -> None:
    """A model that takes over a second to load says so on stderr, above any progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def build_encoder(settings: Settings) -> ImageTextEncoder:
    """The CLIP encoder the settings name (not loaded until first use); ``auto`` precision's
    measurement is remembered in the cache directory, so only the first start pays for it.

    With CLIPBOT_TEXT_MODEL set, texts go through that multilingual model instead of CLIP's own
    text encoder; images, and the model id the gallery's vectors are stored under, stay CLIP's.
    """
    clip = ClipEncoder(
        settings.clip_model, device=settings.device, batch_size=settings.batch_size, precision=settings.precision,
        cache_dir=settings.cache_dir, announce=announce,
    )
    if not settings.text_model:
        return clip
    text = MultilingualTextEncoder(settings.text_model, device=settings.device, batch_size=settings.batch_size or 16,
                                   announce=announce)
    return ClipWithTextModel(clip, text)


def build_seed_encoder() -> ImageTextEncoder:
    """The seed notebook functions' encoder, from the settings (entry point ``clipbot.seed_encoder``)."""
    return build_encoder(load_settings())


def build_captioner(settings: Settings) -> Captioner | None:
    """BLIP as the settings name it, or None when CLIPBOT_CAPTION_MODEL turns captions off."""
    return captioner_from_setting(settings.caption_model, device=settings.device, announce=announce)


def build_reader(settings: Settings) -> TextReader | None:
    """The OCR reader as CLIPBOT_OCR names it, or None when reading text is off."""
    return reader_from_setting(settings.ocr, threads=settings.ocr_threads, announce=announce)


def build_gallery(settings: Settings, *, url: str | None = None, serving: bool = False) -> GalleryStorage:
    """The gallery's storage: ``url`` or CLIPBOT_DATABASE_URL (PostgreSQL), else SQLite in the data dir.

    ``serving``: for a bot process; with SQLite only one may serve a gallery. The in-memory index
    goes where the encoder runs (GPU memory on CUDA); "auto" is resolved when an index is first
    built, so commands that never search never import torch.
    """
    return gallery_for(url or settings.database, settings.data_dir, index_precision=settings.index_precision,
                       index_device=settings.device, exclusive=serving)


def build_engine(settings: Settings, encoder: ImageTextEncoder | None = None, *,
                 captioner: Captioner | Literal["configured"] | None = "configured",
                 gallery: GalleryStorage | None = None) -> Engine:
    """The engine over the configured gallery; call ``await engine.start()`` before use."""
    runner = InferenceRunner(encoder or build_encoder(settings))
    return _engine(settings, runner, captioner, gallery or build_gallery(settings))


def build_chat_engine(settings: Settings, encoder: ImageTextEncoder | None = None, *,
                      captioner: Captioner | Literal["configured"] | None = "configured",
                      gallery: GalleryStorage | None = None, serving: bool = False) -> Engine:
    """The engine for chat front ends: concurrent requests share model batches.

    ``serving``: the bot process (``clipbot run``); with SQLite, only one may serve a gallery.
    """
    runner = MicroBatcher(
        InferenceRunner(encoder or build_encoder(settings)), max_batch=settings.max_batch,
        max_wait_ms=settings.batch_wait_ms, max_queue=settings.queue_size,
    )
    return _engine(settings, runner, captioner, gallery or build_gallery(settings, serving=serving))


def _engine(settings: Settings, runner: Encoding, captioner: Captioner | Literal["configured"] | None,
            gallery: GalleryStorage) -> Engine:
    engine = Engine(
        gallery=gallery,
        media=MediaStore(settings.pictures_dir),
        runner=runner,
        max_pixels=settings.max_image_pixels,
        max_bytes=settings.max_image_bytes,
        decode_workers=settings.decode_threads,
        captioner=build_captioner(settings) if captioner == "configured" else captioner,
        reader=build_reader(settings),
        color_count=settings.color_count,
        text_limits=TextLimits(settings.max_label_chars, settings.max_description_chars),
        video_limits=VideoLimits(frames=settings.video_frames, max_bytes=settings.video_max_bytes,
                                 max_seconds=settings.video_max_seconds,
                                 decode_seconds=settings.video_decode_seconds),
        # Every process's sweep (a bot's, `clipbot index`'s) purges repost records at the configured age.
        sighting_retention_s=settings.repost_retention_days * 86400,
    )
    return engine


def build_service(settings: Settings, engine: Engine) -> ChatService:
    config = ServiceConfig(
        top_k=settings.top_k, weak_image_score=settings.weak_image_score, weak_text_score=settings.weak_text_score,
        add_requires_admin=settings.add_requires_admin, admin_ids=settings.admin_id_set,
        add_caption_seconds=settings.add_caption_seconds,
        repost_threshold=settings.repost_threshold, repost_hash_distance=settings.repost_hash_distance,
        repost_retention_days=settings.repost_retention_days, repost_alert_seconds=settings.repost_alert_seconds,
        calibration=CalibrationConfig(
            weak_percentile=settings.weak_match_percentile, none_percentile=settings.no_match_percentile,
            min_images=settings.calibration_min_images,
        ),
        threads=ThreadConfig(
            ttl_s=settings.thread_hours * 3600, refine_text_weight=settings.refine_text_weight,
            query_weight=settings.feedback_query_weight, like_weight=settings.feedback_like_weight,
            reject_weight=settings.feedback_reject_weight,
        ),
    )
    # Pages and rate limits live in the gallery's database: any process serving it answers a button.
    return ChatService(engine, config=config, limiter=RateLimiter(settings.rate_limit_per_minute, store=engine.state),
                       threads=Threads(engine.state, ttl_seconds=settings.thread_hours * 3600))


def build_platforms(settings: Settings, service: ChatService) -> list[Platform]:
    """Every chat platform whose token is set; platform libraries are imported only then."""
    platforms: list[Platform] = []
    token = settings.telegram_token
    if token:
        from adapters.telegram import TelegramPlatform
        from adapters.telegram.webhook import WebhookConfig

        secret = settings.telegram_webhook_secret
        webhook = WebhookConfig(  # checked here, so a bad webhook setting stops the start at once
            settings.telegram_webhook_url, secret.get_secret_value() if secret else None,
            listen=settings.telegram_webhook_listen, port=settings.telegram_webhook_port,
        ) if settings.telegram_webhook_url else None
        platforms.append(TelegramPlatform(
            service, token=token, base_url=settings.telegram_base_url,
            base_file_url=settings.telegram_base_file_url,
            max_file_bytes=int(settings.telegram_max_file_mb * 1024 * 1024),
            group_messages_per_minute=settings.telegram_group_messages_per_minute,
            stop_timeout=settings.shutdown_timeout, webhook=webhook,
        ))
    token = settings.discord_token
    if token:
        from adapters.discord import DiscordPlatform
        from adapters.discord.platform import parse_shard_ids

        platforms.append(DiscordPlatform(
            service, token=token, guild_ids=settings.discord_guild_id_list,
            max_file_bytes=int(settings.discord_max_file_mb * 1024 * 1024),
            message_content=settings.discord_message_content, api_base_url=settings.discord_api_base_url,
            gateway_url=settings.discord_gateway_url, stop_timeout=settings.shutdown_timeout,
            shard_count=settings.discord_shard_count, shard_ids=parse_shard_ids(settings.discord_shard_ids),
        ))
    return platforms


def build_web(settings: Settings, service: ChatService, *, port: int | None = None,
              host: str | None = None) -> WebPlatform:
    """The web chat (Gradio) on CLIPBOT_WEB_HOST:CLIPBOT_WEB_PORT, or ``host``/``port`` (default 7860).

    Gradio itself is imported only when it starts.
    """
    from adapters.web import DEFAULT_PORT, WebLimits, WebPlatform, WebUsers, parse_proxies

    users = WebUsers.from_setting(settings.web_users.get_secret_value() if settings.web_users else None)
    limits = WebLimits(session_hours=settings.web_session_hours,
                       trusted_proxies=parse_proxies(settings.web_trusted_proxies),
                       guest_upload_bytes_per_hour=int(settings.web_guest_upload_mb_per_hour * 1024 * 1024))
    return WebPlatform(
        service, host=host or settings.web_host, port=port if port is not None else settings.web_port or DEFAULT_PORT,
        users=users, open_add=settings.web_open_add, admin_ids=settings.admin_id_set,
        add_requires_admin=settings.add_requires_admin, max_file_bytes=settings.max_image_bytes,
        stop_timeout=settings.shutdown_timeout, limits=limits,
    )
