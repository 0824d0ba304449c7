"""Where a sentence-transformers text model's files are, and what they declare (``CLIPBOT_TEXT_MODEL``).

``sentence-transformers/clip-ViT-B-32-multilingual-v1`` as the hub has it: ``modules.json`` lists
``sentence_transformers.models.Transformer`` (path "": the DistilBERT's config.json, tokenizer
files, ``sentence_bert_config.json`` and weights at the root; old local saves put it in
``0_Transformer``), ``Pooling`` (``1_Pooling/config.json``: mean pooling of 768 values) and
``Dense`` (``2_Dense/config.json``: 768 -> 512, no bias, Identity; ``linear.weight`` in
``model.safetensors`` and ``pytorch_model.bin``). Everything here reads configs only: no weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ModelLoadError
from core.models.hub import CLIP, ModelKind, from_cache_or_hub

# No model_types: a sentence-transformers text model may be DistilBERT, BERT, XLM-R...; what makes
# it one is its modules.json, checked by read_layout (core.models.hub's check_config only asks for a config).
TEXT_MODEL = ModelKind("multilingual text", "CLIPBOT_TEXT_MODEL", frozenset(), "",
                       "sentence-transformers/clip-ViT-B-32-multilingual-v1")
# Models whose config says they are an image model or an image-text pair, never a text encoder.
_IMAGE_MODEL_TYPES = frozenset({"clip", "clip_vision_model", "blip", "blip-2", "siglip", "siglip2", "chinese_clip",
                                "altclip", "vision-encoder-decoder"})
_POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens")  # sentence-transformers' order
_ACTIVATIONS = {"torch.nn.modules.linear.Identity": "identity", "torch.nn.modules.activation.Tanh": "tanh"}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # either one, tried in this order
__all__ = ["TEXT_MODEL", "DenseLayer", "TextModelLayout", "hub_text_model", "read_layout",
           "refuse_image_model", "text_model_files", "text_model_patterns", "unusable"]


@dataclass(frozen=True)
class DenseLayer:
    """One ``sentence_transformers.models.Dense`` module: ``activation(x @ W.T + b)``."""

    folder: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str  # "identity" or "tanh"


@dataclass(frozen=True)
class TextModelLayout:
    """What a text model's files declare, read without loading any weights."""

    root: Path
    transformer: Path  # the folder from_pretrained loads: the root or 0_Transformer
    pooling: tuple[str, ...]  # of _POOLING_MODES, concatenated in that order
    token_dim: int
    dense: tuple[DenseLayer, ...]
    max_seq_length: int | None  # sentence_bert_config.json's; None: the model's own limit
    do_lower_case: bool

    @property
    def dim(self) -> int:
        """The dimension of the vectors the model makes."""
        return self.dense[-1].out_features if self.dense else self.token_dim * len(self.pooling)


def unusable(source: str, problem: str) -> ModelLoadError:
    """A text model clipbot cannot run: what is wrong with it, and the fix."""
    return ModelLoadError(
        f"Cannot load {TEXT_MODEL.describe(source)}: {problem}. Fix: point {TEXT_MODEL.setting} at a "
        f"sentence-transformers text model aligned to the CLIP model, such as {TEXT_MODEL.example}."
    )


def _wrong_kind(source: str, held: str) -> ModelLoadError:
    return ModelLoadError(
        f"{TEXT_MODEL.setting}={source} holds {held}, not a multilingual text model. Fix: point "
        f"{TEXT_MODEL.setting} at a sentence-transformers text model aligned to the CLIP model, such as "
        f"{TEXT_MODEL.example} for {CLIP.example}, or leave it empty for CLIP's own text encoder."
    )


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _described(config: Any) -> str:
    """``a clip model (CLIPModel)``, from a config.json's contents, for messages."""
    architectures = ", ".join(str(a) for a in config.get("architectures") or [])
    return f"a {config.get('model_type') or 'transformers'} model" + (f" ({architectures})" if architectures else "")


