"""The embedded backend: one SQLite file, plus an in-memory vector index per model kept in step.

The index is a numpy matrix per collection (core.storage.vector_index), built from the database on the
first search. Other processes may write to the same file (`clipbot index` while the bot runs):
SQLite's ``data_version`` tells when, and the index is rebuilt before the next search. Only one
*bot* process may serve a gallery (``exclusive``): two would each answer from their own memory.
Building an index and scanning a large one run on the executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Sequence
from pathlib import Path

import aiosqlite
import numpy as np

from core.errors import DimensionMismatchError, StoreError
from core.records import ImageRecord, NewImage
from core.storage.base import GalleryStorage, Neighbours, query_rows
from core.storage.sql_texts import Fts5Texts
from core.storage.sqlite_rows import DB_FILENAME, SqliteRows
from core.storage.sqlite_schema import SCHEMA_VERSION
from core.storage.sqlite_sightings import SqliteSightings
from core.storage.vector_index import VectorIndex, index_device, top_k_order

__all__ = ["DB_FILENAME", "SCHEMA_VERSION", "SqliteGallery"]
LOCK_FILENAME = "clipbot.run.lock"
# Below this many rows a search scans on the event loop: well under a millisecond of work
# (1M x 512 fp16 scans in ~45 ms on 2 cores), less than the hop to a thread and back would add.
INLINE_SCAN_ROWS = 20_000


class SqliteGallery(SqliteRows, SqliteSightings, Fts5Texts[aiosqlite.Connection],
                    GalleryStorage):
    """A gallery in ``data_dir/clipbot.db``; vectors searched in memory (fp16 by default)."""

    def __init__(self, data_dir: Path, *, index_precision: str = "fp16", index_device: str = "cpu",
                 exclusive: bool = False) -> None:
        super().__init__(data_dir)
        self.location = str(self.path.resolve())
        self.index_precision = index_precision
        # The encoder's device setting: vectors are searched on the GPU when it is CUDA ("auto" is
        # resolved when the first index is built, so commands that never search never import torch).
        self.index_device = index_device
        self._exclusive = exclusive
        self._lock_fd: int | None = None
        self._indexes: dict[str, VectorIndex] = {}
        self._index_lock = asyncio.Lock()
        self._seen_version: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._exclusive and self._lock_fd is None:
            self._lock_fd = await asyncio.to_thread(_lock, self.data_dir)
        try:
            await super().open()
        except BaseException:
            self._unlock()
            raise

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._indexes.clear()
            self.forget_fingerprints()
            self._unlock()

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    # -- writes: the rows first, then the index of each loaded model ------------------------------

    async def insert_image(self, image: NewImage, vector: np.ndarray, model_id: str) -> tuple[int, bool]:
        image_id, created = await super().insert_image(image, vector, model_id)
        if created:
            self._index_add(model_id, image.collection, image_id, vector)
        return image_id, created

    async def insert_images(self, images: Sequence[NewImage], vectors: np.ndarray,
                            model_id: str) -> list[tuple[ImageRecord, bool]]:
        done = await super().insert_images(images, vectors, model_id)
        index = self._indexes.get(model_id)
        if index is not None:
            rows = np.asarray(vectors, dtype=np.float32)
            created: dict[str, list[int]] = {}  # collection: positions in the batch
            for n, (held, new) in enumerate(done):
                if new:
                    created.setdefault(held.collection, []).append(n)
            for collection, at in created.items():
                index.add(collection, [done[n][0].id for n in at], rows[at])
        return done

    async def update_image(self, image_id: int, *, label: str, description: str,
                           vector: np.ndarray | None = None, model_id: str = "") -> None:
        await super().update_image(image_id, label=label, description=description, vector=vector, model_id=model_id)
        if vector is not None:
            self._index_add(model_id, (await self.get_image(image_id)).collection, image_id, vector)

    async def set_vector(self, image_id: int, vector: np.ndarray, model_id: str) -> None:
        await super().set_vector(image_id, vector, model_id)
        self._index_add(model_id, (await self.get_image(image_id)).collection, image_id, vector)

    async def replace_picture(self, image_id: int, image: NewImage, vector: np.ndarray, model_id: str) -> bool:
        orphan = await super().replace_picture(image_id, image, vector, model_id)
        for other, index in self._indexes.items():  # the other models' vectors described the old picture
            if other != model_id:
                index.remove(image_id)
        self._index_add(model_id, image.collection, image_id, vector)
        return orphan

    async def delete_image(self, image_id: int) -> tuple[ImageRecord, bool]:
        record, orphan = await super().delete_image(image_id)
        for index in self._indexes.values():
            index.remove(image_id)
        return record, orphan

    async def move_collection(self, old: str, new: str) -> tuple[int, list[int]]:
        moved, dropped = await super().move_collection(old, new)
        for index in self._indexes.values():
            index.move_collection(old, new, drop=dropped)
        return moved, dropped

    def _index_add(self, model_id: str, collection: str, image_id: int, vector: np.ndarray) -> None:
        index = self._indexes.get(model_id)
        if index is not None:
            index.add(collection, [image_id], np.asarray(vector)[None, :])

    # -- vector search ----------------------------------------------------------------------------

    async def prepare_search(self, model_id: str, dim: int) -> None:
        async with self._index_lock:
            if model_id not in self._indexes:
                self._indexes[model_id] = await self._build(model_id, dim)
                if self._seen_version is None:
                    self._seen_version = await self.data_version()

    async def _build(self, model_id: str, dim: int) -> VectorIndex:
        index = VectorIndex(dim, self.index_precision, index_device(self.index_device))
        async for collection, ids, vectors in self.load_vectors(model_id):
            if vectors.shape[1] != dim:
                raise DimensionMismatchError(
                    f"The database holds {vectors.shape[1]}-dimensional vectors under model {model_id!r}, which "
                    f"makes {dim}-dimensional ones: run `clipbot reindex --all` to encode the images again."
                )
            # Normalising and placing a collection's rows (perhaps on the GPU) is CPU work for a
            # large one: on the executor, as searches are; no one sees this index before it is built.
            await asyncio.to_thread(index.add, collection, ids, vectors)
        return index

    async def _index_for(self, model_id: str) -> VectorIndex | None:
        """The model's index, rebuilt first when another process has written since it was built."""
        async with self._index_lock:
            version = await self.data_version()
            if self._seen_version is not None and version != self._seen_version:
                for loaded, index in list(self._indexes.items()):
                    self._indexes[loaded] = await self._build(loaded, index.dim)
            self._seen_version = version
            if model_id not in self._indexes:
                dim = await self.vector_dim(model_id)
                if dim is None:
                    return None
                self._indexes[model_id] = await self._build(model_id, dim)
            return self._indexes[model_id]

    async def nearest(self, vector: np.ndarray, *, model_id: str, collections: Sequence[str], k: int,
                      color_families: Sequence[str] = (), only: Sequence[int] | None = None) -> Neighbours:
        index = await self._index_for(model_id)
        if index is None or k <= 0:
            return Neighbours.empty()
        colored = await self.ids_with_colors(collections, color_families) if color_families else None
        wanted = None if only is None else np.asarray(list(only), dtype=np.int64)
        if sum(index.count(c) for c in dict.fromkeys(collections)) < INLINE_SCAN_ROWS:
            return _nearest(index, vector, collections, k, colored, wanted)
        # A scan of many rows takes milliseconds to a second of CPU: on the executor, so the
        # loop goes on serving other chats meanwhile (the index's lock keeps each scan whole).
        return await asyncio.to_thread(_nearest, index, vector, collections, k, colored, wanted)

    async def nearest_many(self, vectors: np.ndarray, *, model_id: str, collections: Sequence[str],
                           k: int) -> list[Neighbours]:
        """:meth:`nearest` for each row of ``vectors``, by one matrix product per collection.

        An fp16 index (the default) on the CPU gives :meth:`nearest`'s ids, order and scores to
        the bit; an fp32 or GPU one sums in another order than the single scan, so its scores
        agree within rounding (about 1e-7 in fp32) and rows that close may trade places.
        """
        queries = query_rows(vectors)
        index = await self._index_for(model_id) if len(queries) else None
        if index is None or k <= 0:
            return [Neighbours.empty() for _ in range(len(queries))]
        work = len(queries) * sum(index.count(c) for c in dict.fromkeys(collections))
        if work < INLINE_SCAN_ROWS:
            found = index.search_many(queries, collections, k)
        else:  # as a large scan: CPU work for the executor, not the loop
            found = await asyncio.to_thread(index.search_many, queries, collections, k)
        return [Neighbours(ids, scores) for ids, scores in found]

    async def count_vectors(self, model_id: str, collections: Sequence[str]) -> int:
        index = await self._index_for(model_id)
        return 0 if index is None else sum(index.count(c) for c in dict.fromkeys(collections))


def _nearest(index: VectorIndex, vector: np.ndarray, collections: Sequence[str], k: int,
             colored: np.ndarray | None, only: np.ndarray | None) -> Neighbours:
    """The ``k`` best rows of ``collections`` among the ids ``colored`` and ``only`` allow (None: all)."""
    ids, scores = index.scores(vector, collections)
    for allowed in (colored, only):
        if allowed is not None:
            keep = np.isin(ids, allowed)
            ids, scores = ids[keep], scores[keep]
    order = top_k_order(scores, k)
    return Neighbours(ids[order], scores[order].astype(np.float32))


def _lock(data_dir: Path) -> int:
    """Take the gallery's run lock, or say which process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILENAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = ""
        with contextlib.suppress(OSError):
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise StoreError(
            f"Another clipbot bot process (pid {holder or '?'}) is serving the gallery in {data_dir}. With "
            "SQLite only one may: stop it, or keep the gallery in PostgreSQL (CLIPBOT_DATABASE_URL) to run "
            "several."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
