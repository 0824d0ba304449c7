"""A multilingual text encoder aligned to CLIP's image space (``CLIPBOT_TEXT_MODEL``), and CLIP beside it.

Models such as ``sentence-transformers/clip-ViT-B-32-multilingual-v1`` were distilled to put a
sentence in any of 50+ languages where CLIP's own text encoder puts its English translation;
images still go through CLIP. They are sentence-transformers models (their files: core.models.text_files),
run here with transformers, safetensors and torch alone: sentence-transformers is not needed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from core.errors import ModelLoadError
from core.models.clip import (
    CPU_BATCH_SIZE,
    GPU_BATCH_SIZE,
    Announce,
    ImageTextEncoder,
    PretrainedModel,
    _demote_load_reports,  # the same load-report table filter as CLIP and BLIP
    resolve_device,
)
from core.models.hub import CLIP, model_load_error
from core.models.text_files import TEXT_MODEL, DenseLayer, TextModelLayout, read_layout, text_model_files, unusable
from core.storage.vector_index import unit_rows

log = logging.getLogger(__name__)
__all__ = ["ClipWithTextModel", "MultilingualTextEncoder", "dimension_error"]


class MultilingualTextEncoder(PretrainedModel):
    """Text to CLIP-space vectors with a sentence-transformers model (transformer, pooling, dense).

    ``batch_size``: texts per model call; None picks one for the device at load. Runs at fp32:
    text queries are short, and the transformer is a small part of a search's time.
    """

    KIND = TEXT_MODEL
    SETTING = TEXT_MODEL.setting

    def __init__(self, source: str, *, device: str = "auto", batch_size: int | None = None,
                 announce: Announce | None = None) -> None:
        super().__init__(source, device=device, batch_size=batch_size or CPU_BATCH_SIZE, announce=announce)
        self._batch_size_chosen = batch_size is not None
        self._layout: TextModelLayout | None = None
        self._layout_lock = threading.Lock()
        self._dense: list[tuple[Any, str]] = []
        self._max_tokens = 0

    def layout(self) -> TextModelLayout:
        """The model's files, found (in the cache, or fetched) and checked; weights are not loaded."""
        with self._layout_lock:
            if self._layout is None:
                try:
                    self._layout = read_layout(text_model_files(self.source), self.source)
                except ModelLoadError:
                    raise
                except Exception as exc:
                    raise model_load_error(TEXT_MODEL.setting, self.source, exc) from exc
            return self._layout

    @property
    def dim(self) -> int:
        """The vectors' dimension, as the model's files declare it (no weights are loaded for it)."""
        return self.layout().dim

    def _load(self) -> None:
        layout = self.layout()
        self._device = resolve_device(self._device_setting)
        if not self._batch_size_chosen:
            self.batch_size = CPU_BATCH_SIZE if self._device == "cpu" else GPU_BATCH_SIZE
        try:
            self._processor, self._model = self._transformer(layout)
            self._dense = [(self._dense_layer(d), d.activation) for d in layout.dense]
        except ModelLoadError:
            raise
        except Exception as exc:
            raise model_load_error(TEXT_MODEL.setting, self.source, exc) from exc
        limits = [int(self._model.config.max_position_embeddings)]
        if layout.max_seq_length is not None:
            limits.append(layout.max_seq_length)
        elif isinstance(getattr(self._processor, "model_max_length", None), int):
            limits.append(int(self._processor.model_max_length))
        self._max_tokens = min(limits)
        log.info("loaded the text model %s on %s (dim %d, %d tokens)", self.source, self._device, layout.dim,
                 self._max_tokens)

    def _transformer(self, layout: TextModelLayout) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        _demote_load_reports()
        # As core.models.clip.load_pretrained: no "Loading weights" bar in a chat bot's log, switch put back.
        bars_were_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
        try:
            # Local files only: text_model_files already fetched whatever was missing.
            tokenizer = AutoTokenizer.from_pretrained(layout.transformer, local_files_only=True)
            # fp32 whatever dtype the checkpoint was saved in: the pooling and the dense layers are fp32.
            model = AutoModel.from_pretrained(layout.transformer, local_files_only=True, dtype=torch.float32)
        finally:
            if bars_were_on:
                hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
        return tokenizer, model.eval().to(self._device)

    def _dense_layer(self, dense: DenseLayer) -> Any:
        import torch

        if (dense.folder / "model.safetensors").is_file():
            from safetensors.torch import load_file

            weights = load_file(dense.folder / "model.safetensors")
        elif (dense.folder / "pytorch_model.bin").is_file():
            # weights_only: a pickle that holds anything but tensors is refused, never run.
            weights = torch.load(dense.folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        else:
            raise unusable(self.source, f"its dense module {dense.folder.name} holds no model.safetensors or "
                                         "pytorch_model.bin")
        layer = torch.nn.Linear(dense.in_features, dense.out_features, bias=dense.bias)
        wanted = ["weight", "bias"] if dense.bias else ["weight"]
        found = {key: weights.get(f"linear.{key}") for key in wanted}
        if any(value is None or tuple(value.shape) != tuple(getattr(layer, key).shape) for key, value in found.items()):
            raise unusable(self.source, f"the weights of its dense module {dense.folder.name} do not fit its config "
                                         f"({dense.in_features} to {dense.out_features})")
        layer.load_state_dict(found)
        return layer.eval().to(self._device)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Return an ``(n, dim)`` float32 array of unit vectors; text past the model's limit is cut."""
        self.load()
        chunks = [self._run(texts[i:i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        layout = self.layout()
        # As sentence-transformers' Transformer module does before tokenizing.
        texts = [t.strip().lower() if layout.do_lower_case else t.strip() for t in texts]
        inputs = self._processor(texts, return_tensors="pt", padding=True, truncation=True,
                                 max_length=self._max_tokens)
        feed = {k: v.to(self._device) for k, v in inputs.items() if k in ("input_ids", "attention_mask",
                                                                        "token_type_ids")}
        with torch.inference_mode():
            tokens = self._model(**feed)[0]  # last_hidden_state: (n, tokens, width)
            vectors = _pool(tokens, feed["attention_mask"], layout.pooling)
            for layer, activation in self._dense:
                vectors = layer(vectors)
                vectors = torch.tanh(vectors) if activation == "tanh" else vectors
        return unit_rows(vectors.detach().float().cpu().numpy())


def _pool(tokens: Any, attention_mask: Any, modes: tuple[str, ...]) -> Any:
    """sentence-transformers' Pooling: the chosen modes, concatenated in its order; padding ignored."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
    parts = []
    if "cls_token" in modes:
        parts.append(tokens[:, 0])
    if "max_tokens" in modes:
        parts.append(tokens.masked_fill(mask == 0, -1e9).max(dim=1).values)
    if "mean_tokens" in modes or "mean_sqrt_len_tokens" in modes:
        sums = (tokens * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        if "mean_tokens" in modes:
            parts.append(sums / counts)
        if "mean_sqrt_len_tokens" in modes:
            parts.append(sums / torch.sqrt(counts))
    return torch.cat(parts, dim=1)


def dimension_error(text_model: str, text_dim: int, clip_model: str, clip_dim: int) -> ModelLoadError:
    """The text model's vectors cannot be compared with the CLIP model's images: both named, and the fix."""
    return ModelLoadError(
        f"The text model {text_model!r} named by {TEXT_MODEL.setting} makes {text_dim}-dimensional vectors, but the "
        f"CLIP model {clip_model!r} named by {CLIP.setting} makes {clip_dim}-dimensional ones, so its texts cannot be "
        f"compared with the images. Fix: set {TEXT_MODEL.setting} to a text model aligned to that CLIP model "
        f"({TEXT_MODEL.example} goes with {CLIP.example}), or leave it empty for CLIP's own text encoder."
    )


class ClipWithTextModel(ImageTextEncoder):
    """CLIP for images, a multilingual text model for texts: one encoder to the engine.

    ``model_id`` stays the CLIP model's: the stored vectors are image vectors, and only queries
    change with the text model. Loading loads both and refuses a text model whose vectors have
    another dimension than CLIP's (before its weights load).
    """

    def __init__(self, clip: ImageTextEncoder, text: MultilingualTextEncoder) -> None:
        super().__init__()  # no announcer of its own: each part announces its own slow load
        self.clip = clip
        self.text = text
        self.model_id = clip.model_id

    @property
    def batch_size(self) -> int:
        """Images per model call: CLIP's (the device's choice once it is loaded)."""
        return int(getattr(self.clip, "batch_size", 16))

    def _load(self) -> None:
        self.clip.load()
        if self.text.dim != self.clip.dim:
            raise dimension_error(self.text.source, self.text.dim, self.clip.model_id, self.clip.dim)
        self.text.load()

    @property
    def dim(self) -> int:
        self.load()
        return self.clip.dim

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.load()
        return self.clip.encode_images(images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts in any language the text model knows, as ``(n, dim)`` float32 unit vectors."""
        self.load()
        return self.text.encode_texts(texts)

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.load()
        return self.clip.preprocess(images)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.load()
        return self.clip.encode_pixels(pixels)
