"""Where galleries live: the :class:`GalleryStorage` seam and the backend a database URL names.

The seam comes in parts (core.storage.base): :class:`ImageRecords`, :class:`ImageFiles` and
:class:`ImageVectors` (the gallery), :class:`ConversationState`, :class:`RepostSightings` and
:class:`ImageTexts` (the text in pictures);
a :class:`GalleryStorage` is all of them in one database.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from core.errors import ConfigError
from core.storage.base import (
    GalleryStorage,
    ImageFiles,
    ImageRecords,
    ImageTexts,
    ImageVectors,
    Neighbours,
    StateUpdate,
)
from core.storage.migrate import CopyReport, StateCopied, StateKind, copy_gallery
from core.storage.sightings import RepostSightings
from core.storage.state import ConversationState, StateItem

__all__ = [
    "ConversationState",
    "CopyReport",
    "GalleryStorage",
    "ImageFiles",
    "ImageRecords",
    "ImageTexts",
    "ImageVectors",
    "Neighbours",
    "RepostSightings",
    "StateCopied",
    "StateItem",
    "StateKind",
    "StateUpdate",
    "copy_gallery",
    "gallery_for",
]
SETTING = "CLIPBOT_DATABASE_URL"


def gallery_for(url: str | None, data_dir: Path, *, index_precision: str = "fp16", index_device: str = "cpu",
                exclusive: bool = False) -> GalleryStorage:
    """The backend ``url`` names: none or ``sqlite:///path/dir`` for SQLite (in ``data_dir`` by
    default), ``postgresql://...`` for PostgreSQL with pgvector. Nothing is opened yet.

    ``exclusive`` (SQLite): this process serves the gallery to chats, and no other may.
    ``index_device`` (SQLite): the encoder's device ("cpu", "cuda", "auto"); on CUDA the in-memory
    index lives in GPU memory.
    """
    if not url or not url.strip():
        from core.storage.sqlite import SqliteGallery

        return SqliteGallery(data_dir, index_precision=index_precision,
                             index_device=index_device, exclusive=exclusive)
    parsed = urlparse(url.strip())
    if parsed.scheme == "sqlite":
        from core.storage.sqlite import SqliteGallery

        # As SQLAlchemy reads them: sqlite:///relative/dir, sqlite:////absolute/dir; bare sqlite:/// is data_dir.
        rest = unquote(url.strip()[len("sqlite:///"):]) if url.strip().startswith("sqlite:///") else ""
        where = Path(rest) if rest else data_dir
        if where.suffix == ".db":  # a URL naming the file: the gallery is its folder
            where = where.parent
        return SqliteGallery(where, index_precision=index_precision,
                             index_device=index_device, exclusive=exclusive)
    if parsed.scheme in ("postgresql", "postgres"):
        try:
            from core.storage.postgres import PostgresGallery
        except ImportError as exc:
            raise ConfigError(
                f"{SETTING} names PostgreSQL, but its driver is not installed ({exc.name}): "
                "pip install 'clipbot[postgres]'."
            ) from None
        return PostgresGallery(url.strip())
    raise ConfigError(
        f"{SETTING} must be a postgresql://user:password@host/db or sqlite:///path URL, not {parsed.scheme or url!r}."
    )
