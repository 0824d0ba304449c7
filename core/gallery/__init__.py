"""The gallery: the engine, image intake and bulk ingest, index sources and sync, the caption pass,
maintenance and the media file store.

The face of the wing: front ends and ``bot/`` import from here, never from a module inside.
"""

from core.gallery.caption_pass import CAPTION_BATCH, caption_pending
from core.gallery.engine import Engine
from core.gallery.files import MediaStore
from core.gallery.ingest import IngestSummary, ingest, missing_roots_without_entries, prune, reindex, reindex_targets
from core.gallery.sources import DEFAULT_EXCLUDES, collect_items

__all__ = [
    "CAPTION_BATCH",
    "DEFAULT_EXCLUDES",
    "Engine",
    "IngestSummary",
    "MediaStore",
    "caption_pending",
    "collect_items",
    "ingest",
    "missing_roots_without_entries",
    "prune",
    "reindex",
    "reindex_targets",
]
