"""Encoder throughput: plain fp32 transformers (the seed's way) against clipbot's encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.common import p50, photos, repeat_images, timed
from core.encoders import ClipEncoder, resolve_device


def run(model: Path, *, smoke: bool) -> dict[str, Any]:
    import torch
    from transformers import CLIPModel, CLIPProcessor

    images = photos()
    batches = (1, 8) if smoke else (1, 8, 32)
    repeats = 2 if smoke else 3
    plain_model = CLIPModel.from_pretrained(model).eval()
    processor = CLIPProcessor.from_pretrained(model, backend="pil")

    def plain(batch: list[Any]) -> np.ndarray:
        with torch.inference_mode():
            out = plain_model.get_image_features(**processor(images=batch, return_tensors="pt"))
        vectors = (out if hasattr(out, "detach") else out.pooler_output).float().numpy()
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    reference = plain(images)
    result: dict[str, Any] = {"images_per_s": {}, "latency_ms_per_image": {}, "agreement": {}}

    def record(name: str, fn: Any) -> None:
        for b in batches:
            batch = repeat_images(images, b)
            seconds = p50(timed(lambda batch=batch: fn(batch), repeats=repeats))
            result["images_per_s"][f"{name}_b{b}"] = b / seconds
            result["latency_ms_per_image"][f"{name}_b{b}"] = 1000 * seconds / b

    record("plain_fp32", plain)
    # int8 (dynamic quantisation) is a CPU kernel; on a GPU fp16 takes its place.
    gpu = resolve_device("auto") != "cpu"
    for precision in ("fp32", "bf16", "fp16" if gpu else "int8", "auto"):
        encoder = ClipEncoder(str(model), precision=precision, batch_size=32)
        encoder.load()
        record(f"clipbot_{precision}", encoder.encode_images)
        result["agreement"][precision] = float(np.min(np.sum(encoder.encode_images(images) * reference, axis=1)))
        if precision == "auto":
            result["default_precision"] = encoder.precision_used
            text_seconds = timed(
                lambda encoder=encoder: encoder.encode_texts(["a red car parked on a street"]), repeats=5
            )
            result["text_query_ms"] = 1000 * p50(text_seconds)
    default = result["default_precision"]
    result["speedup_vs_fp32_b8"] = (
        result["images_per_s"]["clipbot_auto_b8"] / result["images_per_s"]["plain_fp32_b8"]
    )
    result["cosine_agreement_min"] = result["agreement"][default if default in result["agreement"] else "auto"]
    return result
