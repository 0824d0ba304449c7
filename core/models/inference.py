"""Runs blocking model calls off the event loop, on one dedicated inference thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import numpy as np
from PIL import Image

from core.models.clip import ImageTextEncoder

T = TypeVar("T")


class Encoding(Protocol):
    """What the engine needs to turn images and texts into vectors without blocking the loop."""

    @property
    def model_id(self) -> str: ...

    @property
    def batch_size(self) -> int:
        """Images per model call (the device's choice once the encoder is loaded)."""
        ...

    async def start(self) -> None:
        """Make the threads it runs on; idempotent."""
        ...

    async def load(self) -> int: ...

    async def call(self, fn: Callable[[], T]) -> T:
        """Run any other model work (captions) on the same inference thread."""
        ...

    async def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    async def encode_pixels(self, pixels: np.ndarray) -> np.ndarray: ...

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Model inputs, computed on the caller's thread (decode threads), not the inference one."""
        ...

    async def aclose(self) -> None: ...


class InferenceRunner:
    """Async front of an encoder: calls run one at a time on a dedicated thread.

    One thread because torch already spreads one batch over every core; two batches at once
    would only fight over them.
    """

    def __init__(self, encoder: ImageTextEncoder) -> None:
        self.encoder = encoder
        self._executor: ThreadPoolExecutor | None = None  # made by start()

    @property
    def model_id(self) -> str:
        return self.encoder.model_id

    @property
    def batch_size(self) -> int:
        return int(getattr(self.encoder, "batch_size", 16))

    @property
    def input_side(self) -> int:
        """The shorter side of the model's input, in pixels (224 when the encoder does not say)."""
        return int(getattr(self.encoder, "input_side", 224))

    async def start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clipbot-inference")

    async def call(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise RuntimeError("the inference runner is not started: await runner.start() first")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def load(self) -> int:
        """Load the model (if not yet) and return its vector dimension."""
        return await self.call(lambda: self.encoder.dim)

    async def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return await self.call(lambda: self.encoder.encode_images(images))

    async def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return await self.call(lambda: self.encoder.encode_pixels(pixels))

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return await self.call(lambda: self.encoder.encode_texts(texts))

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encoder.preprocess(images)

    async def aclose(self) -> None:
        """Stop the inference thread, after the call it is running; safe to call twice."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
