"""Encoder precision: fp32, bf16, fp16 or int8, and "auto", which measures before it chooses.

On CPUs inference is bound by matrix multiplies; bf16 weights or dynamically quantised int8
linear layers make a ViT-B/32 2.5-3x faster (docs/performance.md). Whether a model keeps its
meaning at lower precision is measured, not assumed: "auto" encodes a few built-in calibration
images and sentences at fp32 and at each faster precision, and keeps the fastest whose vectors
agree with fp32 at cosine >= 0.99.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from core.errors import ConfigError

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
AGREEMENT_FLOOR = 0.99
CALIBRATION_TEXTS = ("a photo of a cat", "a red car parked on a street", "a bowl of fruit on a wooden table",
                     "mountains under a blue sky")


@dataclass
class Prepared:
    """A model ready for inference, the dtype its inputs take, and why it was chosen."""

    model: Any
    input_dtype: Any
    precision: str
    agreement: float | None = None  # min cosine against fp32 on the calibration set, when measured


def calibration_images(size: int = 224) -> list[Image.Image]:
    """Four deterministic pictures with colour, edges and texture (no files needed)."""
    rng = np.random.default_rng(20261126)
    y, x = np.mgrid[0:size, 0:size] / size
    gradient = np.stack([x, y, 1 - x], axis=-1)
    noise = rng.random((size // 8, size // 8, 3))
    blocks = np.kron(noise, np.ones((8, 8, 1)))[:size, :size]
    images = [Image.fromarray((gradient * 255).astype(np.uint8)), Image.fromarray((blocks * 255).astype(np.uint8))]
    shapes = Image.new("RGB", (size, size), (240, 230, 200))
    draw = ImageDraw.Draw(shapes)
    draw.ellipse((20, 30, 120, 130), fill=(200, 30, 30))
    draw.rectangle((110, 100, 210, 200), fill=(30, 60, 190))
    images.append(shapes)
    checker = ((np.indices((size, size)).sum(axis=0) // 28) % 2).astype(np.uint8) * 255
    images.append(Image.fromarray(checker).convert("RGB"))
    return images


def convert(model: Any, precision: str, device: str) -> Prepared:
    """The model at one fixed precision (the fp32 model itself for "fp32")."""
    import torch

    if precision == "fp32":
        return Prepared(model, torch.float32, precision)
    if precision == "bf16":
        return Prepared(model.to(torch.bfloat16), torch.bfloat16, precision)
    if precision == "fp16":
        return Prepared(model.half(), torch.float16, precision)
    if precision == "int8":
        if device != "cpu":
            raise ConfigError("CLIPBOT_PRECISION=int8 runs on the CPU only; use fp16 on a GPU.")
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():  # torch.ao announces its move to torchao on every call
            warnings.simplefilter("ignore")
            quantised = quantize_dynamic(  # type: ignore[no-untyped-call]  # torch.ao.quantization is unannotated
                model, {torch.nn.Linear}, dtype=torch.qint8
            )
        return Prepared(quantised, torch.float32, precision)
    raise ConfigError(f"CLIPBOT_PRECISION must be one of {', '.join(PRECISIONS)}, not {precision!r}.")


def prepare(model: Any, precision: str, device: str,
            encode: Callable[[Prepared], np.ndarray]) -> Prepared:
    """Apply ``precision``; for "auto", the fastest candidate that agrees with fp32.

    ``encode(prepared)`` returns unit vectors of the calibration set (images and texts).
    """
    if precision != "auto":
        return convert(model, precision, device)
    candidates = ["fp16"] if device == "cuda" else ["int8", "bf16"] if device == "cpu" else []
    if not candidates:
        return convert(model, "fp32", device)
    reference = encode(convert(model, "fp32", device))
    for candidate in candidates:
        try:
            prepared = convert(copy.deepcopy(model), candidate, device)
            agreement = float(np.min(np.sum(encode(prepared) * reference, axis=1)))
        except Exception as exc:
            log.info("precision %s unavailable here: %s", candidate, exc)
            continue
        log.info("precision %s agrees with fp32 at cosine >= %.4f", candidate, agreement)
        if agreement >= AGREEMENT_FLOOR:
            prepared.agreement = agreement
            return prepared
    return Prepared(model, convert(model, "fp32", device).input_dtype, "fp32", 1.0)