def _without_modules(config: Any) -> str:
    """What a model without modules.json is, for messages: CLIP is CLIP, anything else says what it lacks."""
    if not isinstance(config, dict):
        return "neither a modules.json nor a config.json"
    if str(config.get("model_type", "")) in _IMAGE_MODEL_TYPES:
        return _described(config)
    return f"{_described(config)} without sentence-transformers' modules.json"


def refuse_image_model(source: str, config_file: Path) -> None:
    """A CLIP, BLIP or other image model named as the text model is refused here, before weights load."""
    config = _json(config_file)
    if isinstance(config, dict) and str(config.get("model_type", "")) in _IMAGE_MODEL_TYPES:
        raise _wrong_kind(source, _described(config))


def _modules(source: str, root: Path) -> list[tuple[str, str]]:
    """modules.json as (kind, folder) pairs, kind being the class name (``Transformer``, ``Pooling`` ...)."""
    if not (root / "modules.json").is_file():
        raise _wrong_kind(source, _without_modules(_json(root / "config.json")))
    listed = _json(root / "modules.json")
    if not isinstance(listed, list) or not all(isinstance(m, dict) for m in listed):
        raise unusable(source, "its modules.json is not a list of modules")
    modules = _listed(root / "modules.json")
    kinds = [kind for kind, _ in modules]
    if "CLIPModel" in kinds:  # sentence-transformers' own CLIP wrapper: an image model too
        raise _wrong_kind(source, "a sentence-transformers CLIP model (images and English text)")
    # Normalize is a no-op here: every vector is normalised anyway.
    core = [kind for kind in kinds if kind != "Normalize"]
    if core[:2] != ["Transformer", "Pooling"] or any(kind != "Dense" for kind in core[2:]):
        raise unusable(source, f"its modules ({', '.join(kinds) or 'none'}) are not Transformer, Pooling and "
                                "Dense ones, the only kinds clipbot runs")
    return modules


