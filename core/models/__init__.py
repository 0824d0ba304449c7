"""Models: CLIP, BLIP, multilingual text encoders and the OCR reader, where their files come from, precision,
preprocessing, the inference thread and micro-batching. Nothing heavy is imported until a model loads.

The face of the wing: front ends and ``bot/`` import from here, never from a module inside.
"""

from core.models.batching import MicroBatcher
from core.models.blip import Captioner, captioner_from_setting
from core.models.clip import DEFAULT_CLIP_MODEL, ClipEncoder, ImageTextEncoder
from core.models.hub import (
    BLIP_CAPTIONS,
    CLIP,
    ModelKind,
    check_config,
    check_source,
    connection_failure,
    download_config,
    first_sentence,
    hub_reachable,
    offline_error,
    offline_forced,
)
from core.models.inference import Encoding, InferenceRunner
from core.models.ocr import TextLine, TextReader, reader_from_setting
from core.models.text import ClipWithTextModel, MultilingualTextEncoder
from core.models.text_files import TEXT_MODEL, hub_text_model, read_layout

__all__ = [
    "BLIP_CAPTIONS",
    "CLIP",
    "DEFAULT_CLIP_MODEL",
    "TEXT_MODEL",
    "Captioner",
    "ClipEncoder",
    "ClipWithTextModel",
    "Encoding",
    "ImageTextEncoder",
    "InferenceRunner",
    "MicroBatcher",
    "ModelKind",
    "MultilingualTextEncoder",
    "TextLine",
    "TextReader",
    "captioner_from_setting",
    "check_config",
    "check_source",
    "connection_failure",
    "download_config",
    "first_sentence",
    "hub_reachable",
    "hub_text_model",
    "offline_error",
    "offline_forced",
    "read_layout",
    "reader_from_setting",
]
