"""The gallery: the engine, image intake and bulk ingest, index sources and sync, the enrichment
passes (colours, captions, the text in pictures), maintenance and the media file store.

The face of the wing: front ends and ``bot/`` import from here, never from a module inside.
"""

from core.gallery.caption_pass import CAPTION_BATCH, Captions, caption_pending
from core.gallery.color_pass import Colors
from core.gallery.engine import Engine
from core.gallery.enrichment import Enrichment, EnrichmentSummary, run_enrichment
from core.gallery.files import MediaStore
from core.gallery.ingest import IngestSummary, ingest, missing_roots_without_entries, prune, reindex, reindex_targets
from core.gallery.sources import DEFAULT_EXCLUDES, collect_items
from core.gallery.text_pass import TextInPictures

__all__ = [
    "CAPTION_BATCH",
    "DEFAULT_EXCLUDES",
    "Captions",
    "Colors",
    "Engine",
    "Enrichment",
    "EnrichmentSummary",
    "IngestSummary",
    "MediaStore",
    "TextInPictures",
    "caption_pending",
    "collect_items",
    "ingest",
    "missing_roots_without_entries",
    "prune",
    "reindex",
    "reindex_targets",
    "run_enrichment",
]
