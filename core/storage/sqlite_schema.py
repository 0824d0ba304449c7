"""The SQLite gallery's schema, as migrations: each entry upgrades it by one version."""

from __future__ import annotations

import sqlite3

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
    # 6: the text read in each picture (core.storage.sql_texts): one row per image read (no lines: read, no
    # text), with FTS5 indexes over its folded text's trigrams and over its pairs of characters (``pairs``:
    # space-separated, for the ascii tokenizer; positions not kept, a pair is one token). Both are
    # external-content tables kept in step by triggers, so a row deleted any way (its image's cascade
    # too) leaves the indexes in the same transaction.
    """
    CREATE TABLE image_texts (
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        lines TEXT NOT NULL,
        folded TEXT NOT NULL,
        pairs TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'))
    );
    CREATE VIRTUAL TABLE image_texts_fts USING fts5(
        folded, content='image_texts', content_rowid='image_id', tokenize='trigram case_sensitive 1'
    );
    CREATE VIRTUAL TABLE image_texts_pairs USING fts5(
        pairs, content='image_texts', content_rowid='image_id', tokenize='ascii', detail='none'
    );
    CREATE TRIGGER image_texts_added AFTER INSERT ON image_texts BEGIN
        INSERT INTO image_texts_fts(rowid, folded) VALUES (new.image_id, new.folded);
        INSERT INTO image_texts_pairs(rowid, pairs) VALUES (new.image_id, new.pairs);
    END;
    CREATE TRIGGER image_texts_gone AFTER DELETE ON image_texts BEGIN
        INSERT INTO image_texts_fts(image_texts_fts, rowid, folded) VALUES ('delete', old.image_id, old.folded);
        INSERT INTO image_texts_pairs(image_texts_pairs, rowid, pairs) VALUES ('delete', old.image_id, old.pairs);
    END;
    CREATE TRIGGER image_texts_changed AFTER UPDATE OF folded, pairs ON image_texts BEGIN
        INSERT INTO image_texts_fts(image_texts_fts, rowid, folded) VALUES ('delete', old.image_id, old.folded);
        INSERT INTO image_texts_pairs(image_texts_pairs, rowid, pairs) VALUES ('delete', old.image_id, old.pairs);
        INSERT INTO image_texts_fts(rowid, folded) VALUES (new.image_id, new.folded);
        INSERT INTO image_texts_pairs(rowid, pairs) VALUES (new.image_id, new.pairs);
    END;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def statements(script: str) -> list[str]:
    """A migration's statements, one by one: split at the semicolons that end one (a trigger's
    body holds some that do not). Not ``executescript``: that commits, and a step is one transaction."""
    out, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        out.append(pending.strip())
    return out

