"""clipbot's engine: image intake, CLIP encoders, the image database and search.

The seed notebook's functions are importable from here (``from core import encode_image``).
Nothing heavy runs at import time; models load on first use.
"""

from core.errors import ClipbotError
from core.seed.api import (
    build_database,
    calculate_cosine_similarity,
    encode_image,
    find_best_match,
    find_closest_match,
    find_image_by_description_or_label,
)

__all__ = [
    "ClipbotError",
    "build_database",
    "calculate_cosine_similarity",
    "encode_image",
    "find_best_match",
    "find_closest_match",
    "find_image_by_description_or_label",
]
