"""Image and text encoders: CLIP through Hugging Face transformers, loaded lazily."""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from core.errors import ModelLoadError
from core.models.gc_pause import gc_paused
from core.models.hub import CLIP, ModelKind, from_cache_or_hub, model_files_dir, model_load_error
from core.models.precision import CALIBRATION_TEXTS, Measurement, PrecisionCache, Prepared, calibration_images, prepare
from core.models.preprocess import REDUCING_GAP, FastClipPreprocessor
from core.storage.vector_index import unit_rows

log = logging.getLogger(__name__)
DEFAULT_CLIP_MODEL = CLIP.example
# A load slower than this is announced, so a command that seems stuck says what it waits for.
ANNOUNCE_AFTER_S = 1.0
# Images per CLIP model call when none is configured. On a CPU, precision "auto" times batches and
# replaces this with the fastest per image (int8 ViT-B/32 peaks at 8, bf16 gains up to 32 on 2 Zen 4
# cores); a fixed precision keeps 8. A GPU needs large batches to be filled.
CPU_BATCH_SIZE = 8
GPU_BATCH_SIZE = 256
Announce = Callable[[str], None]
__all__ = ["ANNOUNCE_AFTER_S", "CPU_BATCH_SIZE", "DEFAULT_CLIP_MODEL", "GPU_BATCH_SIZE", "Announce", "ClipEncoder",
           "Encoder", "ImageTextEncoder", "PretrainedModel", "load_pretrained", "model_load_error", "resolve_device"]


class Encoder(ABC):
    """A model behind a lazy, thread-safe :meth:`load`; nothing heavy happens in ``__init__``."""

    def __init__(self, *, announce: Announce | None = None) -> None:
        self._load_lock = threading.Lock()
        self._loaded = False
        self._announce = announce

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Load the model once; concurrent callers wait for the first load.

        A load still running after :data:`ANNOUNCE_AFTER_S` is announced once, through the
        ``announce`` callback given to the constructor (from a timer thread).
        """
        if self._loaded:
            return
        with self._load_lock:
            if not self._loaded:
                self._load_announced()

    def _load_announced(self) -> None:
        timer = None
        if self._announce is not None:
            timer = threading.Timer(ANNOUNCE_AFTER_S, self._announce_loading)
            timer.daemon = True  # never keeps a finished command alive
            timer.start()
        try:
            with gc_paused():
                self._load()
            self._loaded = True
        finally:
            if timer is not None:
                timer.cancel()

    def _announce_loading(self) -> None:
        if self._announce is None or self._loaded:
            return
        try:
            self._announce(self.loading_message())
        except Exception:  # a broken announcer must not break the load it reports on
            log.debug("announcing the model load failed", exc_info=True)

    def loading_message(self) -> str:
        """What :meth:`load` announces when it is slow."""
        return f"Loading the model {type(self).__name__}…"

    @abstractmethod
    def _load(self) -> None: ...


class ImageTextEncoder(Encoder):
    """Maps images and texts into one space of L2-normalised float32 vectors."""

    model_id: str

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return an ``(n, dim)`` float32 array of unit vectors."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Return an ``(n, dim)`` float32 array of unit vectors."""

    @abstractmethod
    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Model inputs for ``images``, ``(n, ...)``; thread-safe."""

    @abstractmethod
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Vectors of :meth:`preprocess` output: ``(n, dim)`` float32 unit vectors."""


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is usable, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class PretrainedModel(Encoder):
    """A transformers model and its processor, from a hub id or a local directory, on one device.

    What CLIP and BLIP share: the source and the setting that names it, the device, the thread
    count and the batch size; subclasses load their own classes through :meth:`_from_pretrained`.
    ``announce`` receives one line when loading takes over a second (see :meth:`Encoder.load`).
    """

    KIND: ClassVar[ModelKind]
    SETTING: ClassVar[str]

    def __init__(self, source: str, *, device: str, batch_size: int, announce: Announce | None = None) -> None:
        super().__init__(announce=announce)
        self.source = source
        self.model_id = source.rstrip("/\\") or source
        self._device_setting = device
        self.batch_size = max(1, batch_size)
        self._model: Any = None
        self._processor: Any = None
        self._device = "cpu"

    @property
    def device(self) -> str:
        self.load()
        return self._device

    def loading_message(self) -> str:
        return f"Loading the {self.KIND.label} model {self.model_id}…"

    def _from_pretrained(self, processor_cls: Any, model_cls: Any) -> Any:
        """Load processor and model onto the configured device; returns the model."""
        self._device = resolve_device(self._device_setting)
        self._processor, model = load_pretrained(
            processor_cls, model_cls, self.source, kind=self.KIND, device=self._device,
        )
        return model


