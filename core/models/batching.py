"""Micro-batching: encode requests that arrive within a few milliseconds as one model call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image

from core.errors import BusyError
from core.models.inference import InferenceRunner

log = logging.getLogger(__name__)
Kind = Literal["image", "pixels", "text"]
T = TypeVar("T")


@dataclass
class _Request:
    kind: Kind
    items: Sequence[Image.Image] | Sequence[str] | np.ndarray
    future: asyncio.Future[np.ndarray] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class MicroBatcher:
    """Same interface as :class:`InferenceRunner`, but concurrent calls share model batches.

    Requests wait in a bounded queue; a worker takes the first, waits up to ``max_wait_ms`` for
    more of the same kind (up to ``max_batch`` items), encodes them in one call on the inference
    thread and hands each caller its rows. A full queue raises :class:`BusyError` at once, so a
    flood of photos gets "busy" replies instead of an ever-growing wait.
    """

    def __init__(self, runner: InferenceRunner, *, max_batch: int = 16, max_wait_ms: float = 5.0,
                 max_queue: int = 64) -> None:
        self.runner = runner
        self.encoder = runner.encoder
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self._queue: asyncio.Queue[_Request] | None = None
        self._max_queue = max(1, max_queue)
        self._worker: asyncio.Task[None] | None = None
        self.model_calls = 0  # observable by benchmarks and tests
        self._pending = 0  # requests queued or being encoded, not yet answered

    @property
    def model_id(self) -> str:
        return self.runner.model_id

    @property
    def input_side(self) -> int:
        return self.runner.input_side

    @property
    def batch_size(self) -> int:
        return self.runner.batch_size

    @property
    def pending(self) -> int:
        """How many requests are queued or being encoded, not yet answered (read-only; :attr:`busy`
        is whether there are any)."""
        return self._pending

    @property
    def busy(self) -> bool:
        """Whether requests are waiting or being encoded: low-priority work (repost checks) waits
        until this is False, so it never delays a reply."""
        return self._pending > 0

    async def start(self) -> None:
        """Start the inference thread and the batching worker; idempotent."""
        await self.runner.start()
        self._ensure_worker()

    async def load(self) -> int:
        return await self.runner.load()

    async def call(self, fn: Callable[[], T]) -> T:
        return await self.runner.call(fn)

    async def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return await self._submit("image", images)

    async def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return await self._submit("pixels", pixels)

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return await self._submit("text", texts)

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.runner.preprocess(images)

    async def _submit(self, kind: Kind, items: Sequence[Image.Image] | Sequence[str] | np.ndarray) -> np.ndarray:
        if len(items) == 0:
            return await self.runner.encode_texts([]) if kind == "text" else await self.runner.encode_images([])
        if self._worker is None:
            raise RuntimeError("the micro-batcher is not started: await batcher.start() first")
        self._ensure_worker()  # a worker that died is replaced, so one failure does not stop the bot
        assert self._queue is not None
        request = _Request(kind, items)
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            raise BusyError("I'm busy with other pictures right now; try again in a moment.") from None
        self._pending += 1
        try:
            return await request.future
        finally:
            self._pending -= 1

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue(self._max_queue)
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="clipbot-microbatcher")

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        held: _Request | None = None
        while True:
            first = held or await queue.get()
            held = None
            batch = [first]
            size = len(first.items)
            deadline = asyncio.get_running_loop().time() + self.max_wait
            while size < self.max_batch:
                timeout = deadline - asyncio.get_running_loop().time()
                try:
                    nxt = queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(queue.get(), timeout)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                if nxt.kind != first.kind or size + len(nxt.items) > self.max_batch:
                    held = nxt  # starts the next batch
                    break
                batch.append(nxt)
                size += len(nxt.items)
            await self._encode(batch)

    async def _encode(self, batch: list[_Request]) -> None:
        items: list[Any] = [x for r in batch for x in r.items]
        self.model_calls += 1
        try:
            if batch[0].kind == "pixels":
                vectors = await self.runner.encode_pixels(np.stack(items))
            elif batch[0].kind == "image":
                vectors = await self.runner.encode_images(items)
            else:
                vectors = await self.runner.encode_texts(items)
        except Exception as exc:
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(exc)
            return
        start = 0
        for r in batch:
            if not r.future.done():
                r.future.set_result(vectors[start:start + len(r.items)])
            start += len(r.items)

    async def aclose(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        await self.runner.aclose()
