"""Ingest: `clipbot index` over generated photos, against the encoder's raw throughput."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bench.common import p50, timed
from bot.composition import build_engine
from bot.settings import Settings
from core.gallery import Colors, ingest, run_enrichment
from core.gallery.sources import collect_items
from core.media.images import decode_image
from core.models.clip import ClipEncoder


def generate_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Distinct 640x480 JPEGs: a noisy gradient with random shapes, blurred a little like a photo."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:480, 0:640] / 640
    paths = []
    for i in range(n):
        base = np.stack([x * rng.random(), y * rng.random(), (1 - x) * rng.random()], axis=-1) * 255
        noise = rng.normal(0, 12, (480, 640, 3))
        img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, 560)), int(rng.integers(0, 400))
            box = (x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200)))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        path = folder / f"photo-{i:04d}.jpg"
        img.filter(ImageFilter.GaussianBlur(1)).save(path, quality=88)
        paths.append(path)
    return paths


async def _ingest(folder: Path, data: Path, model: Path, encoder: ClipEncoder) -> tuple[int, float, float, float]:
    """Index the folder with the model loaded (vectors only: the enrichment passes off), then the
    colour pass on its own, then index again unchanged (a sync: nothing decoded)."""
    # Batch size and decode threads as an operator gets them: chosen for the device and the cores.
    settings = Settings(clip_model=str(model), data_dir=data, caption_model="none",  # type: ignore[call-arg]
                        _env_file=None)
    items = collect_items([folder]).items
    async with build_engine(settings, encoder, captioner=None) as engine:
        await engine.warm()
        batch = await engine.index_batch_size()
        start = time.perf_counter()
        summary = await ingest(engine, items, collection="global", batch_size=batch)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        colored = await run_enrichment(engine, Colors(), collection="global")
        colors_s = time.perf_counter() - start
        assert colored.done == summary.added, f"colour pass: {colored.done} of {summary.added}"
        start = time.perf_counter()
        again = await ingest(engine, collect_items([folder]).items, collection="global", batch_size=batch)
        assert again.unchanged == len(items), f"re-index: {again.unchanged} of {len(items)} unchanged"
        return summary.added, seconds, colors_s, time.perf_counter() - start


def run(model: Path, *, smoke: bool) -> dict[str, Any]:
    n = 24 if smoke else 500
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        generate_photos(folder, n)
        encoder = ClipEncoder(str(model), precision="auto")  # the device's batch size: 8 on a CPU, 256 on a GPU
        encoder.load()
        sample = [decode_image(p).image for p in sorted(folder.iterdir())[:max(32, encoder.batch_size)]]
        # The encoder's raw rate: already decoded images, preprocessing and model, a batch or more.
        # The model alone: the same images preprocessed beforehand. The two are timed in turns, so
        # that load from elsewhere on the machine weighs on both alike.
        pixels = encoder.preprocess(sample)
        with_preprocessing: list[float] = []
        model_alone: list[float] = []
        for _ in range(2 if smoke else 4):
            with_preprocessing.extend(timed(lambda: encoder.encode_images(sample), repeats=1))
            model_alone.extend(timed(lambda: encoder.encode_pixels(pixels), repeats=1))
        raw = len(sample) / p50(with_preprocessing)
        model_only = len(sample) / p50(model_alone)
        # `clipbot index`'s pipeline (walk, decode, preprocess, encode, store) with the model loaded:
        # the one-off model load is reported by the encode benchmark, not charged per image here.
        added, seconds, colors_s, unchanged_s = asyncio.run(_ingest(folder, Path(tmp) / "data", model, encoder))
    assert added == n, f"ingest added {added} of {n}"
    return {"photos": n, "seconds": seconds, "images_per_s": n / seconds, "encoder_images_per_s": raw,
            "fraction_of_encoder": (n / seconds) / raw, "reindex_unchanged_s": unchanged_s,
            "color_pass_images_per_s": n / colors_s, "batch": encoder.batch_size,
            "precision": getattr(encoder, "precision", "?"),
            "model_only_images_per_s": model_only, "fraction_of_model_only": (n / seconds) / model_only}
