"""What the fakes share: recording what they are asked, injecting faults, serving on loopback.

``RecordingEncoder`` wraps the real tiny model rather than patching it, logging each model call
(and, on demand, holding or failing it). The rest is the plumbing both platform fakes (Telegram,
Discord) use the same way: a free port on 127.0.0.1, the fault kinds a test may inject and the
answers they give (an HTML error page from the proxy in front of the API, a request never
answered), and waiting for the calls a test expects.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from aiohttp import web
from PIL import Image

from core.models.clip import ClipEncoder, ImageTextEncoder

GATE_TIMEOUT_S = 60.0  # how long a gated model call waits for the test before it fails


class RecordingEncoder(ImageTextEncoder):
    """The real tiny CLIP, logging each model call; ``delay`` stands in for a real model's time."""

    def __init__(self, inner: ClipEncoder, delay: float = 0.0) -> None:
        super().__init__()
        self.inner, self.delay = inner, delay
        self.model_id = inner.model_id
        self.spans: list[tuple[float, float, int]] = []
        self.calls: list[tuple[str, int]] = []
        self.gate: threading.Event | None = None  # when given, calls wait until it is set (to fill queues)
        self.fail_with: Exception | None = None

    def _load(self) -> None:
        self.inner.load()

    @property
    def dim(self) -> int:
        return self.inner.dim

    def _record(self, kind: str, n: int) -> float:
        if self.gate is not None and not self.gate.wait(GATE_TIMEOUT_S):
            # Fail loudly rather than go on: a call let through by a clock, not by the test, would
            # make what the test sees depend on timing.
            raise TimeoutError(f"the test did not open the encoder's gate within {GATE_TIMEOUT_S:g} s")
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


class LoopbackServer:
    """A fake's aiohttp server on 127.0.0.1 (mixed into each fake): ``port`` once ``_serve`` started it."""

    _runner: web.AppRunner | None
    port: int

    async def _serve(self, app: web.Application) -> None:
        self._runner, self.port = await serve_on_loopback(app)

    async def _shut(self) -> None:
        runner, self._runner = self._runner, None
        if runner:
            await runner.cleanup()


# -- fault injection ------------------------------------------------------------------------------------------------

_HTML_PAGE = ("<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1>"
              "</center>\r\n<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n")


def check_fault(kind: str, faults: Mapping[str, str]) -> None:
    """Refuse a fault kind the fake does not know (``faults``: its kinds, each with what it answers)."""
    if kind not in faults:
        raise ValueError(f"unknown fault {kind!r}; one of {sorted(faults)}")


def html_error(kind: str, server: str) -> web.Response:
    """The "500-html" or "502-html" fault: the error page of the proxy (``server``) in front of the API."""
    code, reason = (500, "Internal Server Error") if kind == "500-html" else (502, "Bad Gateway")
    return web.Response(status=code, reason=reason, text=_HTML_PAGE.format(code=code, reason=reason, server=server),
                        content_type="text/html")


async def hang(stopping: asyncio.Event) -> web.Response:
    """The "hang" fault: no answer until the fake stops (the client gives up first)."""
    await stopping.wait()
    return web.Response(status=503)


async def wait_until(reached: Callable[[], bool], timeout: float, failure: Callable[[], str]) -> None:
    """Poll until ``reached()``; after ``timeout`` seconds fail the test with ``failure()``."""
    deadline = time.monotonic() + timeout
    while not reached():
        if time.monotonic() > deadline:
            raise AssertionError(failure())
        await asyncio.sleep(0.02)