class ClipEncoder(PretrainedModel, ImageTextEncoder):
    """OpenAI CLIP (``CLIPModel`` + ``CLIPProcessor``) from a hub id or a local directory."""

    KIND = CLIP
    SETTING = CLIP.setting

    def __init__(self, source: str, *, device: str = "auto", batch_size: int | None = None, precision: str = "fp32",
                 cache_dir: Path | None = None, announce: Announce | None = None,
                 fast_preprocess: bool = True) -> None:
        """``batch_size``: images per model call; None picks one for the device at load
        (:data:`GPU_BATCH_SIZE` on a GPU, :data:`CPU_BATCH_SIZE` on a CPU). ``cache_dir``: where the
        outcome of ``precision="auto"`` is remembered between starts (None: measured at every
        load); ``announce``: told when loading takes over a second; ``fast_preprocess``: False
        keeps transformers' processor for images too (the reference the fast path is held to)."""
        super().__init__(source, device=device, batch_size=batch_size or CPU_BATCH_SIZE, announce=announce)
        self._batch_size_chosen = batch_size is not None
        self.fast_preprocess = fast_preprocess
        self._fast: FastClipPreprocessor | None = None
        self.precision = precision
        self.cache_dir = cache_dir
        self.precision_used = ""  # what "auto" chose, once loaded
        self.precision_from_cache = False  # "auto" reused an earlier start's measurement
        self.agreement: float | None = None
        self.measurement: Measurement | None = None  # "auto"'s figures, measured or remembered
        self._input_dtype: Any = None
        self._dim = 0
        self._max_text_tokens = 77

    def _load(self) -> None:
        from transformers import CLIPModel, CLIPProcessor

        model = self._from_pretrained(CLIPProcessor, CLIPModel)
        if not self._batch_size_chosen:
            self.batch_size = CPU_BATCH_SIZE if self._device == "cpu" else GPU_BATCH_SIZE
        # The processor's own configuration (sizes, mean, std, filter), so any CLIP checkpoint
        # works; one this path does not cover keeps the reference processor (None).
        self._fast = (FastClipPreprocessor.from_processor(self._processor, reducing_gap=REDUCING_GAP)
                      if self.fast_preprocess else None)
        self._dim = int(model.config.projection_dim)
        self._max_text_tokens = int(model.config.text_config.max_position_embeddings)

        calibration = self._preprocess(calibration_images())

        def calibrate(candidate: Prepared) -> np.ndarray:
            images = self._run_pixels(candidate, calibration)
            return np.concatenate([images, self._run_texts(candidate, CALIBRATION_TEXTS)])

        def time_batch(candidate: Prepared, n: int) -> float:
            pixels = calibration[np.arange(n) % len(calibration)]  # the model alone: decoding runs elsewhere
            start = time.perf_counter()
            self._run_pixels(candidate, pixels)
            return time.perf_counter() - start

        prepared = prepare(model, self.precision, self._device, calibrate, time_batch,
                           cache=self._precision_cache(self._device))
        self._model, self._input_dtype = prepared.model, prepared.input_dtype
        self.precision_used, self.agreement = prepared.precision, prepared.agreement
        self.precision_from_cache, self.measurement = prepared.from_cache, prepared.measurement
        measured_batch = prepared.measurement.index_batch if prepared.measurement else None
        if not self._batch_size_chosen and self._device == "cpu" and measured_batch:
            self.batch_size = measured_batch  # the fastest per image at this precision, measured here
        log.info("loaded CLIP %s on %s (dim %d, %s%s, batch %d)", self.source, self._device, self._dim,
                 self.precision_used, ", remembered" if prepared.from_cache else "", self.batch_size)

    def _precision_cache(self, device: str) -> PrecisionCache | None:
        if self.precision != "auto" or self.cache_dir is None:
            return None
        files = model_files_dir(self.source)
        if files is None:  # loaded, yet not found on disk: nothing stable to key on
            return None
        return PrecisionCache.for_model(self.cache_dir, files, device)

    def precision_report(self) -> list[str]:
        """`clipbot stats`' lines: the precision and what "auto" measured here (remembered, unloaded)."""
        from core.models.precision import describe  # only `clipbot stats` asks

        if self.precision != "auto" or self._loaded:
            return describe(self.precision, self.measurement)
        cache = self._precision_cache(resolve_device(self._device_setting))
        return describe(self.precision, cache.lookup() if cache is not None else None)

    @property
    def dim(self) -> int:
        self.load()
        return self._dim

    @property
    def input_side(self) -> int:
        """The short side the model's preprocessing resizes to (224 for ViT-B/32): what indexing
        decodes a JPEG down to (core.gallery.batch_decode)."""
        self.load()
        return self._fast.shortest_edge if self._fast is not None else 224

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Resize, crop and normalise: ``(n, 3, H, W)`` float32 pixels. Thread-safe, so ingest and
        chat requests run it on decode threads while the inference thread runs the model."""
        self.load()
        return self._preprocess(images)

    def _preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, 3, 1, 1), dtype=np.float32)
        if self._fast is not None and all(isinstance(im, Image.Image) and im.mode == "RGB" for im in images):
            return self._fast(images)  # decode_image always gives RGB; anything else takes the reference
        return np.asarray(self._processor(images=list(images), return_tensors="np")["pixel_values"], np.float32)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.load()
        chunks = [
            self.encode_pixels(self.preprocess(images[i:i + self.batch_size]))
            for i in range(0, len(images), self.batch_size)
        ]
        return _stack(chunks, self._dim)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Vectors of already preprocessed images (see :meth:`preprocess`)."""
        self.load()
        prepared = Prepared(self._model, self._input_dtype, self.precision_used)
        chunks = [
            self._run_pixels(prepared, pixels[i:i + self.batch_size]) for i in range(0, len(pixels), self.batch_size)
        ]
        return _stack(chunks, self._dim)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        prepared = Prepared(self._model, self._input_dtype, self.precision_used)
        chunks = [
            self._run_texts(prepared, texts[i:i + self.batch_size]) for i in range(0, len(texts), self.batch_size)
        ]
        return _stack(chunks, self._dim)

    def _run_pixels(self, prepared: Prepared, pixels: np.ndarray) -> np.ndarray:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(pixels)).to(self._device, prepared.input_dtype)
        with torch.inference_mode():
            out = prepared.model.get_image_features(pixel_values=tensor)
        return unit_rows(_features(out))

    def _run_texts(self, prepared: Prepared, texts: Sequence[str]) -> np.ndarray:
        import torch

        # Long text is cut to the model's context (77 tokens for CLIP), never an error.
        inputs = self._processor(
            text=list(texts), return_tensors="pt", padding=True, truncation=True, max_length=self._max_text_tokens
        )
        with torch.inference_mode():
            out = prepared.model.get_text_features(
                input_ids=inputs["input_ids"].to(self._device),
                attention_mask=inputs["attention_mask"].to(self._device),
            )
        return unit_rows(_features(out))


