"""Shared pieces of the benchmarks: models on disk, real photos, timing."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from core.media.images import decode_image
from tests.conftest import PHOTO_FILES
from tests.model_factory import build_clip_model

CACHE = Path(__file__).parent / ".cache"


def model_dir(smoke: bool) -> Path:
    """ViT-B/32 with random weights (the real architecture, ~600 MB), or the tests' tiny CLIP."""
    target = CACHE / ("tiny-clip" if smoke else "vit-b32-random")
    if not (target / "model.safetensors").exists():
        build_clip_model(target, full_size=not smoke)
    return target


def photos() -> list[Image.Image]:
    """Real photos that ship inside scikit-image, matplotlib and scikit-learn."""
    return [decode_image(p).image for p in PHOTO_FILES.values()]


def repeat_images(images: list[Image.Image], n: int) -> list[Image.Image]:
    return [images[i % len(images)] for i in range(n)]


def timed(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` calls, after ``warmup`` unmeasured ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def p50(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def standalone(run: Callable[..., dict[str, Any]], doc: str | None, argv: list[str] | None, *, smoke_help: str) -> int:
    """``python -m bench.<section> [--smoke]``: one section run alone, its result printed as JSON
    with the seconds it took."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = run(smoke=args.smoke)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0
