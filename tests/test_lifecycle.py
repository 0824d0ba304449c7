"""Lifecycles: nothing runs before start, start is idempotent, a failed start leaves nothing open."""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from adapters.telegram import TelegramPlatform
from bot.composition import build_chat_engine, build_engine, build_service
from bot.settings import Settings
from core.errors import ConfigError, StoreError
from core.models.batching import MicroBatcher
from core.models.clip import ClipEncoder
from core.models.inference import InferenceRunner
from core.storage.sqlite import SqliteGallery
from tests.fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
# What core must never import: platform and UI libraries, and the layers above it.
FORBIDDEN_IN_CORE = {"telegram", "discord", "gradio", "playwright", "aiohttp", "adapters", "bot"}


def clipbot_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("clipbot-")]


def test_core_imports_nothing_from_platforms_or_the_layers_above() -> None:
    """Every import statement in core/, at any depth (function-level ones too)."""
    offenders = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN_IN_CORE]
    assert offenders == []


def test_importing_core_and_its_seed_api_loads_no_platform_or_bot_module() -> None:
    code = ("import sys, core, core.seed.api, core.chat.service, core.gallery.engine, core.chat.catalogue; "
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN_IN_CORE)!r}); "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr


def test_seed_functions_find_the_configured_encoder_through_the_entry_point(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clip_dir: Path
) -> None:
    from core.seed.api import configured_encoder

    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("CLIPBOT_CLIP_MODEL", str(clip_dir))
    monkeypatch.setenv("CLIPBOT_PRECISION", "fp32")
    encoder = configured_encoder()
    assert isinstance(encoder, ClipEncoder) and encoder.source == str(clip_dir) and encoder.precision == "fp32"
    assert not encoder.loaded  # found and built, not loaded until used


async def test_engine_makes_its_threads_on_start_and_start_is_idempotent(settings: Settings,
                                                                        encoder: ClipEncoder) -> None:
    before = clipbot_threads()
    engine = build_chat_engine(settings, encoder)
    assert not engine.started and clipbot_threads() == before  # __init__ made nothing
    with pytest.raises(RuntimeError, match="not started"):
        await engine.decode(b"x")
    await engine.start()
    await engine.start()  # a second start changes nothing
    assert engine.started
    assert await engine.list_images() == []
    await engine.close()
    await engine.close()  # and so does a second close
    assert not engine.started and clipbot_threads() == before


async def test_failed_start_closes_what_it_opened(settings: Settings, encoder: ClipEncoder) -> None:
    settings.data_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.data_dir.write_text("a file where the data folder should be")
    before = clipbot_threads()
    engine = build_chat_engine(settings, encoder)
    with pytest.raises(StoreError):
        await engine.start()
    assert not engine.started and clipbot_threads() == before
    with pytest.raises(RuntimeError, match="not started"):  # the batcher and its inference thread were closed
        await engine.encode_pixels(np.zeros((1, 3, 32, 32), dtype=np.float32))
    # Fixed, the same engine starts.
    settings.data_dir.unlink()
    async with engine:
        assert engine.started and await engine.collection_counts() == {}


async def test_store_open_is_idempotent_and_a_failed_open_leaves_nothing(tmp_path: Path) -> None:
    store = SqliteGallery(tmp_path / "data")
    await store.open()
    db = store.db
    await store.open()
    assert store.db is db
    await store.close()
    await store.close()
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    broken = SqliteGallery(blocked)
    with pytest.raises(StoreError):
        await broken.open()
    with pytest.raises(StoreError):
        await broken.open()  # still failing, still nothing half-open


async def test_runners_refuse_work_before_start(encoder: ClipEncoder) -> None:
    runner = InferenceRunner(encoder)
    with pytest.raises(RuntimeError, match="not started"):
        await runner.encode_texts(["cat"])
    batcher = MicroBatcher(InferenceRunner(encoder))
    with pytest.raises(RuntimeError, match="not started"):
        await batcher.encode_texts(["cat"])
    await batcher.start()
    await batcher.start()
    assert (await batcher.encode_texts(["cat"])).shape == (1, encoder.dim)
    await batcher.aclose()
    await batcher.aclose()


async def test_cli_engine_closes_after_each_command(settings: Settings, encoder: ClipEncoder) -> None:
    async with build_engine(settings, encoder) as engine:
        assert engine.started
    assert not engine.started


async def test_telegram_start_that_fails_shuts_down_and_can_be_retried(settings: Settings,
                                                                       encoder: ClipEncoder) -> None:
    fake = FakeTelegram("123456:right-token")
    await fake.start()
    try:
        async with build_chat_engine(settings, encoder) as chat_engine:
            service = build_service(settings, chat_engine)
            wrong = TelegramPlatform(service, token="123456:wrong-token", base_url=fake.base_url,
                                     base_file_url=fake.base_file_url, poll_timeout=1)
            with pytest.raises(ConfigError, match="refused TELEGRAM_BOT_TOKEN"):
                await wrong.start()
            assert wrong.application is None
            await wrong.stop()  # stopping what never started is harmless
            right = TelegramPlatform(service, token="123456:right-token", base_url=fake.base_url,
                                     base_file_url=fake.base_file_url, poll_timeout=1)
            await right.start()
            app = right.application
            await right.start()  # idempotent: the same application keeps polling
            assert right.application is app and app is not None and app.running
            await right.stop()
            assert right.application is None
    finally:
        await fake.stop()
