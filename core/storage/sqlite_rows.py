"""The SQL of a SQLite gallery: aiosqlite, one connection that owns every write.

:class:`core.storage.sqlite.SqliteGallery` adds the in-memory vector index on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

import aiosqlite
import numpy as np

from core.errors import NotFoundError, StoreError
from core.records import ImageRecord, NewImage, blob_to_vector, search_text, vector_to_blob
from core.storage.state import StateUpdate
from core.storage.sqlite_schema import IMAGE_COLUMNS, MIGRATIONS, SCHEMA_VERSION
from core.storage.faults import storage_fault

DB_FILENAME = "clipbot.db"

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SqliteRows:
    """All reads and writes of ``clipbot.db``; open with ``await rows.open()`` or ``async with``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / DB_FILENAME
        self._db: aiosqlite.Connection | None = None
        # aiosqlite serialises statements, not transactions: this keeps each transaction whole.
        self._write_lock = asyncio.Lock()

    async def __aenter__(self) -> SqliteRows:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("The database is not open.")
        return self._db

    async def open(self) -> None:
        """Create the data directory and database if needed, and bring the schema up to date.

        Opening an open store does nothing; a failed open leaves nothing open.
        """
        if self._db is not None:
            return
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self._migrate()
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StoreError(f"Cannot open the database {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        version = await self.schema_version()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this clipbot understands "
                f"({SCHEMA_VERSION}); upgrade clipbot."
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            async with self._transaction() as db:
                for statement in MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {target}")

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; a full, read-only or failing disk becomes :class:`StorageUnavailableError`."""
        async with self._write_lock:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                    await self.db.execute("COMMIT")
                except BaseException:
                    if self.db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):  # the error that got us here matters more
                            await self.db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                fault = storage_fault(exc, self.path)
                if fault is None:
                    raise
                raise fault from exc

    # -- writes ---------------------------------------------------------------------------------

    async def insert_image(self, image: NewImage, vector: np.ndarray, model_id: str) -> tuple[int, bool]:
        """Insert an image and its embedding in one transaction: ``(id, created)``; bytes the
        collection already holds (another process was first) give the existing id, not created."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO collections(name, created_at) VALUES (?, ?)", (image.collection, _now())
            )
            cur = await db.execute(
                "INSERT INTO images(collection, label, description, caption, sha256, width, height, added_by,"
                " created_at, file, source_path, search_text, colors, color_families, source_size, source_mtime_ns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(collection, sha256) DO NOTHING",
                (image.collection, image.label, image.description, image.caption, image.sha256, image.width,
                 image.height, image.added_by, _now(), image.file, image.source_path,
                 search_text(image.label, image.description), image.colors, image.color_families,
                 image.source_size, image.source_mtime_ns),
            )
            if cur.rowcount == 0:
                async with db.execute(
                    "SELECT id FROM images WHERE collection = ? AND sha256 = ?", (image.collection, image.sha256)
                ) as found:
                    row = await found.fetchone()
                return int(row[0]) if row else 0, False
            image_id = int(cur.lastrowid or 0)
            await self._put_vector(db, image_id, vector, model_id)
        return image_id, True

    async def update_image(
        self, image_id: int, *, label: str, description: str, vector: np.ndarray | None = None, model_id: str = ""
    ) -> None:
        """Replace label and description (and the embedding, when given)."""
        async with self._transaction() as db:
            cur = await db.execute(
                "UPDATE images SET label = ?, description = ?, search_text = ? WHERE id = ?",
                (label, description, search_text(label, description), image_id),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"There is no image #{image_id}.")
            if vector is not None:
                await self._put_vector(db, image_id, vector, model_id)

    async def set_caption(self, image_id: int, caption: str) -> bool:
        async with self._transaction() as db:
            async with db.execute(
                "SELECT label, description FROM images WHERE id = ? AND caption IS NULL", (image_id,)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return False
            label, description = str(row[0]), str(row[1]) or caption
            await db.execute(
                "UPDATE images SET caption = ?, description = ?, search_text = ? WHERE id = ?",
                (caption, description, search_text(label, description), image_id),
            )
        return True

    async def set_source(self, image_id: int, path: str, size: int | None, mtime_ns: int | None) -> None:
        """Record the file an image was indexed from (after a move, say) and its size and mtime."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE images SET source_path = ?, source_size = ?, source_mtime_ns = ? WHERE id = ?",
                (path, size, mtime_ns, image_id),
            )

    async def replace_picture(self, image_id: int, image: NewImage, vector: np.ndarray, model_id: str) -> bool:
        """Give ``image_id`` new content (its source file was edited in place), keeping its id and
        collection; vectors of other models are dropped, as they describe the old picture.

        Returns whether the old picture's file is now unused.
        """
        async with self._transaction() as db:
            old = await self._get_one(image_id)
            await db.execute(
                "UPDATE images SET label = ?, description = ?, caption = ?, sha256 = ?, width = ?, height = ?,"
                " file = ?, source_path = ?, source_size = ?, source_mtime_ns = ?, search_text = ?, colors = ?,"
                " color_families = ? WHERE id = ?",
                (image.label, image.description, image.caption, image.sha256, image.width, image.height, image.file,
                 image.source_path, image.source_size, image.source_mtime_ns,
                 search_text(image.label, image.description), image.colors, image.color_families, image_id),
            )
            await db.execute("DELETE FROM embeddings WHERE image_id = ?", (image_id,))
            await self._put_vector(db, image_id, vector, model_id)
            return old.file is not None and old.file != image.file and not await self.file_in_use(old.file)

    async def set_vector(self, image_id: int, vector: np.ndarray, model_id: str) -> None:
        """Store (or replace) one image's vector for ``model_id``."""
        async with self._transaction() as db:
            await self._put_vector(db, image_id, vector, model_id)

    @staticmethod
    async def _put_vector(db: aiosqlite.Connection, image_id: int, vector: np.ndarray, model_id: str) -> None:
        await db.execute(
            "INSERT OR REPLACE INTO embeddings(image_id, model_id, dim, vector) VALUES (?, ?, ?, ?)",
            (image_id, model_id, int(np.asarray(vector).size), vector_to_blob(vector)),
        )

    async def delete_image(self, image_id: int) -> tuple[ImageRecord, bool]:
        """Delete an image; returns its record and whether its file is now unreferenced."""
        async with self._transaction() as db:
            record = await self._get_one(image_id)
            await db.execute("DELETE FROM images WHERE id = ?", (image_id,))
            orphan = record.file is not None and not await self.file_in_use(record.file)
        return record, orphan

    async def move_collection(self, old: str, new: str) -> tuple[int, list[int]]:
        """Move ``old``'s images into ``new`` in one transaction: ``(moved, dropped ids)``.

        A picture ``new`` already holds keeps ``new``'s row; ``old``'s copy is dropped. With
        ``old`` empty or gone this changes nothing, so the same move may be asked for twice.
        """
        if old == new:  # every row would match itself below and be dropped
            return 0, []
        async with self._transaction() as db:
            async with db.execute(
                "SELECT o.id FROM images o JOIN images n ON n.sha256 = o.sha256 AND n.collection = ?"
                " WHERE o.collection = ?", (new, old),
            ) as cur:
                dropped = [int(row[0]) for row in await cur.fetchall()]
            for start in range(0, len(dropped), 500):
                chunk = dropped[start:start + 500]
                await db.execute(f"DELETE FROM images WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            await db.execute("INSERT OR IGNORE INTO collections(name, created_at) VALUES (?, ?)", (new, _now()))
            cur = await db.execute("UPDATE images SET collection = ? WHERE collection = ?", (new, old))
            moved = cur.rowcount
            await db.execute("DELETE FROM collections WHERE name = ?", (old,))
            if not moved and not dropped:  # nothing was there: leave no empty gallery behind either
                await db.execute(
                    "DELETE FROM collections WHERE name = ? AND NOT EXISTS"
                    " (SELECT 1 FROM images WHERE collection = ?)", (new, new),
                )
        return moved, dropped

    # -- reads ----------------------------------------------------------------------------------

    async def _get_one(self, image_id: int) -> ImageRecord:
        found = await self.get_images([image_id])
        if image_id not in found:
            raise NotFoundError(f"There is no image #{image_id}.")
        return found[image_id]

    async def get_image(self, image_id: int) -> ImageRecord:
        """The record of ``image_id``, or :class:`NotFoundError`."""
        return await self._get_one(image_id)

    async def get_images(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        out: dict[int, ImageRecord] = {}
        for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = [int(i) for i in ids[start:start + 500]]
            marks = ",".join("?" * len(chunk))
            async with self.db.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE id IN ({marks})", chunk) as cur:
                for row in await cur.fetchall():
                    out[row[0]] = ImageRecord(*row)
        return out

    async def find_by_sha256(self, collection: str, sha256: str) -> ImageRecord | None:
        async with self.db.execute(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE collection = ? AND sha256 = ?", (collection, sha256)
        ) as cur:
            row = await cur.fetchone()
        return ImageRecord(*row) if row else None

    async def referenced_files(self) -> set[str]:
        """Every stored picture some image row points at (paths relative to the media folder)."""
        async with self.db.execute("SELECT DISTINCT file FROM images WHERE file IS NOT NULL") as cur:
            return {str(row[0]) for row in await cur.fetchall()}

    async def integrity_check(self) -> list[str]:
        """SQLite's integrity check: ``["ok"]``, or the problems it found."""
        async with self.db.execute("PRAGMA integrity_check") as cur:
            return [str(row[0]) for row in await cur.fetchall()]

    async def file_in_use(self, relative: str) -> bool:
        async with self.db.execute("SELECT 1 FROM images WHERE file = ? LIMIT 1", (relative,)) as cur:
            return await cur.fetchone() is not None

    async def has_vector(self, image_id: int, model_id: str) -> bool:
        async with self.db.execute(
            "SELECT 1 FROM embeddings WHERE image_id = ? AND model_id = ?", (image_id, model_id)
        ) as cur:
            return await cur.fetchone() is not None

    async def list_images(self, collection: str | None = None) -> list[ImageRecord]:
        where, args = ("WHERE collection = ?", (collection,)) if collection else ("", ())
        async with self.db.execute(f"SELECT {IMAGE_COLUMNS} FROM images {where} ORDER BY id", args) as cur:
            return [ImageRecord(*row) for row in await cur.fetchall()]

    async def indexed_files(self, collection: str) -> list[ImageRecord]:
        """The images of ``collection`` that were indexed from a file (``source_path`` set)."""
        async with self.db.execute(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE collection = ? AND source_path IS NOT NULL ORDER BY id",
            (collection,),
        ) as cur:
            return [ImageRecord(*row) for row in await cur.fetchall()]

    async def awaiting_captions(self, collection: str | None = None) -> list[ImageRecord]:
        where, args = ("AND collection = ?", (collection,)) if collection else ("", ())
        async with self.db.execute(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE caption IS NULL AND description = '' {where} ORDER BY id", args
        ) as cur:
            return [ImageRecord(*row) for row in await cur.fetchall()]

    async def collection_counts(self) -> dict[str, int]:
        async with self.db.execute(
            "SELECT c.name, COUNT(i.id) FROM collections c LEFT JOIN images i ON i.collection = c.name"
            " GROUP BY c.name ORDER BY c.name"
        ) as cur:
            return {name: int(n) for name, n in await cur.fetchall()}

    async def embedding_counts(self) -> dict[str, int]:
        async with self.db.execute("SELECT model_id, COUNT(*) FROM embeddings GROUP BY model_id") as cur:
            return {model: int(n) for model, n in await cur.fetchall()}

    async def load_vectors(self, model_id: str) -> AsyncIterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(collection, ids, vectors)`` for every collection, vectors of ``model_id``."""
        async with self.db.execute(
            "SELECT i.collection, e.image_id, e.vector FROM embeddings e JOIN images i ON i.id = e.image_id"
            " WHERE e.model_id = ? ORDER BY i.collection, e.image_id",
            (model_id,),
        ) as cur:
            rows = list(await cur.fetchall())
        start = 0
        while start < len(rows):
            collection = rows[start][0]
            end = start
            while end < len(rows) and rows[end][0] == collection:
                end += 1
            ids = np.fromiter((r[1] for r in rows[start:end]), dtype=np.int64, count=end - start)
            vectors = np.stack([blob_to_vector(r[2]) for r in rows[start:end]])
            yield collection, ids, vectors
            start = end

    async def vectors_for(self, ids: Sequence[int], model_id: str) -> dict[int, np.ndarray]:
        """Stored vectors, bit for bit, of the given images."""
        out: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start:start + 500]]
            marks = ",".join("?" * len(chunk))
            async with self.db.execute(
                f"SELECT image_id, vector FROM embeddings WHERE model_id = ? AND image_id IN ({marks})",
                [model_id, *chunk],
            ) as cur:
                for image_id, blob in await cur.fetchall():
                    out[int(image_id)] = blob_to_vector(blob)
        return out

    async def text_candidates(self, collections: Iterable[str], words: Sequence[str]) -> list[ImageRecord]:
        """Images of ``collections`` whose label or description contains every string given.

        A prefilter: callers check whole words on the few rows it returns.
        """
        names = list(dict.fromkeys(collections))
        if not names or not words:
            return []
        clauses = " AND ".join("instr(search_text, ?) > 0" for _ in words)
        args: list[str] = [*names, *(w.casefold() for w in words)]
        marks = ",".join("?" * len(names))
        async with self.db.execute(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE collection IN ({marks}) AND {clauses}", args
        ) as cur:
            return [ImageRecord(*row) for row in await cur.fetchall()]

    async def vector_dim(self, model_id: str) -> int | None:
        """The dimension of the stored vectors of ``model_id`` (the largest, should they differ)."""
        async with self.db.execute("SELECT MAX(dim) FROM embeddings WHERE model_id = ?", (model_id,)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else None

    async def data_version(self) -> int:
        """Changes whenever another connection (another process) commits to the database."""
        async with self.db.execute("PRAGMA data_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- conversation state -----------------------------------------------------------------------

    async def get_state(self, kind: str, key: str) -> str | None:
        async with self.db.execute(
            "SELECT value FROM state WHERE kind = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (kind, key, time.time()),
        ) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def put_state(self, kind: str, key: str, value: str, ttl_s: float | None) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO state(kind, key, value, expires_at) VALUES (?, ?, ?, ?)",
                (kind, key, value, None if ttl_s is None else time.time() + ttl_s),
            )

    async def update_state(self, kind: str, key: str, update: StateUpdate) -> str:
        # BEGIN IMMEDIATE takes the write lock first: no other process interleaves its own update.
        async with self._transaction() as db:
            async with db.execute(
                "SELECT value FROM state WHERE kind = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (kind, key, time.time()),
            ) as cur:
                row = await cur.fetchone()
            value, ttl_s = update(str(row[0]) if row else None)
            await db.execute(
                "INSERT OR REPLACE INTO state(kind, key, value, expires_at) VALUES (?, ?, ?, ?)",
                (kind, key, value, None if ttl_s is None else time.time() + ttl_s),
            )
        return value

    async def purge_state(self) -> int:
        async with self._transaction() as db:
            cur = await db.execute("DELETE FROM state WHERE expires_at IS NOT NULL AND expires_at <= ?", (time.time(),))
            return int(cur.rowcount)

    async def ids_with_colors(self, collections: Iterable[str], families: Sequence[str]) -> np.ndarray:
        """Ids of images in ``collections`` whose dominant colours include every family given."""
        names = list(dict.fromkeys(collections))
        if not names:
            return np.zeros(0, dtype=np.int64)
        marks = ",".join("?" * len(names))
        clauses = "".join(" AND instr(color_families, ?) > 0" for _ in families)
        async with self.db.execute(
            f"SELECT id FROM images WHERE collection IN ({marks}){clauses}", [*names, *(f" {f} " for f in families)]
        ) as cur:
            rows = list(await cur.fetchall())
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