def read_layout(root: Path, source: str) -> TextModelLayout:
    """Check the files of a text model in ``root`` and say what they declare; nothing heavy is loaded.

    ``source`` is what the setting says, for messages. Raises :class:`ModelLoadError` for a model
    of the wrong kind (CLIP, BLIP, a plain transformers model) and for one clipbot cannot run.
    """
    modules = _modules(source, root)
    transformer = root / next(folder for kind, folder in modules if kind == "Transformer")
    if not (transformer / "config.json").is_file():
        raise unusable(source, f"its transformer folder {transformer} holds no config.json")
    refuse_image_model(source, transformer / "config.json")
    st_config = _json(transformer / "sentence_bert_config.json")
    st_config = st_config if isinstance(st_config, dict) else {}
    pooling = _json(root / next(folder for kind, folder in modules if kind == "Pooling") / "config.json")
    if not isinstance(pooling, dict) or not isinstance(pooling.get("word_embedding_dimension"), int):
        raise unusable(source, "its pooling module has no usable config.json")
    others = [key for key in ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken") if pooling.get(key)]
    modes = tuple(mode for mode in _POOLING_MODES if pooling.get(f"pooling_mode_{mode}"))
    if others or not modes:
        raise unusable(source, f"its pooling ({', '.join(others) or 'none set'}) is not cls, max or mean pooling")
    dense: list[DenseLayer] = []
    width = pooling["word_embedding_dimension"] * len(modes)
    for folder in (root / folder for kind, folder in modules if kind == "Dense"):
        config = _json(folder / "config.json")
        if not isinstance(config, dict) or not all(isinstance(config.get(k), int) for k in ("in_features",
                                                                                           "out_features")):
            raise unusable(source, f"its dense module {folder.name} has no usable config.json")
        # sentence-transformers' own defaults, for configs that leave these out.
        activation = str(config.get("activation_function", "torch.nn.modules.activation.Tanh"))
        if activation not in _ACTIVATIONS:
            raise unusable(source, f"its dense module {folder.name} uses the activation {activation}, which clipbot "
                                    "does not run")
        if config["in_features"] != width:
            raise unusable(source, f"its dense module {folder.name} takes {config['in_features']} values, "
                                    f"but gets {width}")
        dense.append(DenseLayer(folder, config["in_features"], config["out_features"], bool(config.get("bias", True)),
                                _ACTIVATIONS[activation]))
        width = config["out_features"]
    max_seq = st_config.get("max_seq_length")
    return TextModelLayout(root, transformer, modes, pooling["word_embedding_dimension"], tuple(dense),
                           max_seq if isinstance(max_seq, int) and max_seq > 0 else None,
                           bool(st_config.get("do_lower_case", False)))


def _listed(modules_file: Path) -> list[tuple[str, str]]:
    """modules.json as (kind, folder) pairs: the class name (``Transformer``, ``Pooling`` ...) and
    the module's folder, "" for the root; entries that are not objects are left out."""
    listed = _json(modules_file)
    entries = [m for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []
    return [(str(m.get("type", "")).rsplit(".", 1)[-1], str(m.get("path", "")).strip("/")) for m in entries]


def text_model_patterns(modules_file: Path) -> list[str]:
    """The files a hub snapshot needs: the transformer's configs, tokenizer and safetensors weights,
    and every other module's folder (``1_Pooling/*``, ``2_Dense/*``). TF, ONNX and OpenVINO copies,
    and the PyTorch pickle beside the safetensors, are left out."""
    modules = _listed(modules_file)
    transformer = next((folder for kind, folder in modules if kind == "Transformer"), "")
    prefix = f"{transformer}/" if transformer else ""
    # "*.json" matches across folders in the hub's globbing; the onnx/ and openvino/ ones are a few KB.
    patterns = ["modules.json", "config_sentence_transformers.json"]
    patterns += [f"{prefix}{suffix}" for suffix in ("*.json", "*.txt", "*.model", "*.safetensors")]
    return patterns + [f"{folder}/*" for kind, folder in modules if folder and kind != "Transformer"]


def hub_text_model(source: str, *, local_files_only: bool = False) -> Path:
    """The snapshot folder of hub id ``source``: its config.json and modules.json first, so that a
    model of the wrong kind is refused before any weights come; then the files it needs.

    With ``local_files_only`` a file missing from the cache raises :class:`FileNotFoundError`
    (an ``OSError``: core.models.hub's cache miss), never a download.
    """
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    config = Path(hf_hub_download(source, "config.json", local_files_only=local_files_only))
    refuse_image_model(source, config)
    try:
        modules_file = Path(hf_hub_download(source, "modules.json", local_files_only=local_files_only))
    except LocalEntryNotFoundError:
        raise  # not cached, or the hub out of reach: the caller decides
    except EntryNotFoundError:
        raise _wrong_kind(source, _without_modules(_json(config))) from None
    patterns = text_model_patterns(modules_file)
    where = Path(snapshot_download(source, allow_patterns=patterns, local_files_only=local_files_only))
    # A cached snapshot folder may be partial (a download cut short): a cache miss, not a broken model.
    absent = [folder or "." for kind, folder in _listed(modules_file)
              if kind in ("Transformer", "Pooling", "Dense") and not (where / folder / "config.json").is_file()]
    if absent:
        raise FileNotFoundError(f"the copy of {source} lacks {', '.join(f'{f}/config.json' for f in absent)}")
    layout = read_layout(where, source)
    if not any((layout.transformer / name).is_file() for name in _WEIGHT_FILES):
        if local_files_only:
            raise FileNotFoundError(f"the cached copy of {source} has no transformer weights")
        # Older repositories ship only the PyTorch pickle (loaded by transformers with weights_only).
        bin_file = str((layout.transformer / "pytorch_model.bin").relative_to(where).as_posix())
        where = Path(snapshot_download(source, allow_patterns=[*patterns, bin_file]))
    missing = [d.folder.name for d in layout.dense if not any((d.folder / n).is_file() for n in _WEIGHT_FILES)]
    if missing:
        raise FileNotFoundError(f"the copy of {source} lacks the weights of {', '.join(missing)}")
    return where


def text_model_files(source: str) -> Path:
    """The folder holding the text model ``source`` names: the directory itself, or a hub snapshot
    from the cache (or the hub, when reachable and allowed), as core.models.hub loads CLIP and BLIP."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    return from_cache_or_hub(lambda **kw: hub_text_model(source, **kw), kind=TEXT_MODEL, source=source)