def load_pretrained(processor_cls: Any, model_cls: Any, source: str, *, kind: ModelKind,
                    device: str) -> tuple[Any, Any]:
    """A transformers processor and model from a hub id or directory, in eval mode on ``device``.

    Any failure becomes one :class:`ModelLoadError` line naming ``kind.setting`` and the fix.
    """
    from transformers.utils import logging as hf_logging

    _demote_load_reports()
    # transformers draws a "Loading weights" bar on every load; in a chat bot's log it is noise.
    # Its switch is process-wide, so it is put back as it was found.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
    try:
        processor, model = from_cache_or_hub(
            # The PIL image backend is what CLIP and BLIP were trained with, and needs no torchvision.
            lambda **kw: (processor_cls.from_pretrained(source, backend="pil", **kw),
                          model_cls.from_pretrained(source, **kw)),
            kind=kind, source=source,
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        raise model_load_error(kind.setting, source, exc) from exc
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
    return processor, model.eval().to(device)


class _LoadReportFilter(logging.Filter):
    """transformers logs a table of every missing or unexpected weight as a warning (80 lines for
    a model of the wrong kind); operators get one line at INFO, the table only in debug logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" not in str(record.msg):
            return True
        first = record.getMessage().splitlines()[0] if record.getMessage() else ""
        log.info("transformers reports missing or unexpected weights (%s); run with --debug for the table",
                 _ANSI.sub("", first).strip())
        log.debug("%s", record.getMessage())
        return False


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_load_report_filter = _LoadReportFilter()


def _demote_load_reports() -> None:
    # addFilter ignores a filter already present, so loading many models installs it once.
    logging.getLogger("transformers.modeling_utils").addFilter(_load_report_filter)


def _features(out: Any) -> Any:
    """transformers 5 returns a model output whose pooler_output holds the projected features."""
    tensor = out if hasattr(out, "detach") else out.pooler_output
    return tensor.detach().float().cpu().numpy()


def _stack(chunks: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)
