"""The async engine every front end talks to: add, search, find, score, list, remove."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image

from core.captions import Captioner
from core.colors import DominantColor, color_families, dominant_colors
from core.errors import (
    CaptionsOffError,
    ClipbotError,
    DimensionMismatchError,
    InputError,
    ModelChangedError,
    ModelLoadError,
)
from core.galleries import GLOBAL_COLLECTION
from core.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DecodedImage, decode_image
from core.inference import Encoding
from core.maintenance import HealthReport, SweepReport, check_health, sweep
from core.media import MediaStore
from core.records import ImageRecord, NewImage, SourceFile
from core.search import SearchResult, hybrid_order, matches_words, query_words, split_color_filter, word_stem
from core.store import Store
from core.text import TextLimits
from core.vector_index import VectorIndex, top_k_order

log = logging.getLogger(__name__)
# Everything the engine does with pixels needs at most this on the shorter side: CLIP looks at
# 224, BLIP at 384, colours at 96. Larger JPEGs are decoded at a reduced scale.
DECODE_SIDE = 448
AddStatus = Literal["added", "updated"]
T = TypeVar("T")


@dataclass(frozen=True)
class AddResult:
    """The outcome of adding one image."""

    record: ImageRecord
    status: AddStatus


@dataclass(frozen=True)
class StorageInfo:
    database: str
    schema_version: int
    media_dir: str


class Engine:
    """CLIP image search over a SQLite gallery.

    Build it with collaborators (see ``bot.composition``), then ``await engine.start()``.
    The model loads on the first call that needs it, not at start.
    """

    def __init__(
        self,
        *,
        store: Store,
        media: MediaStore,
        runner: Encoding,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        decode_workers: int = 2,
        captioner: Captioner | None = None,
        color_count: int = 5,
        index_precision: str = "fp16",
        text_limits: TextLimits | None = None,
    ) -> None:
        self.store = store
        self.media = media
        self.runner = runner
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self._decode_workers = max(1, decode_workers)
        self._decode_pool: ThreadPoolExecutor | None = None  # made by start(): nothing runs before it
        self._index: VectorIndex | None = None
        self._index_lock = asyncio.Lock()
        # Pictures are stored once per content and shared by every row with those bytes: deciding
        # a file is unused and deleting it must not interleave with a new row taking it up.
        self._files_lock = asyncio.Lock()
        self.captioner = captioner
        self.color_count = color_count
        self.index_precision = index_precision
        self.text_limits = text_limits or TextLimits()
        self._caption_failure_logged = False

    @property
    def model_id(self) -> str:
        return self.runner.model_id

    @property
    def started(self) -> bool:
        return self._decode_pool is not None

    async def start(self) -> None:
        """Make the worker threads and open the database; the model and the vectors load on first use.

        Calling it again on a started engine does nothing. If any part fails to start, whatever
        had started is closed again before the error propagates.
        """
        if self.started:
            return
        self._decode_pool = ThreadPoolExecutor(max_workers=self._decode_workers, thread_name_prefix="clipbot-decode")
        try:
            await self.runner.start()
            await self.store.open()
        except BaseException:
            await self.close()
            raise

    async def warm(self) -> None:
        """Load the models and every collection's vectors now, so the first user waits for none.

        A caption model that cannot load is logged, not fatal: images are then added uncaptioned.
        """
        await self.index()
        captioner = self.captioner
        if captioner is not None:
            try:
                await self.runner.call(captioner.load)
            except ModelLoadError as exc:
                log.warning("captions unavailable: %s", exc)
                self._caption_failure_logged = True

    async def close(self) -> None:
        """Close the database and stop the worker threads; safe to call twice, or after a failed start."""
        pool, self._decode_pool = self._decode_pool, None
        try:
            await self.store.close()
        finally:
            try:
                await self.runner.aclose()
            finally:
                if pool is not None:
                    # Waiting for a running decode must not block the event loop.
                    await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def index(self) -> VectorIndex:
        """The in-memory index, built from the database on first use."""
        if self._index is None:
            async with self._index_lock:
                if self._index is None:
                    dim = await self.runner.load()
                    index = VectorIndex(dim, self.index_precision)
                    async for collection, ids, vectors in self.store.load_vectors(self.model_id):
                        if vectors.shape[1] != dim:
                            raise DimensionMismatchError(
                                f"The database holds {vectors.shape[1]}-dimensional vectors under model "
                                f"{self.model_id!r}, which makes {dim}-dimensional ones."
                            )
                        index.add(collection, ids, vectors)
                    self._index = index
        return self._index

    # -- intake ---------------------------------------------------------------------------------

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU work (previews, cards) on the decode threads: a bounded pool, so a burst of
        replies cannot flood the process with threads that contend with the event loop."""
        if self._decode_pool is None:
            raise RuntimeError("the engine is not started: await engine.start() or use `async with engine`")
        return await asyncio.get_running_loop().run_in_executor(self._decode_pool, fn, *args)

    async def decode(self, source: bytes | str | Path) -> DecodedImage:
        """Decode an image on the decode threads; raises :class:`ImageError` subclasses."""
        return await self.blocking(
            lambda: decode_image(source, max_pixels=self.max_pixels, max_bytes=self.max_bytes, min_side=DECODE_SIDE),
        )

    async def add_image(
        self,
        source: bytes | str | Path,
        *,
        collection: str = GLOBAL_COLLECTION,
        label: str | None = None,
        description: str | None = None,
        added_by: str | None = None,
    ) -> AddResult:
        """Add one image; the same bytes in the same collection update label and description."""
        decoded = await self.decode(source)
        origin = None if isinstance(source, bytes) else await asyncio.to_thread(SourceFile.of, source)
        [result] = await self.add_decoded(
            [decoded], collection=collection, labels=[label], descriptions=[description],
            added_by=added_by, sources=[origin],
        )
        return result

    async def add_decoded(
        self,
        images: Sequence[DecodedImage],
        *,
        collection: str,
        labels: Sequence[str | None],
        descriptions: Sequence[str | None],
        added_by: str | None = None,
        sources: Sequence[SourceFile | None] | None = None,
        pixels: np.ndarray | None = None,
    ) -> list[AddResult]:
        """Store already decoded images, encoding only those not yet stored for this model.

        ``pixels``, when given, are the images' model inputs from :meth:`prepare` (ingest makes
        them ahead, on the decode threads). ``sources`` are the files they were read from: a
        picture already stored takes its new source (a moved file).
        """
        if len({d.sha256 for d in images}) != len(images):
            raise ValueError("add_decoded() takes distinct images; drop repeated files first")
        # Checked before any work: a refused label costs no encoding and stores nothing.
        labels = [None if text is None else self.text_limits.label(text) for text in labels]
        descriptions = [None if text is None else self.text_limits.description(text) for text in descriptions]
        index = await self.index()
        origins = sources or [None] * len(images)
        existing = [await self.store.find_by_sha256(collection, d.sha256) for d in images]
        need = [
            i for i, rec in enumerate(existing) if rec is None or not await self.store.has_vector(rec.id, self.model_id)
        ]
        fresh = [i for i, rec in enumerate(existing) if rec is None]

        async def encode_needed() -> np.ndarray | None:
            if not need:
                return None
            inputs = pixels[need] if pixels is not None else await self.prepare([images[i] for i in need])
            return await self.runner.encode_pixels(inputs)

        # The new images' files and colours are made on the decode threads while the model encodes.
        files_and_colors = asyncio.gather(*(self.blocking(self._file_and_colors, images[i]) for i in fresh))
        vectors, made = await asyncio.gather(encode_needed(), files_and_colors, return_exceptions=True)
        if isinstance(vectors, BaseException) or isinstance(made, BaseException):
            await self._forget_unused_files([images[i] for i in fresh])
            raise vectors if isinstance(vectors, BaseException) else made
        vector_of = {i: vectors[n] for n, i in enumerate(need)} if vectors is not None else {}
        file_and_colors = dict(zip(fresh, made, strict=True))
        # New images without a description get BLIP's caption as their description.
        uncaptioned = [i for i, rec in enumerate(existing) if rec is None and not descriptions[i]]
        made_captions = await self._captions_or_none([images[i].image for i in uncaptioned])
        captions = dict(zip(uncaptioned, made_captions, strict=True))
        results: list[AddResult] = []
        try:
            for i, decoded in enumerate(images):
                results.append(await self._store_one(
                    decoded, existing[i], vector_of.get(i), file_and_colors.get(i), collection=collection,
                    label=labels[i], description=descriptions[i], caption=captions.get(i), source=origins[i],
                    added_by=added_by, index=index,
                ))
        except BaseException:
            # A row that failed (a full disk, say) must not leave its new file behind.
            await self._forget_unused_files([images[i] for i in fresh])
            raise
        return results

    async def _store_one(self, decoded: DecodedImage, rec: ImageRecord | None, vec: np.ndarray | None,
                         file_and_colors: tuple[str, list[DominantColor]] | None, *, collection: str,
                         label: str | None, description: str | None, caption: str | None,
                         source: SourceFile | None, added_by: str | None, index: VectorIndex) -> AddResult:
        if rec is not None:
            await self.store.update_image(
                rec.id,
                label=rec.label if label is None else label,
                description=rec.description if description is None else description,
                vector=vec, model_id=self.model_id,
            )
            if source is not None and source.path != rec.source_path:
                await self.store.set_source(rec.id, source.path, source.size, source.mtime_ns)
            if vec is not None:
                index.add(collection, [rec.id], vec[None, :])
            return AddResult(await self.store.get_image(rec.id), "updated")
        assert vec is not None and file_and_colors is not None
        relative, colors = file_and_colors
        new = NewImage(
            collection=collection, label=label or "", description=description or caption or "", caption=caption,
            sha256=decoded.sha256, width=decoded.width, height=decoded.height, file=relative,
            source_path=source.path if source else None, source_size=source.size if source else None,
            source_mtime_ns=source.mtime_ns if source else None, added_by=added_by,
            colors=json.dumps([c.to_dict() for c in colors]),
            color_families="".join(f" {f} " for f in color_families(colors)),
        )
        async with self._files_lock:
            # Written again if a delete took it since it was made (a no-op when it is there).
            await self.blocking(self.media.put, decoded.data, decoded.sha256, decoded.extension)
            image_id = await self.store.insert_image(new, vec, self.model_id)
        index.add(collection, [image_id], vec[None, :])
        return AddResult(await self.store.get_image(image_id), "added")

    async def replace_picture(
        self, record: ImageRecord, decoded: DecodedImage, *, source: SourceFile, pixels: np.ndarray | None = None,
        label: str | None = None, description: str | None = None,
    ) -> AddResult:
        """Give ``record`` the picture its source file now holds (edited in place), keeping its id,
        label and description unless new ones are given. A description that was BLIP's caption
        of the old picture becomes the caption of the new one.
        """
        label = record.label if label is None else self.text_limits.label(label)
        description = record.description if description is None else self.text_limits.description(description)
        index = await self.index()
        inputs = pixels[None] if pixels is not None else await self.prepare([decoded])
        made = await asyncio.gather(
            self.runner.encode_pixels(inputs), self.blocking(self._file_and_colors, decoded), return_exceptions=True,
        )
        try:
            for outcome in made:
                if isinstance(outcome, BaseException):
                    raise outcome
            vectors, (relative, colors) = made
            caption = record.caption
            if record.description == (record.caption or "") and self.captioner is not None:
                [caption] = await self._captions_or_none([decoded.image])
                description = caption or description
            new = NewImage(
                collection=record.collection, label=label, description=description, caption=caption,
                sha256=decoded.sha256, width=decoded.width, height=decoded.height, file=relative,
                source_path=source.path, source_size=source.size, source_mtime_ns=source.mtime_ns,
                added_by=record.added_by, colors=json.dumps([c.to_dict() for c in colors]),
                color_families="".join(f" {f} " for f in color_families(colors)),
            )
            async with self._files_lock:
                await self.blocking(self.media.put, decoded.data, decoded.sha256, decoded.extension)
                orphan = await self.store.replace_picture(record.id, new, vectors[0], self.model_id)
                if orphan and record.file:
                    self.media.delete(record.file)
        except BaseException:
            await self._forget_unused_files([decoded])
            raise
        index.add(record.collection, [record.id], vectors[0][None, :])
        return AddResult(await self.store.get_image(record.id), "updated")

    def _file_and_colors(self, decoded: DecodedImage) -> tuple[str, list[DominantColor]]:
        relative = self.media.put(decoded.data, decoded.sha256, decoded.extension)
        return relative, dominant_colors(decoded.image, self.color_count)

    async def _forget_unused_files(self, images: Sequence[DecodedImage]) -> None:
        """After a failed add, remove the files it wrote that no image row uses.

        Best effort: when even that check fails, the file stays for the next sweep to find.
        """
        for decoded in images:
            relative = self.media.relative_path(decoded.sha256, decoded.extension)
            try:
                async with self._files_lock:
                    if not await self.store.file_in_use(relative):
                        self.media.delete(relative)
            except (ClipbotError, OSError):
                log.warning("could not remove %s after a failed add; the next sweep will", relative, exc_info=True)

    # -- captions and colours -------------------------------------------------------------------

    async def describe(self, source: bytes | str | Path) -> str:
        """BLIP's caption of an image; :class:`CaptionsOffError` when captioning is turned off."""
        decoded = await self.decode(source)
        [caption] = await self._caption([decoded.image])
        return caption

    async def colors(self, source: bytes | str | Path) -> list[DominantColor]:
        """The image's dominant colours, largest share first."""
        image = (await self.decode(source)).image
        return await self.blocking(dominant_colors, image, self.color_count)

    async def _caption(self, images: Sequence[Image.Image]) -> list[str]:
        captioner = self.captioner
        if captioner is None:
            raise CaptionsOffError("Captions are turned off here (CLIPBOT_CAPTION_MODEL=none).")
        return await self.runner.call(lambda: captioner.caption_images(images))

    async def _captions_or_none(self, images: Sequence[Image.Image]) -> list[str | None]:
        """Captions for new images, or None each when captioning is off or its model is unusable:
        an image is still worth adding without one."""
        if not images or self.captioner is None:
            return [None] * len(images)
        try:
            return list(await self._caption(images))
        except ModelLoadError as exc:
            if not self._caption_failure_logged:
                log.warning("adding images without captions: %s", exc)
                self._caption_failure_logged = True
            return [None] * len(images)

    async def get_image(self, image_id: int) -> ImageRecord:
        """One image's record; :class:`NotFoundError` when there is none."""
        return await self.store.get_image(image_id)

    async def list_images(self, collection: str | None = None) -> list[ImageRecord]:
        """The images of ``collection`` (every collection when ``None``), oldest first."""
        return await self.store.list_images(collection)

    async def indexed_files(self, collection: str) -> list[ImageRecord]:
        """The images of ``collection`` indexed from a file, with that file's size and mtime then."""
        return await self.store.indexed_files(collection)

    async def find_picture(self, collection: str, sha256: str) -> ImageRecord | None:
        """The image of ``collection`` with these exact bytes, if any."""
        return await self.store.find_by_sha256(collection, sha256)

    async def relabel(self, image_id: int, *, label: str, description: str) -> None:
        """Set an image's label and description (limits checked first: nothing changes if refused)."""
        label, description = self.text_limits.label(label), self.text_limits.description(description)
        await self.store.update_image(image_id, label=label, description=description)

    async def record_source(self, image_id: int, source: SourceFile) -> None:
        """Note where an image's file now is and its size and mtime (unchanged content, touched file)."""
        await self.store.set_source(image_id, source.path, source.size, source.mtime_ns)

    async def collection_counts(self) -> dict[str, int]:
        """How many images each collection holds."""
        return await self.store.collection_counts()

    async def vector_counts(self) -> dict[str, int]:
        """How many vectors each model id has made (a changed model shows up as a second id)."""
        return await self.store.embedding_counts()

    async def check_model(self) -> int:
        """How many images have no vector of the configured model.

        Raises :class:`ModelChangedError` when the gallery holds vectors of other models only
        (the model setting was changed): every search would come back empty, which must not look
        like an empty gallery.
        """
        vectors = await self.store.embedding_counts()
        total = sum((await self.store.collection_counts()).values())
        current = vectors.get(self.model_id, 0)
        others = {model: n for model, n in vectors.items() if model != self.model_id}
        if current == 0 and others:
            old = max(others, key=others.__getitem__)
            raise ModelChangedError(
                f"The gallery was indexed with the model {old!r}, but the model setting now says "
                f"{self.model_id!r}: run `clipbot reindex` to encode its {total} image(s) with it, "
                f"or set CLIPBOT_CLIP_MODEL back."
            )
        return max(0, total - current)

    async def storage(self) -> StorageInfo:
        """Where the gallery lives: what `clipbot stats` and `doctor` show operators."""
        return StorageInfo(str(self.store.path.resolve()), await self.store.schema_version(),
                           str(self.media.root.resolve()))

    def picture_file(self, relative: str) -> str:
        """The absolute path of a stored picture (a record's ``file``)."""
        return str(self.media.absolute(relative))

    async def move_collection(self, old: str, new: str) -> int:
        """Move every image of ``old`` into ``new`` (a chat whose id changed); returns how many moved.

        One transaction; moving an empty or already moved collection does nothing, so a second
        notice of the same move is harmless. A picture ``new`` already holds keeps its row there.
        """
        moved, dropped = await self.store.move_collection(old, new)
        if self._index is not None:
            self._index.move_collection(old, new, drop=dropped)
        return moved

    async def sweep(self) -> SweepReport:
        """Remove temporary files left by killed writes and pictures no image uses (see core.maintenance)."""
        return await sweep(self.store, self.media)

    async def check_health(self) -> HealthReport:
        """The database's integrity, pictures gone missing, and a sweep: what `clipbot doctor` shows."""
        return await check_health(self.store, self.media)

    async def remove(self, image_id: int) -> ImageRecord:
        """Delete an image, its vectors and (when no other row uses it) its file."""
        async with self._files_lock:
            record, orphan = await self.store.delete_image(image_id)
            if orphan and record.file:
                self.media.delete(record.file)
        if self._index is not None:
            self._index.remove(image_id)
        return record

    # -- search ---------------------------------------------------------------------------------

    async def search_image(
        self, source: bytes | str | Path, *, collections: Sequence[str] = (GLOBAL_COLLECTION,), k: int = 5
    ) -> list[SearchResult]:
        """The ``k`` images most similar to ``source`` across ``collections``, best first."""
        decoded = await self.decode(source)
        return await self.search_vector(await self.encode_decoded(decoded), collections=collections, k=k)

    async def encode_decoded(self, decoded: DecodedImage) -> np.ndarray:
        vector: np.ndarray = (await self.runner.encode_pixels(await self.prepare([decoded])))[0]
        return vector

    async def prepare(self, images: Sequence[DecodedImage]) -> np.ndarray:
        """Model inputs, computed on the decode threads so the inference thread only runs the model."""
        return await self.blocking(self.runner.preprocess, [d.image for d in images])

    async def search_vector(
        self, vector: np.ndarray, *, collections: Sequence[str] = (GLOBAL_COLLECTION,), k: int = 5
    ) -> list[SearchResult]:
        index = await self.index()
        ids, scores = index.scores(vector, collections)
        order = top_k_order(scores, k)
        return await self._results(ids[order], scores[order])

    async def find_text(
        self, text: str, *, collections: Sequence[str] = (GLOBAL_COLLECTION,), k: int = 5
    ) -> list[SearchResult]:
        """Hybrid text search: label/description word matches first, then pure CLIP matches.

        Both tiers are ordered by CLIP text-to-image cosine. ``color:red`` in the text keeps only
        images whose dominant colours include red.
        """
        query_text, families = split_color_filter(text)
        if not query_text and not families:
            raise InputError("Tell me what to look for, for example: red car")
        index = await self.index()
        query = (await self.runner.encode_texts([query_text or " ".join(families)]))[0]
        ids, scores = index.scores(query, collections)
        if families:  # keep only images whose stored dominant colours include every family asked for
            keep = np.isin(ids, await self.store.ids_with_colors(collections, families))
            ids, scores = ids[keep], scores[keep]
        words = query_words(query_text)
        candidates = await self.store.text_candidates(collections, [word_stem(w) for w in words])
        matched = {r.id for r in candidates if matches_words(words, r.label, r.description)}
        mask = np.isin(ids, np.fromiter(matched, dtype=np.int64, count=len(matched)))
        order = hybrid_order(scores, mask, k)
        return await self._results(ids[order], scores[order], text_match=mask[order])

    async def scores(
        self, source: bytes | str | Path, *, collections: Sequence[str] = (GLOBAL_COLLECTION,)
    ) -> list[SearchResult]:
        """Every image of ``collections`` with its cosine to ``source``, best first."""
        index = await self.index()
        total = sum(index.count(c) for c in dict.fromkeys(collections))
        return await self.search_image(source, collections=collections, k=total)

    async def _results(
        self, ids: np.ndarray, scores: np.ndarray, text_match: np.ndarray | None = None
    ) -> list[SearchResult]:
        records = await self.store.get_images([int(i) for i in ids])
        out = []
        for n, (image_id, score) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True)):
            rec = records.get(image_id)
            if rec is None:  # deleted while we searched
                continue
            out.append(
                SearchResult(
                    id=rec.id, label=rec.label, description=rec.description, path=self.path_of(rec),
                    score=float(np.clip(score, -1.0, 1.0)), collection=rec.collection,
                    text_match=bool(text_match[n]) if text_match is not None else False,
                    source_path=rec.source_path,
                )
            )
        return out

    def path_of(self, record: ImageRecord) -> str | None:
        """Where the image's picture lies: the stored copy, else where it was imported from."""
        return str(self.media.absolute(record.file)) if record.file else record.source_path
