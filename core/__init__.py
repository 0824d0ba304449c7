"""clipbot's core: the chat service, the gallery engine, search, models, media, rendering and storage.

The map, from the top down (a wing imports only the wings below it, and the shared modules
``errors``, ``galleries``, ``records`` and ``text`` at this level):

- ``core.seed``: the seed notebook's API, its pickle format and import/export;
- ``core.chat``: the service every front end calls, the command catalogue, help styles, request
  and reply types, result threads, group switches, rate limits and repost alerts;
- ``core.gallery``: the engine, image intake and bulk ingest, sources, the caption pass,
  maintenance and the media file store;
- ``core.render``: result cards, charts and previews;
- ``core.search``: the searcher, the query language, feedback vectors, word ranking, calibration;
- ``core.models``: CLIP, BLIP and text encoders, the hub, precision, preprocessing, inference;
- ``core.media``: decoding, media kinds, video sampling, perceptual hashes, colours;
- ``core.storage``: the storage seam, both backends, migrations and the vector index.

Front ends import a wing's face (``from core.chat import ChatService``) or this one. The seed
notebook's functions are importable from here (``from core import encode_image``). Nothing heavy
runs at import time; models load on first use.
"""

from core.chat import ChatCommand, ChatService, Context, Reply
from core.errors import ClipbotError
from core.gallery import Engine
from core.seed.api import (
    build_database,
    calculate_cosine_similarity,
    encode_image,
    find_best_match,
    find_closest_match,
    find_image_by_description_or_label,
)

__all__ = [
    "ChatCommand",
    "ChatService",
    "ClipbotError",
    "Context",
    "Engine",
    "Reply",
    "build_database",
    "calculate_cosine_similarity",
    "encode_image",
    "find_best_match",
    "find_closest_match",
    "find_image_by_description_or_label",
]
