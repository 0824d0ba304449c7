"""The pipeline ceiling: `clipbot index` with an encoder that costs nothing.

Everything but the model is timed: walking, reading, hashing, decoding, preprocessing, writing
the media files and the rows. On the 2-core box this shows what a GPU would get, since a GPU makes
the model nearly free too; the figure per core says how it scales with a bigger machine.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.ingest import generate_photos
from bot.composition import build_engine
from bot.settings import Settings
from core.gallery.ingest import ingest
from core.gallery.sources import collect_items
from core.models.clip import ImageTextEncoder
from core.models.preprocess import FastClipPreprocessor, cpu_count

# CLIP ViT-B/32's preprocessing (openai/clip-vit-base-patch32's preprocessor_config.json).
_CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
_CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


class ZeroCostEncoder(ImageTextEncoder):
    """Real CLIP preprocessing, then unit vectors read off the pixels at no cost: the model a
    GPU nearly is, so that the rest of the pipeline is what gets measured."""

    model_id = "bench/zero-cost"

    def __init__(self, dim: int = 512, batch_size: int = 64) -> None:
        super().__init__()
        self._dim = dim
        self.batch_size = batch_size
        self._pre = FastClipPreprocessor(
            shortest_edge=224, crop_height=224, crop_width=224, resample=Image.Resampling.BICUBIC,
            scale=(1 / 255 / _CLIP_STD).astype(np.float32).reshape(3, 1, 1),
            offset=(_CLIP_MEAN / _CLIP_STD).astype(np.float32).reshape(3, 1, 1),
        )

    def _load(self) -> None:
        pass

    @property
    def dim(self) -> int:
        return self._dim

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._pre(images)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        rows = pixels.reshape(len(pixels), -1)[:, ::97][:, :self._dim].astype(np.float32) + 1e-3
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_pixels(self.preprocess(images))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = np.ones((len(texts), self._dim), np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


async def _index(folder: Path, data: Path, encoder: ImageTextEncoder) -> tuple[int, float, float]:
    settings = Settings(clip_model="bench/zero-cost", data_dir=data, caption_model="none",  # type: ignore[call-arg]
                        _env_file=None)
    async with build_engine(settings, encoder, captioner=None) as engine:
        await engine.warm()
        items = collect_items([folder]).items
        start, cpu = time.perf_counter(), time.process_time()
        summary = await ingest(engine, items, collection="global")
        return summary.added, time.perf_counter() - start, time.process_time() - cpu


def run(*, smoke: bool) -> dict[str, Any]:
    n = 48 if smoke else 500
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        generate_photos(folder, n)
        added, seconds, cpu_s = asyncio.run(_index(folder, Path(tmp) / "data", ZeroCostEncoder()))
    assert added == n, f"the pipeline added {added} of {n}"
    rate = n / seconds
    cores = cpu_count()
    return {"photos": n, "seconds": seconds, "images_per_s": rate, "cores": cores,
            "images_per_s_per_core": rate / cores, "ms_per_image_per_core": 1000 * cores / rate,
            # CPU time of every thread per image: what the pipeline costs, whatever else the box runs.
            "cpu_ms_per_image": 1000 * cpu_s / n}
