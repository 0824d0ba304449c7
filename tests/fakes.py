"""Test doubles that wrap the real tiny model rather than patching it."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
from aiohttp import web
from PIL import Image

from core.encoders import ClipEncoder, ImageTextEncoder


class RecordingEncoder(ImageTextEncoder):
    """The real tiny CLIP, logging each model call; ``delay`` stands in for a real model's time."""

    def __init__(self, inner: ClipEncoder, delay: float = 0.0) -> None:
        super().__init__()
        self.inner, self.delay = inner, delay
        self.model_id = inner.model_id
        self.spans: list[tuple[float, float, int]] = []
        self.calls: list[tuple[str, int]] = []
        self.gate: threading.Event | None = None  # when set, calls wait for it (to fill queues)
        self.fail_with: Exception | None = None

    def _load(self) -> None:
        self.inner.load()

    @property
    def dim(self) -> int:
        return self.inner.dim

    def _record(self, kind: str, n: int) -> float:
        if self.gate is not None:
            self.gate.wait(10)
        self.calls.append((kind, n))
        if self.fail_with is not None:
            raise self.fail_with
        return time.monotonic()

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        start = self._record("image", len(images))
        out = self.inner.encode_images(images)
        time.sleep(self.delay)
        self.spans.append((start, time.monotonic(), len(images)))
        return out

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.inner.preprocess(images)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        start = self._record("image", len(pixels))
        out = self.inner.encode_pixels(pixels)
        time.sleep(self.delay)
        self.spans.append((start, time.monotonic(), len(pixels)))
        return out

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self._record("text", len(texts))
        out = self.inner.encode_texts(texts)
        time.sleep(self.delay)
        return out


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on 127.0.0.1 at a free port; returns the runner (to clean up) and the port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
