"""Captions: BLIP's throughput on this machine (batch 1 and 8, fp32 and int8), and the caption pass.

Full mode measures the BLIP-base architecture (``BlipConfig()``'s defaults: ViT-B/16 at 384 px and
a 12-layer BERT decoder) with random weights, so only speed can be compared, not caption quality.
Every caption is made ``max_new_tokens`` (30) tokens long, so each setting does the same work:
real captions stop earlier (about 10 tokens), so real throughput is higher than these numbers.

The ingest part indexes photos with captions on, as `clipbot index` does: the CLIP part (images
searchable) against the encoder's raw rate, then the caption pass on its own, with its rate.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import CACHE, photos, repeat_images, timed
from bench.ingest import generate_photos
from core.models.blip import BlipCaptioner
from tests.model_factory import build_blip_model

BATCHES = (1, 8)


def blip_dir(smoke: bool) -> Path:
    target = CACHE / ("tiny-blip" if smoke else "blip-base-random")
    if not (target / "model.safetensors").exists():
        build_blip_model(target, full_size=not smoke)
    return target


def throughput(blip: Path, *, smoke: bool) -> dict[str, float]:
    """Images/s for each precision and batch size (``"fp32_b1"``, ...); ``"int8_same_captions"``: the
    share of batch-8 captions int8 writes exactly as fp32 does (random weights: a sanity check only)."""
    images = photos()
    rates: dict[str, float] = {}
    written: dict[str, list[str]] = {}
    for precision in ("fp32", "int8"):
        captioner = BlipCaptioner(str(blip), device="cpu", batch_size=max(BATCHES), precision=precision)
        captioner.load()
        # Random weights end captions at arbitrary lengths, and differently at each precision:
        # every caption is made exactly max_new_tokens long, so each setting does the same work.
        model = captioner._model
        for config in (model.generation_config, model.text_decoder.generation_config):
            config.min_new_tokens = captioner.max_new_tokens
        for batch in BATCHES:
            sample = repeat_images(images, batch)
            # The fastest of a few runs: other work on the machine only ever slows a run down.
            seconds = min(timed(lambda s=sample, c=captioner: c.caption_images(s), repeats=2))
            rates[f"{precision}_b{batch}"] = batch / seconds
        written[precision] = captioner.caption_images(repeat_images(images, max(BATCHES)))
    same = [a == b for a, b in zip(written["fp32"], written["int8"], strict=True)]
    return {**rates, "int8_same_captions": sum(same) / len(same)}


async def _ingest(folder: Path, data: Path, clip: Path, blip: Path, encoder: Any, captioned: int) -> dict[str, float]:
    """Index the folder with captions on, then time the caption pass over its first ``captioned`` images."""
    from bot.composition import build_engine
    from bot.settings import Settings
    from core.gallery.caption_pass import caption_pending
    from core.gallery.ingest import ingest
    from core.gallery.sources import collect_items

    settings = Settings(clip_model=str(clip), data_dir=data, caption_model=str(blip), batch_size=16,  # type: ignore[call-arg]
                        precision="auto", _env_file=None)
    items = collect_items([folder]).items
    async with build_engine(settings, encoder) as engine:
        await engine.warm()
        start = time.perf_counter()
        summary = await ingest(engine, items, collection="global", batch_size=16)
        clip_s = time.perf_counter() - start
        waiting = await engine.awaiting_captions("global")
        assert summary.added == len(items) == len(waiting), summary  # indexing captioned nothing
        start = time.perf_counter()
        done = await caption_pending(engine, records=waiting[:captioned], batch_size=8)
        caption_s = time.perf_counter() - start
    assert done.done == min(captioned, len(items)), done
    return {"ingest_images_per_s": len(items) / clip_s, "caption_pass_images_per_s": done.done / caption_s}


def run(clip: Path, *, smoke: bool) -> dict[str, Any]:
    from core.media.images import decode_image
    from core.models.clip import ClipEncoder

    model = blip_dir(smoke)
    rates = throughput(model, smoke=smoke)
    speedup = rates["int8_b8"] / rates["fp32_b8"]
    n, captioned = (16, 16) if smoke else (240, 24)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        generate_photos(folder, n)
        encoder = ClipEncoder(str(clip), precision="auto", batch_size=16)
        encoder.load()
        # The CLIP model alone (images preprocessed beforehand), as bench/ingest.py measures it.
        pixels = encoder.preprocess([decode_image(p).image for p in sorted(folder.iterdir())[:16]])
        model_only = len(pixels) / min(timed(lambda: encoder.encode_pixels(pixels), repeats=3))
        measured = asyncio.run(_ingest(folder, Path(tmp) / "data", clip, model, encoder, captioned))
    return {
        "model": "tiny random BLIP" if smoke else "BLIP-base architecture, random weights",
        **{f"images_per_s_{k}": v for k, v in rates.items() if k != "int8_same_captions"},
        "int8_same_captions": rates["int8_same_captions"],
        "int8_speedup_b8": speedup, "batch8_speedup_fp32": rates["fp32_b8"] / rates["fp32_b1"],
        "photos": n, "captioned_by_the_pass": captioned, "model_only_images_per_s": model_only, **measured,
        "ingest_fraction_of_model_only": measured["ingest_images_per_s"] / model_only,
    }
