"""The gallery's rows as both SQL backends keep them: the images, the files they point at, and the
stored vectors, written once over :class:`core.storage.sql.SqlStore`'s few primitives.

What a backend adds: inserting images (one statement on PostgreSQL; a batch: a COPY and one),
storing a vector (whose missing image each driver reports its own way) and the vector search.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterable, Sequence

import numpy as np

from core.errors import DimensionMismatchError, NotFoundError
from core.records import ImageRecord, NewImage, search_text
from core.storage import sql
from core.storage.base import ImageFiles, ImageRecords, ImageVectors
from core.storage.sql import C, SqlStore, record


class SqlGallery(SqlStore[C], ImageRecords, ImageFiles, ImageVectors):
    """:class:`ImageRecords`, :class:`ImageFiles` and the stored half of :class:`ImageVectors`,
    in the backend's :attr:`dialect`; each write one transaction."""

    @abstractmethod
    async def _put_vector(self, conn: C, image_id: int, vector: np.ndarray, model_id: str) -> None:
        """Store (or replace) one image's vector for ``model_id``, inside ``conn``'s transaction."""

    async def _locked(self, conn: C, image_id: int) -> ImageRecord:
        """The record of ``image_id``, its row locked until ``conn``'s transaction ends."""
        rows = await self._fetch(self.dialect.sql(sql.LOCK_IMAGE), (image_id,), conn=conn)
        if not rows:
            raise NotFoundError(f"There is no image #{image_id}.")
        return record(rows[0])

    async def _in_use(self, conn: C | None, relative: str) -> bool:
        return bool(await self._fetch(self.dialect.sql(sql.FILE_IN_USE), (relative,), conn=conn))

    async def _images(self, query: str, params: Sequence[object] = ()) -> list[ImageRecord]:
        return [record(row) for row in await self._fetch(query, params)]

    # -- batches ----------------------------------------------------------------------------------

    @staticmethod
    def _batch(images: Sequence[NewImage], vectors: np.ndarray) -> np.ndarray:
        """``vectors`` as float32, one row per image, after checking that the batch can be stored."""
        rows = np.asarray(vectors, dtype=np.float32)
        if rows.ndim != 2 or len(rows) != len(images):
            raise ValueError(f"{len(images)} images need {len(images)} vectors in rows, not an array of shape "
                             f"{rows.shape}")
        seen: set[tuple[str, str]] = set()
        for image in images:
            key = (image.collection, image.sha256)
            if key in seen:  # which of the two would win is anyone's guess: refuse
                raise ValueError(f"The batch holds the picture {image.sha256[:12]} twice for {image.collection}.")
            seen.add(key)
        return rows

    async def _check_dim(self, conn: C, model_id: str, dim: int) -> None:
        """:class:`DimensionMismatchError` unless the stored vectors of ``model_id`` (if any) have ``dim``."""
        rows = await self._fetch(self.dialect.sql(sql.SOME_DIM), (model_id,), conn=conn)
        if rows and int(rows[0][0]) != dim:
            raise DimensionMismatchError(
                f"The gallery holds {rows[0][0]}-dimensional vectors under model {model_id!r}, not {dim}-dimensional "
                "ones: run `clipbot reindex --all` to encode the images again.")

    async def _by_sha256(self, conn: C | None, collection: str, sha256s: Sequence[str],
                         model_id: str) -> dict[str, tuple[ImageRecord, bool]]:
        """The records ``collection`` holds of ``sha256s``, each with whether it has a vector of ``model_id``."""
        found: dict[str, tuple[ImageRecord, bool]] = {}
        for part in self.dialect.chunks(list(dict.fromkeys(sha256s))):
            where, args = self.dialect.member("sha256", part)
            for row in await self._fetch(self.dialect.sql(sql.FIND_MANY) + where, [model_id, collection, *args],
                                         conn=conn):
                held = record(row[:-1])
                found[held.sha256] = (held, bool(row[-1]))
        return found

    async def _held(self, conn: C, images: Sequence[NewImage]) -> dict[tuple[str, str], ImageRecord]:
        """The records of ``images`` the gallery holds, by collection and hash (as ``conn`` sees them)."""
        wanted: dict[str, list[str]] = {}
        for image in images:
            wanted.setdefault(image.collection, []).append(image.sha256)
        return {(collection, sha): held for collection, hashes in wanted.items()
                for sha, (held, _) in (await self._by_sha256(conn, collection, hashes, "")).items()}

    async def set_colors(self, updates: Sequence[tuple[int, str, str]]) -> int:
        if any(json.loads(colors) == [] for _, colors, _ in updates):  # '[]' means "not computed yet"
            raise ValueError("Computed colours name at least one colour; '[]' would mean they were never computed.")
        if not updates:
            return 0
        async with self._transaction() as conn:
            return await self._execute_many(conn, self.dialect.sql(sql.SET_COLORS),
                                            [(colors, families, int(i)) for i, colors, families in updates])

    # -- writes ---------------------------------------------------------------------------------

    async def update_image(self, image_id: int, *, label: str, description: str,
                           vector: np.ndarray | None = None, model_id: str = "") -> None:
        async with self._transaction() as conn:
            changed = await self._execute(conn, self.dialect.sql(sql.SET_TEXT),
                                          (label, description, search_text(label, description), image_id))
            if changed == 0:
                raise NotFoundError(f"There is no image #{image_id}.")
            if vector is not None:
                await self._put_vector(conn, image_id, vector, model_id)

    async def set_vector(self, image_id: int, vector: np.ndarray, model_id: str) -> None:
        async with self._transaction() as conn:
            await self._put_vector(conn, image_id, vector, model_id)

    async def set_caption(self, image_id: int, caption: str) -> bool:
        async with self._transaction() as conn:
            rows = await self._fetch(self.dialect.sql(sql.CAPTION_WANTED), (image_id,), conn=conn)
            if not rows:
                return False
            label, description = str(rows[0][0]), str(rows[0][1]) or caption
            await self._execute(conn, self.dialect.sql(sql.SET_CAPTION),
                                (caption, description, search_text(label, description), image_id))
        return True

    async def set_source(self, image_id: int, path: str, size: int | None, mtime_ns: int | None) -> None:
        """Record the file an image was indexed from (after a move, say) and its size and mtime."""
        await self._write(self.dialect.sql(sql.SET_SOURCE), (path, size, mtime_ns, image_id))

    async def replace_picture(self, image_id: int, image: NewImage, vector: np.ndarray, model_id: str) -> bool:
        """Give ``image_id`` new content (its source file was edited in place), keeping its id and
        collection; vectors of other models are dropped, as they describe the old picture, and so
        is the text read in it (the new picture waits to be read).

        Returns whether the old picture's file is now unused.
        """
        d = self.dialect
        async with self._transaction() as conn:
            old = await self._locked(conn, image_id)
            await self._execute(conn, d.sql(sql.REPLACE_PICTURE), (
                image.label, image.description, image.caption, image.sha256, image.width, image.height, image.file,
                image.source_path, image.source_size, image.source_mtime_ns,
                search_text(image.label, image.description), image.colors, image.color_families, image_id))
            await self._execute(conn, d.sql(sql.DROP_VECTORS), (image_id,))
            await self._execute(conn, d.sql(sql.DROP_TEXT), (image_id,))
            await self._put_vector(conn, image_id, vector, model_id)
            return old.file is not None and old.file != image.file and not await self._in_use(conn, old.file)

    async def delete_image(self, image_id: int) -> tuple[ImageRecord, bool]:
        """Delete an image; returns its record and whether its file is now unreferenced."""
        async with self._transaction() as conn:
            found = await self._locked(conn, image_id)
            await self._execute(conn, self.dialect.sql(sql.DELETE_IMAGE), (image_id,))
            orphan = found.file is not None and not await self._in_use(conn, found.file)
        return found, orphan

    async def move_collection(self, old: str, new: str) -> tuple[int, list[int]]:
        """Move ``old``'s images into ``new`` in one transaction: ``(moved, dropped ids)``.

        A picture ``new`` already holds keeps ``new``'s row; ``old``'s copy is dropped. With
        ``old`` empty or gone this changes nothing, so the same move may be asked for twice.
        """
        if old == new:  # every row would match itself below and be dropped
            return 0, []
        d = self.dialect
        async with self._transaction() as conn:
            if d.lock_collections:
                await self._execute(conn, d.lock_collections)
            dropped = [int(row[0]) for row in await self._fetch(d.sql(sql.DUPLICATES), (new, old), conn=conn)]
            for part in d.chunks(dropped):
                where, args = d.member("id", part, ints=True)
                await self._execute(conn, f"DELETE FROM images WHERE {where}", args)
            await self._execute(conn, d.add_collection, d.collection_params(new))
            moved = await self._execute(conn, d.sql(sql.MOVE_IMAGES), (new, old))
            await self._execute(conn, d.sql(sql.DROP_COLLECTION), (old,))
            if not moved and not dropped:  # nothing was there: leave no empty gallery behind either
                await self._execute(conn, d.sql(sql.DROP_IF_EMPTY), (new, new))
        return moved, dropped

    # -- reads ----------------------------------------------------------------------------------

    async def get_images(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        out: dict[int, ImageRecord] = {}
        for part in self.dialect.chunks([int(i) for i in ids]):  # SQLite: under its bound-parameter limit
            where, args = self.dialect.member("id", part, ints=True)
            out.update((found.id, found) for found in await self._images(f"{sql.SELECT_IMAGES} WHERE {where}", args))
        return out

    async def find_by_sha256(self, collection: str, sha256: str) -> ImageRecord | None:
        found = await self._images(self.dialect.sql(sql.FIND_IMAGE), (collection, sha256))
        return found[0] if found else None

    async def find_many_by_sha256(self, collection: str, sha256s: Sequence[str],
                                  model_id: str) -> dict[str, tuple[ImageRecord, bool]]:
        return await self._by_sha256(None, collection, sha256s, model_id)

    async def list_images(self, collection: str | None = None) -> list[ImageRecord]:
        if collection:
            return await self._images(self.dialect.sql(sql.IMAGES_OF), (collection,))
        return await self._images(sql.ALL_IMAGES)

    async def indexed_files(self, collection: str) -> list[ImageRecord]:
        """The images of ``collection`` that were indexed from a file (``source_path`` set)."""
        return await self._images(self.dialect.sql(sql.INDEXED_FILES), (collection,))

    async def awaiting_captions(self, collection: str | None = None) -> list[ImageRecord]:
        if collection:
            return await self._images(self.dialect.sql(f"{sql.AWAITING_CAPTIONS} AND collection = ? ORDER BY id"),
                                      (collection,))
        return await self._images(f"{sql.AWAITING_CAPTIONS} ORDER BY id")

    async def awaiting_colors(self, collection: str | None = None) -> list[ImageRecord]:
        if collection:
            return await self._images(self.dialect.sql(f"{sql.AWAITING_COLORS} AND collection = ? ORDER BY id"),
                                      (collection,))
        return await self._images(f"{sql.AWAITING_COLORS} ORDER BY id")

    async def collection_counts(self) -> dict[str, int]:
        rows = await self._fetch(self.dialect.sql(sql.COLLECTION_COUNTS))
        return {str(name): int(n) for name, n in rows}

    async def text_candidates(self, collections: Iterable[str], words: Sequence[str]) -> list[ImageRecord]:
        """Images of ``collections`` whose label or description contains every string given.

        A prefilter: callers check whole words on the few rows it returns.
        """
        names = list(dict.fromkeys(collections))
        if not names or not words:
            return []
        where, args = self.dialect.member("collection", names)
        clauses = " AND ".join(self.dialect.has_text("search_text") for _ in words)
        return await self._images(f"{sql.SELECT_IMAGES} WHERE {where} AND {clauses} ORDER BY id",
                                  [*args, *(w.casefold() for w in words)])

    async def image_ids(self, collections: Sequence[str]) -> list[int]:
        names = list(dict.fromkeys(collections))
        if not names:
            return []
        where, args = self.dialect.member("collection", names)
        return [int(row[0]) for row in await self._fetch(f"SELECT id FROM images WHERE {where} ORDER BY id", args)]

    async def referenced_files(self) -> set[str]:
        """Every stored picture some image row points at (paths relative to the media folder)."""
        return {str(row[0]) for row in await self._fetch(sql.REFERENCED_FILES)}

    async def file_in_use(self, relative: str) -> bool:
        return await self._in_use(None, relative)

    async def vectors_for(self, ids: Sequence[int], model_id: str) -> dict[int, np.ndarray]:
        """Stored vectors, bit for bit, of the given images."""
        out: dict[int, np.ndarray] = {}
        for part in self.dialect.chunks([int(i) for i in ids]):
            where, args = self.dialect.member("image_id", part, ints=True)
            rows = await self._fetch(f"{self.dialect.sql(sql.VECTORS_OF)} AND {where}", [model_id, *args],
                                     vectors=True)
            out.update((int(image_id), self.dialect.vector_out(stored)) for image_id, stored in rows)
        return out

    async def has_vector(self, image_id: int, model_id: str) -> bool:
        return bool(await self._fetch(self.dialect.sql(sql.HAS_VECTOR), (image_id, model_id)))

    async def embedding_counts(self) -> dict[str, int]:
        rows = await self._fetch(self.dialect.sql(sql.EMBEDDING_COUNTS))
        return {str(model): int(n) for model, n in rows}
