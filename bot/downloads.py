"""Fetching models into the Hugging Face cache so that the bot can later run offline."""

from __future__ import annotations

from pathlib import Path

from core.encoders import model_load_error

# Weights in safetensors plus configs and tokenizer files; skips the TF/Flax copies hub repos carry.
_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]


def download_model(source: str, *, setting: str) -> str:
    """Download ``source`` (a hub id) with progress bars; a local directory is used as it is."""
    if Path(source).expanduser().is_dir():
        return str(Path(source).expanduser().resolve())
    from huggingface_hub import snapshot_download

    try:
        where = snapshot_download(repo_id=source, allow_patterns=_PATTERNS)
        if not any(Path(where).glob("*.safetensors")):  # older repos ship only PyTorch pickles
            where = snapshot_download(repo_id=source, allow_patterns=[*_PATTERNS, "pytorch_model.bin"])
    except Exception as exc:
        raise model_load_error(setting, source, exc) from exc
    return str(where)
