"""Encoder throughput: plain fp32 transformers (the seed's way) against clipbot's encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.common import p50, photos, repeat_images, timed
from core.models.clip import ClipEncoder, resolve_device


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
            result["auto_choice"] = _auto_choice(encoder)
            _preprocessing(result, encoder, model, images, batches=batches, repeats=repeats)
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


def _auto_choice(encoder: ClipEncoder) -> dict[str, Any]:
    """What "auto" measured at load and chose from it: the precision, each precision's agreement
    with fp32, its images/s (model alone) at each batch it timed, and the CPU's index batch."""
    measured = encoder.measurement
    if measured is None:
        return {"precision": encoder.precision_used}
    return {
        "precision": measured.precision, "agreement": measured.agreement, "agreements": measured.agreements,
        "images_per_s": {p: {f"b{b}": v for b, v in sorted(s.items())} for p, s in measured.images_per_s.items()},
        "index_batch": measured.index_batch,
    }


def _e2e_and_model_only(encoder: ClipEncoder, slow: ClipEncoder, batch: list[Any], *,
                        repeats: int) -> tuple[float, float, float]:
    """Median seconds of encode_images (fast preprocessing), encode_pixels on pixels preprocessed
    beforehand, and encode_images with the reference processor: interleaved, so that load from
    elsewhere on the machine weighs on all three alike."""
    pixels = encoder.preprocess(batch)
    calls = (lambda: encoder.encode_images(batch), lambda: encoder.encode_pixels(pixels),
             lambda: slow.encode_images(batch))
    for call in calls:
        call()  # warm-up
    times: list[list[float]] = [[], [], []]
    for _ in range(repeats):
        for i, call in enumerate(calls):
            times[i].extend(timed(call, repeats=1, warmup=0))
    return p50(times[0]), p50(times[1]), p50(times[2])


def _preprocessing(result: dict[str, Any], encoder: ClipEncoder, model: Path, images: list[Any], *,
                   batches: tuple[int, ...], repeats: int) -> None:
    """End to end (encode_images from PIL) against the model alone (encode_pixels on pixels made
    beforehand), same batch and precision; and the fast preprocessing against the reference."""
    # The same precision with transformers' processor doing the preprocessing: the reference
    # the fast path is held to, and what clipbot did before it.
    slow = ClipEncoder(str(model), precision=encoder.precision_used, batch_size=32, fast_preprocess=False)
    slow.load()
    result["e2e_vs_model_only_by_batch"] = {}
    for b in batches:
        batch = repeat_images(images, b)
        fast_e2e, model_only, slow_e2e = _e2e_and_model_only(encoder, slow, batch, repeats=repeats + 2)
        result["images_per_s"][f"model_only_{encoder.precision_used}_b{b}"] = b / model_only
        result["e2e_vs_model_only_by_batch"][f"b{b}"] = model_only / fast_e2e
        result["e2e_vs_model_only_by_batch"][f"reference_processor_b{b}"] = model_only / slow_e2e
    result["e2e_vs_model_only"] = result["e2e_vs_model_only_by_batch"]["b8"]
    result["e2e_vs_model_only_reference_processor"] = (
        result["e2e_vs_model_only_by_batch"]["reference_processor_b8"]
    )
    fast_pixels, slow_pixels = encoder.preprocess(images), slow.preprocess(images)
    a, r = fast_pixels.reshape(len(images), -1), slow_pixels.reshape(len(images), -1)
    result["preprocess_pixel_cosine_min"] = float(
        np.min(np.sum(a * r, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(r, axis=1))
    )
    result["preprocess_vector_cosine_min"] = float(np.min(np.sum(
        encoder.encode_pixels(fast_pixels) * encoder.encode_pixels(slow_pixels), axis=1)))
    result["preprocess_ms_per_image"] = {
        "fast": 1000 * p50(timed(lambda: encoder.preprocess(images), repeats=repeats)) / len(images),
        "reference": 1000 * p50(timed(lambda: slow.preprocess(images), repeats=repeats)) / len(images),
    }
