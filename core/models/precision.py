"""Encoder precision: fp32, bf16, fp16 or int8, and "auto", which measures before it chooses.

On CPUs inference is bound by matrix multiplies; bf16 weights or dynamically quantised int8
linear layers make a ViT-B/32 faster than fp32, and which one wins depends on the CPU and on the
batch size (ViT-B/32 alone on 2 Zen 4 cores: bf16 47 images/s at batch 32, int8 30; one image at
a time, int8 25 and bf16 18). So "auto" measures rather than assumes. It encodes a few built-in
calibration images and sentences at fp32 and at each lower precision and drops those whose vectors
disagree with fp32 (cosine < 0.99). Every precision left, fp32 included, is then timed on the
model alone at the batch sizes the work uses: :data:`CHAT_BATCH` (a chat photo or query comes
alone) and rising index batches (:data:`INDEX_BATCHES`, what `clipbot index` encodes at a time),
until :data:`PROFILE_BUDGET_S` of timing is spent.

How chat and index combine: one precision serves both, since a process holds one copy of the model
and the bot and `clipbot index` share the remembered choice. Each precision is scored by the
geometric mean of its images/s at the chat batch and at its best index batch, and the highest
score wins: relative speed-ups count alike, so twice as fast in chat makes up for half as fast
in indexing. The chosen precision's fastest index batch becomes the CPU's batch size. On a GPU
the rule is today's: fp16 when it agrees, batches of 256, nothing timed.

The measurement costs seconds, so its outcome is remembered on disk (:class:`PrecisionCache`) per
model files, torch build and threads, device and CPU.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
from PIL import Image, ImageDraw

from core.errors import ConfigError

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
AGREEMENT_FLOOR = 0.99
CALIBRATION_TEXTS = ("a photo of a cat", "a red car parked on a street", "a bowl of fruit on a wooden table",
                     "mountains under a blue sky")
CHAT_BATCH = 1  # a photo sent in a chat, or a text query, is encoded alone
INDEX_BATCHES = (8, 16, 32, 64)  # what `clipbot index` may encode at a time on a CPU, timed in this order
PROFILE_BUDGET_S = 6.0  # timed seconds per precision; a slow fp32 stops early instead of delaying the start
# Seconds for one model call on ``n`` images at a candidate precision (the encoder's, or a test's).
TimeBatch = Callable[["Prepared", int], float]


@dataclass
class Measurement:
    """What "auto" found on this machine: its choice and the figures it was made on."""

    precision: str
    agreement: float | None  # the chosen precision's min cosine against fp32 on the calibration set
    agreements: dict[str, float] = field(default_factory=dict)  # every precision that ran ("fp32": 1.0)
    images_per_s: dict[str, dict[int, float]] = field(default_factory=dict)  # precision -> batch -> model only
    index_batch: int | None = None  # the CPU's batch for indexing; None: not timed (GPU, or an old entry)
    legacy: bool = False  # remembered by a clipbot that kept the first agreeing precision, untimed


@dataclass
class Prepared:
    """A model ready for inference, the dtype its inputs take, and why it was chosen."""

    model: Any
    input_dtype: Any
    precision: str
    agreement: float | None = None  # min cosine against fp32 on the calibration set, when measured
    from_cache: bool = False  # "auto" reused an earlier start's measurement instead of measuring
    measurement: Measurement | None = None  # "auto"'s figures, measured now or remembered


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
            time_batch: TimeBatch, *, cache: PrecisionCache | None = None) -> Prepared:
    """Apply ``precision``; for "auto", the fastest candidate that agrees with fp32 (see the module).

    ``encode(prepared)`` returns unit vectors of the calibration set (images and texts);
    ``time_batch(prepared, n)`` the seconds of one model call on ``n`` images, the only clock
    "auto" reads (tests pass their own). With a ``cache``, "auto" takes what an earlier start
    measured for the same key, and stores what it measures otherwise.
    """
    if precision != "auto":
        return convert(model, precision, device)
    remembered = cache.lookup() if cache is not None else None
    # An untimed CPU entry kept the first precision that agreed, often not the fastest: measure again.
    if remembered is not None and not (remembered.legacy and device == "cpu"):
        try:
            prepared = convert(model, remembered.precision, device)
        except Exception as exc:  # e.g. a precision this build no longer offers: measure again
            log.info("cached precision %s unusable, measuring again: %s", remembered.precision, exc)
        else:
            prepared.agreement, prepared.from_cache, prepared.measurement = remembered.agreement, True, remembered
            log.info("precision %s from the cache (measured at an earlier start)", prepared.precision)
            return prepared
    prepared = _measure(model, device, encode, time_batch)
    if cache is not None and prepared.measurement is not None:
        cache.store(prepared.measurement)
    return prepared


def _measure(model: Any, device: str, encode: Callable[[Prepared], np.ndarray], time_batch: TimeBatch) -> Prepared:
    fp32 = convert(model, "fp32", device)
    if device not in ("cpu", "cuda"):  # no lower precision is known to pay off there
        fp32.measurement = Measurement("fp32", None)
        return fp32
    reference = encode(fp32)
    agreements, speeds = {"fp32": 1.0}, {}
    if device == "cpu":
        speeds["fp32"] = profile(fp32, time_batch)
    best, best_score = fp32, score(speeds.get("fp32", {}))
    for candidate in ["fp16"] if device == "cuda" else ["int8", "bf16"]:
        try:
            prepared = convert(copy.deepcopy(model), candidate, device)
            agreement = float(np.min(np.sum(encode(prepared) * reference, axis=1)))
        except Exception as exc:  # e.g. bf16 on a CPU or a torch build without its kernels
            log.info("precision %s unavailable here: %s", candidate, exc)
            continue
        agreements[candidate] = prepared.agreement = agreement
        log.info("precision %s agrees with fp32 at cosine >= %.4f", candidate, agreement)
        if not agreement >= AGREEMENT_FLOOR:  # NaN too: a half-precision overflow agrees with nothing
            del prepared  # its weights go now, before the next copy is made
            continue
        if device == "cuda":  # today's rule on a GPU: the half-precision model, untimed
            best = prepared
            break
        speeds[candidate] = profile(prepared, time_batch)
        if score(speeds[candidate]) > best_score:  # ties keep the earlier: fp32, then int8
            best, best_score = prepared, score(speeds[candidate])
        del prepared  # if it lost, its weights go now, before the next copy is made
    if best is fp32:
        best.agreement = 1.0
    timed = speeds.get(best.precision, {})
    index = [b for b in timed if b != CHAT_BATCH]
    best.measurement = Measurement(best.precision, best.agreement, agreements, speeds,
                                   max(index, key=lambda b: (timed[b], -b)) if index else None)
    log.info("precision %s chosen (images/s by batch: %s)", best.precision, speeds)
    return best


def profile(prepared: Prepared, time_batch: TimeBatch, *, budget_s: float = PROFILE_BUDGET_S) -> dict[int, float]:
    """Images/s (model only) at :data:`CHAT_BATCH`, then at each of :data:`INDEX_BATCHES` in turn
    until the next would overrun ``budget_s`` of timed seconds; the chat batch and the first
    index batch are always timed. No batch is skipped for being past a peak: the curve is not
    smooth (bf16 ViT-B/32 on 2 Zen 4 cores: about 40 images/s at 8, 36 at 16, 47 at 32)."""
    spent = time_batch(prepared, CHAT_BATCH)  # warm-up: a first call pays one-off costs (weight packing)
    speeds: dict[int, float] = {}
    for n in (CHAT_BATCH, *INDEX_BATCHES):
        # The best of 2-3 calls: a first call at a new shape also builds its kernels, and small ones are noisy.
        repeats = max(2, min(3, 24 // n))
        if len(speeds) >= 2 and spent + repeats * n / max(speeds.values()) > budget_s:
            break
        times = [time_batch(prepared, n) for _ in range(repeats)]
        spent += sum(times)
        speeds[n] = n / max(min(times), 1e-9)
    return speeds


def score(speeds: dict[int, float]) -> float:
    """How "auto" ranks a precision: the geometric mean of its images/s at the chat batch and at
    its best index batch (0 when not timed)."""
    index = [v for b, v in speeds.items() if b != CHAT_BATCH]
    return math.sqrt(speeds[CHAT_BATCH] * max(index)) if CHAT_BATCH in speeds and index else 0.0


def describe(setting: str, measured: Measurement | None) -> list[str]:
    """Lines for `clipbot stats`: the precision and, for "auto", the figures behind the choice."""
    if setting != "auto":
        return [f"Precision:   {setting} (CLIPBOT_PRECISION)"]
    if measured is None:
        return ["Precision:   auto, not yet measured on this machine (the first command that loads the model does)"]
    agree = "" if measured.agreement is None else f", agrees with fp32 at cosine {measured.agreement:.4f}"
    lines = [f"Precision:   {measured.precision} (auto{agree})"]
    for name, speeds in measured.images_per_s.items():
        figures = ", ".join(f"{v:.1f} at batch {b}" for b, v in sorted(speeds.items()))
        lines.append(f"  {name:<5} images/s (model alone): {figures}")
    refused = [f"{n} ({a:.4f})" for n, a in measured.agreements.items() if not a >= AGREEMENT_FLOOR]
    if refused:
        lines.append(f"  disagree with fp32: {', '.join(refused)}")
    if measured.index_batch is not None:
        lines.append(f"  index batch: {measured.index_batch} (the fastest per image at {measured.precision})")
    return lines


CACHE_FILE = "precision.json"
# Part of every key: a change to how "auto" decides (candidates, floor, calibration set) re-measures.
_DECISION_VERSION = f"2:{AGREEMENT_FLOOR}:{CHAT_BATCH}:{INDEX_BATCHES}"
_MAX_ENTRIES = 64
_FORMAT = 2  # entries without it were written before "auto" timed its candidates


class PrecisionCache:
    """What "auto" chose for one model on one machine, remembered in ``directory/precision.json``.

    The key covers the model's files (names, sizes, modification times), the torch build and its
    thread count, the device and the CPU's instruction set, so any change there measures again. The file is only
    an optimisation: unreadable or damaged, it is ignored and rewritten; writing it never fails a load.
    """

    def __init__(self, directory: Path, key: str) -> None:
        self.path = Path(directory) / CACHE_FILE
        self.key = key

    @classmethod
    def for_model(cls, directory: Path, model_files: Path, device: str) -> PrecisionCache:
        return cls(directory, cache_key(model_files, device))

    def lookup(self) -> Measurement | None:
        """What was measured for this key, if anything; an entry of an older format loads as a
        :attr:`Measurement.legacy` one (figures it never had are left empty)."""
        entry = self._entries().get(self.key)
        if not isinstance(entry, dict) or entry.get("precision") not in PRECISIONS[1:]:
            return None
        agreement = entry.get("agreement")
        speeds = entry.get("images_per_s")
        index_batch = entry.get("index_batch")
        return Measurement(
            str(entry["precision"]), float(agreement) if _number(agreement) else None,
            agreements={str(k): float(v) for k, v in _dict(entry.get("agreements")).items() if _number(v)},
            images_per_s={str(p): {int(b): float(v) for b, v in _dict(by_batch).items() if b.isdigit() and _number(v)}
                          for p, by_batch in _dict(speeds).items()},
            index_batch=index_batch if type(index_batch) is int and index_batch > 0 else None,
            legacy=entry.get("format") != _FORMAT,
        )

    def store(self, measured: Measurement) -> None:
        """Remember ``measured`` for this key (the file keeps the newest :data:`_MAX_ENTRIES` keys)."""
        entries = self._entries()
        entries[self.key] = {
            "format": _FORMAT, "precision": measured.precision, "agreement": measured.agreement,
            "agreements": measured.agreements, "index_batch": measured.index_batch, "saved": time.time(),
            "images_per_s": {p: {str(b): v for b, v in s.items()} for p, s in measured.images_per_s.items()},
        }
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


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _saved(entry: object) -> float:
    saved = entry.get("saved") if isinstance(entry, dict) else None
    return float(saved) if isinstance(saved, (int, float)) else 0.0


def cache_key(model_files: Path, device: str) -> str:
    """A digest of everything the "auto" decision depends on (see :class:`PrecisionCache`)."""
    import torch

    parts = {
        "decision": _DECISION_VERSION, "model": model_fingerprint(model_files), "torch": torch.__version__,
        "device": device, "cpu": cpu_signature(), "threads": torch.get_num_threads(),  # the timings depend on it
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
