"""The SQLite gallery's schema, as migrations: each entry upgrades it by one version."""

from __future__ import annotations

from core.storage.sql import SIGHTINGS_TABLE

# Each entry upgrades the schema by one version; PRAGMA user_version records how far we got.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE collections (
        name TEXT PRIMARY KEY,
        created_at TEXT NOT NULL
    );
    CREATE TABLE images (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection TEXT NOT NULL REFERENCES collections(name),
        label TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        caption TEXT,
        sha256 TEXT NOT NULL,
        width INTEGER NOT NULL DEFAULT 0,
        height INTEGER NOT NULL DEFAULT 0,
        added_by TEXT,
        created_at TEXT NOT NULL,
        file TEXT,
        source_path TEXT,
        search_text TEXT NOT NULL DEFAULT '',
        UNIQUE (collection, sha256)
    );
    CREATE INDEX images_by_file ON images(file);
    CREATE TABLE embeddings (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (image_id, model_id)
    );
    CREATE INDEX embeddings_by_model ON embeddings(model_id);
    """,
    # 2: dominant colours, computed once at insertion; families padded with spaces for word matching.
    """
    ALTER TABLE images ADD COLUMN colors TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE images ADD COLUMN color_families TEXT NOT NULL DEFAULT '';
    """,
    # 3: the source file's size and mtime, so re-indexing a folder skips unchanged files undecoded.
    """
    ALTER TABLE images ADD COLUMN source_size INTEGER;
    ALTER TABLE images ADD COLUMN source_mtime_ns INTEGER;
    CREATE INDEX images_by_source ON images(collection, source_path);
    """,
    # 4: conversation state (result pages behind buttons, rate limits), so that it survives restarts.
    """
    CREATE TABLE state (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        expires_at REAL,
        PRIMARY KEY (kind, key)
    );
    CREATE INDEX state_by_expiry ON state(expires_at);
    """,
    # 5: fingerprints of images posted in chats that watch for reposts (core.chat.reposts); no image is kept.
    # The 64-bit perceptual hash as a signed integer; the vector as float32 bytes, as in embeddings.
    SIGHTINGS_TABLE.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT", text="TEXT", time="REAL", integer="INTEGER",
                           vector="BLOB"),
)
SCHEMA_VERSION = len(MIGRATIONS)

