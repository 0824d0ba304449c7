"""End to end: M concurrent photos through the chat service, micro-batching on and off."""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import p50, percentile, photos
from bot.composition import build_chat_engine
from bot.settings import Settings
from core.chat.context import Chat, Context, User
from core.chat.ratelimit import RateLimiter
from core.chat.service import ChatService
from core.models.clip import ClipEncoder


def _jpegs(n: int) -> list[bytes]:
    out = []
    for image in photos():
        img = image.copy()
        img.thumbnail((640, 640))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return [out[i % len(out)] for i in range(n)]


async def _case(model: Path, encoder: ClipEncoder, concurrency: int, batching: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(  # type: ignore[call-arg]
            clip_model=str(model), data_dir=Path(data), caption_model="none", queue_size=1024,
            _env_file=None, **({} if batching else {"max_batch": 1, "batch_wait_ms": 0}),
        )
        async with build_chat_engine(settings, encoder, captioner=None) as engine:
            for blob in _jpegs(len(photos())):
                await engine.add_image(blob, label="gallery")
            service = ChatService(engine, limiter=RateLimiter(0))
            requests = _jpegs(concurrency)
            lag = 0.0
            running = True

            async def heartbeat() -> None:
                nonlocal lag
                while running:
                    start = time.perf_counter()
                    await asyncio.sleep(0.010)
                    lag = max(lag, time.perf_counter() - start - 0.010)

            async def one(i: int) -> float:
                start = time.perf_counter()
                ctx = Context(Chat("bench", "1"), User("bench", str(i)))
                reply = await service.match(ctx, requests[i])
                assert reply is not None and reply.kind == "result", reply
                return time.perf_counter() - start

            beat = asyncio.create_task(heartbeat())
            await service.match(Context(Chat("bench", "1"), User("bench", "warm")), requests[0])
            lag = 0.0
            start = time.perf_counter()
            latencies = await asyncio.gather(*(one(i) for i in range(concurrency)))
            total = time.perf_counter() - start
            running = False
            await beat
    return {"seconds": total, "photos_per_s": concurrency / total, "p50_ms": 1000 * p50(list(latencies)),
            "p95_ms": 1000 * percentile(list(latencies), 0.95), "loop_lag_ms": 1000 * lag}


def run(model: Path, *, smoke: bool) -> dict[str, Any]:
    encoder = ClipEncoder(str(model), precision="auto", batch_size=32)
    encoder.load()
    result: dict[str, Any] = {"cases": {}, "precision": encoder.precision_used}
    for concurrency in (1, 4) if smoke else (1, 8, 32, 64):
        for batching in (True, False):
            case = asyncio.run(_case(model, encoder, concurrency, batching))
            result["cases"][f"{'batched' if batching else 'unbatched'}_{concurrency}"] = case
    top = 4 if smoke else 32
    result["batching_speedup_32"] = (
        result["cases"][f"unbatched_{top}"]["seconds"] / result["cases"][f"batched_{top}"]["seconds"]
    )
    result["loop_lag_ms_max"] = max(c["loop_lag_ms"] for c in result["cases"].values())
    return result
