"""Fetching models into the Hugging Face cache so that the bot can later run offline."""

from __future__ import annotations

from pathlib import Path

from core.errors import ModelLoadError
from core.models import (
    BLIP_CAPTIONS,
    CLIP,
    TEXT_MODEL,
    ModelKind,
    check_config,
    check_source,
    connection_failure,
    download_config,
    first_sentence,
    hub_reachable,
    hub_text_model,
    offline_error,
    offline_forced,
    read_layout,
)

# Weights in safetensors plus configs and tokenizer files; skips the TF/Flax copies hub repos carry.
_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]
_KINDS = {kind.setting: kind for kind in (CLIP, BLIP_CAPTIONS, TEXT_MODEL)}


def download_model(source: str, *, setting: str) -> str:
    """Download ``source`` (a hub id) with progress bars; a local directory is used as it is.

    Offline (no hub, or ``HF_HUB_OFFLINE=1``), a model already in the cache is used from there;
    otherwise the error gives the fixes that work without this command. The text model
    (CLIPBOT_TEXT_MODEL) brings its sentence-transformers folders (``1_Pooling``, ``2_Dense``) too.
    """
    kind = _KINDS.get(setting) or ModelKind(setting, setting, frozenset(), "", source)
    text = kind is TEXT_MODEL
    if text and Path(source).expanduser().is_dir():  # its transformer may sit in 0_Transformer, not the root
        return str(read_layout(Path(source).expanduser().resolve(), source).root)
    local = check_source(kind, source)
    if local is not None:
        return str(local)
    from huggingface_hub import snapshot_download

    if offline_forced() or not hub_reachable():
        try:
            if text:
                return str(hub_text_model(source, local_files_only=True))
            return str(snapshot_download(repo_id=source, allow_patterns=_PATTERNS, local_files_only=True))
        except ModelLoadError:  # in the cache, but of the wrong kind
            raise
        except Exception as exc:
            raise offline_error(kind, source, downloading=True) from exc
    try:
        # The config alone first: a wrong kind of model is refused before gigabytes of weights.
        check_config(kind, source, download_config(kind, source))
        if text:  # its modules.json decides which folders it needs
            where = str(hub_text_model(source))
        else:
            where = snapshot_download(repo_id=source, allow_patterns=_PATTERNS)
            if not any(Path(where).glob("*.safetensors")):  # older repos ship only PyTorch pickles
                where = snapshot_download(repo_id=source, allow_patterns=[*_PATTERNS, "pytorch_model.bin"])
    except ModelLoadError:
        raise
    except Exception as exc:
        if connection_failure(exc):
            raise offline_error(kind, source, downloading=True) from exc
        reason = first_sentence(str(exc)).rstrip(".") or type(exc).__name__
        raise ModelLoadError(
            f"Cannot download {kind.describe(source)}: {reason}. Fix: check the hub id, or set {setting} "
            f"to a model directory on this machine."
        ) from exc
    return str(where)
