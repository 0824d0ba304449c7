"""Encoder precision: fp32, bf16, fp16 or int8, and "auto", which measures before it chooses.

On CPUs inference is bound by matrix multiplies; bf16 weights or dynamically quantised int8
linear layers make a ViT-B/32 2.5-3x faster (docs/performance.md). Whether a model keeps its
meaning at lower precision is measured, not assumed: "auto" encodes a few built-in calibration
images and sentences at fp32 and at each faster precision, and keeps the fastest whose vectors
agree with fp32 at cosine >= 0.99. That measurement costs seconds at every start, so its outcome is
remembered on disk (:class:`PrecisionCache`) per model files, torch build, device and CPU.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
    from_cache: bool = False  # "auto" reused an earlier start's measurement instead of measuring


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
    """The model at one fixed precision (the fp32 model itself for "fp32"); ``model`` is converted
    in place, so pass a copy to keep the fp32 one."""
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
            # In place, like the other precisions: a copy first would read every weight of the
            # memory-mapped checkpoint twice (seconds for ViT-B/32); callers that keep fp32 pass a copy.
            quantised = quantize_dynamic(  # type: ignore[no-untyped-call]  # torch.ao.quantization is unannotated
                model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
            )
        return Prepared(quantised, torch.float32, precision)
    raise ConfigError(f"CLIPBOT_PRECISION must be one of {', '.join(PRECISIONS)}, not {precision!r}.")


def prepare(model: Any, precision: str, device: str, encode: Callable[[Prepared], np.ndarray],
            *, cache: PrecisionCache | None = None) -> Prepared:
    """Apply ``precision``; for "auto", the fastest candidate that agrees with fp32.

    ``encode(prepared)`` returns unit vectors of the calibration set (images and texts). With a
    ``cache``, "auto" takes the precision an earlier start measured for the same key, and stores
    what it measures otherwise.
    """
    if precision != "auto":
        return convert(model, precision, device)
    remembered = cache.lookup() if cache is not None else None
    if remembered is not None:
        try:
            prepared = convert(model, remembered[0], device)
        except Exception as exc:  # e.g. a precision this build no longer offers: measure again
            log.info("cached precision %s unusable, measuring again: %s", remembered[0], exc)
        else:
            prepared.agreement, prepared.from_cache = remembered[1], True
            log.info("precision %s from the cache (measured at an earlier start)", prepared.precision)
            return prepared
    prepared = _measure(model, device, encode)
    if cache is not None:
        cache.store(prepared.precision, prepared.agreement)
    return prepared


def _measure(model: Any, device: str, encode: Callable[[Prepared], np.ndarray]) -> Prepared:
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


CACHE_FILE = "precision.json"
# Part of every key: a change to how "auto" decides (candidates, floor, calibration set) re-measures.
_DECISION_VERSION = f"1:{AGREEMENT_FLOOR}"
_MAX_ENTRIES = 64


class PrecisionCache:
    """What "auto" chose for one model on one machine, remembered in ``directory/precision.json``.

    The key covers the model's files (names, sizes, modification times), the torch build, the
    device and the CPU's instruction set, so any change there measures again. The file is only
    an optimisation: unreadable or damaged, it is ignored and rewritten; writing it never fails a load.
    """

    def __init__(self, directory: Path, key: str) -> None:
        self.path = Path(directory) / CACHE_FILE
        self.key = key

    @classmethod
    def for_model(cls, directory: Path, model_files: Path, device: str) -> PrecisionCache:
        return cls(directory, cache_key(model_files, device))

    def lookup(self) -> tuple[str, float | None] | None:
        """The remembered ``(precision, agreement)`` for this key, if any."""
        entry = self._entries().get(self.key)
        if not isinstance(entry, dict) or entry.get("precision") not in PRECISIONS[1:]:
            return None
        agreement = entry.get("agreement")
        return str(entry["precision"]), float(agreement) if isinstance(agreement, (int, float)) else None

    def store(self, precision: str, agreement: float | None) -> None:
        entries = self._entries()
        entries[self.key] = {"precision": precision, "agreement": agreement, "saved": time.time()}
        if len(entries) > _MAX_ENTRIES:  # old models and torch builds: keep the newest
            newest = sorted(entries.items(), key=lambda kv: _saved(kv[1]), reverse=True)[:_MAX_ENTRIES]
            entries = dict(newest)
        written = ""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Written beside and renamed over: a reader never sees half a file, even if we are killed.
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, prefix=".precision-", suffix=".tmp",
                                             delete=False, encoding="utf-8") as tmp:
                written = tmp.name
                json.dump({"entries": entries}, tmp, indent=1)
            os.replace(written, self.path)
        except OSError as exc:
            log.warning("cannot write the precision cache %s (the next start measures again): %s", self.path, exc)
            if written:
                with contextlib.suppress(OSError):
                    os.unlink(written)

    def _entries(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.info("ignoring the unreadable precision cache %s: %s", self.path, exc)
            return {}
        entries = data.get("entries") if isinstance(data, dict) else None
        return dict(entries) if isinstance(entries, dict) else {}


def _saved(entry: object) -> float:
    saved = entry.get("saved") if isinstance(entry, dict) else None
    return float(saved) if isinstance(saved, (int, float)) else 0.0


def cache_key(model_files: Path, device: str) -> str:
    """A digest of everything the "auto" decision depends on (see :class:`PrecisionCache`)."""
    import torch

    parts = {
        "decision": _DECISION_VERSION, "model": model_fingerprint(model_files), "torch": torch.__version__,
        "device": device, "cpu": cpu_signature(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else "",
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def model_fingerprint(directory: Path) -> list[tuple[str, int, int]]:
    """Name, size and modification time of each file under ``directory`` (a hub snapshot's path
    holds the commit, and its links resolve to the blobs): cheap, and changes with any new file."""
    files = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            path = Path(root, name)
            try:
                st = path.stat()
            except OSError:
                continue
            files.append((path.relative_to(directory).as_posix(), st.st_size, st.st_mtime_ns))
    return [(str(directory.resolve()), 0, 0), *sorted(files)]


def cpu_signature() -> str:
    """The CPU's model and instruction-set flags, and the kernels torch picked for them."""
    import torch

    lines = []
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
        for line in info:
            if line.startswith(("flags", "model name", "Features", "CPU part")):
                lines.append(" ".join(line.split()))
            if line.strip() == "" and lines:
                break  # the first processor is enough
    lines.append(f"{platform.machine()} {platform.processor()} {torch.backends.cpu.get_cpu_capability()}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
