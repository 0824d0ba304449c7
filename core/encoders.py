"""Image and text encoders: CLIP through Hugging Face transformers, loaded lazily."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
from PIL import Image

from core.errors import ModelLoadError
from core.precision import CALIBRATION_TEXTS, Prepared, calibration_images, prepare
from core.vector_index import unit_rows

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"


class Encoder(ABC):
    """A model behind a lazy, thread-safe :meth:`load`; nothing heavy happens in ``__init__``."""

    def __init__(self) -> None:
        self._load_lock = threading.Lock()
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Load the model once; concurrent callers wait for the first load."""
        if self._loaded:
            return
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True

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


def model_load_error(setting: str, source: str, exc: BaseException) -> ModelLoadError:
    """One line naming the setting and the fix, instead of a transformers traceback."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(reason) > 160:
        reason = reason[:157] + "..."
    return ModelLoadError(
        f"Cannot load the model {source!r} from {setting} ({reason}). Fix: set {setting} to a model "
        f"directory on this machine, or run `clipbot download-models` once with internet access."
    )


class PretrainedModel(Encoder):
    """A transformers model and its processor, from a hub id or a local directory, on one device.

    What CLIP and BLIP share: the source and the setting that names it, the device, the thread
    count and the batch size; subclasses load their own classes through :meth:`_from_pretrained`.
    """

    SETTING: ClassVar[str]

    def __init__(self, source: str, *, device: str, batch_size: int) -> None:
        super().__init__()
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

    def _from_pretrained(self, processor_cls: Any, model_cls: Any) -> Any:
        """Load processor and model onto the configured device; returns the model."""
        self._device = resolve_device(self._device_setting)
        self._processor, model = load_pretrained(
            processor_cls, model_cls, self.source, setting=self.SETTING, device=self._device,
        )
        return model


class ClipEncoder(PretrainedModel, ImageTextEncoder):
    """OpenAI CLIP (``CLIPModel`` + ``CLIPProcessor``) from a hub id or a local directory."""

    SETTING = "CLIPBOT_CLIP_MODEL"

    def __init__(self, source: str, *, device: str = "auto", batch_size: int = 16, precision: str = "fp32") -> None:
        super().__init__(source, device=device, batch_size=batch_size)
        self.precision = precision
        self.precision_used = ""  # what "auto" chose, once loaded
        self.agreement: float | None = None
        self._input_dtype: Any = None
        self._dim = 0
        self._max_text_tokens = 77

    def _load(self) -> None:
        from transformers import CLIPModel, CLIPProcessor

        model = self._from_pretrained(CLIPProcessor, CLIPModel)
        self._dim = int(model.config.projection_dim)
        self._max_text_tokens = int(model.config.text_config.max_position_embeddings)

        def calibrate(candidate: Prepared) -> np.ndarray:
            images = self._run_pixels(candidate, self._preprocess(calibration_images()))
            return np.concatenate([images, self._run_texts(candidate, CALIBRATION_TEXTS)])

        prepared = prepare(model, self.precision, self._device, calibrate)
        self._model, self._input_dtype = prepared.model, prepared.input_dtype
        self.precision_used, self.agreement = prepared.precision, prepared.agreement
        log.info("loaded CLIP %s on %s (dim %d, %s)", self.source, self._device, self._dim, self.precision_used)

    @property
    def dim(self) -> int:
        self.load()
        return self._dim

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Resize, crop and normalise: ``(n, 3, H, W)`` float32 pixels. Thread-safe, so ingest and
        chat requests run it on decode threads while the inference thread runs the model."""
        self.load()
        return self._preprocess(images)

    def _preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, 3, 1, 1), dtype=np.float32)
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


def load_pretrained(processor_cls: Any, model_cls: Any, source: str, *, setting: str,
                    device: str) -> tuple[Any, Any]:
    """A transformers processor and model from a hub id or directory, in eval mode on ``device``.

    Any failure becomes one :class:`ModelLoadError` line naming ``setting`` and the fix.
    """
    from transformers.utils import logging as hf_logging

    # transformers draws a "Loading weights" bar on every load; in a chat bot's log it is noise.
    # Its switch is process-wide, so it is put back as it was found.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
    try:
        processor, model = from_cache_or_hub(
            # The PIL image backend is what CLIP and BLIP were trained with, and needs no torchvision.
            lambda **kw: (processor_cls.from_pretrained(source, backend="pil", **kw),
                          model_cls.from_pretrained(source, **kw)),
        )
    except Exception as exc:
        raise model_load_error(setting, source, exc) from exc
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
    return processor, model.eval().to(device)


def from_cache_or_hub(load: Callable[..., T]) -> T:
    """Load from the local cache first: a cached model then starts with no network at all,
    instead of waiting on hub timeouts on an offline server. Only a cache miss goes online."""
    try:
        return load(local_files_only=True)
    except OSError:
        return load()


def _features(out: Any) -> Any:
    """transformers 5 returns a model output whose pooler_output holds the projected features."""
    tensor = out if hasattr(out, "detach") else out.pooler_output
    return tensor.detach().float().cpu().numpy()


def _stack(chunks: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)
