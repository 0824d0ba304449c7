"""The async engine every front end talks to: add, search, find, score, list, remove.

It owns its collaborators privately: the gallery's storage backend (core.storage), the media
folder, the model runner and the decode threads. Callers (ingest, seed import/export, the CLI,
the chat service) use its methods only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from core.errors import InputError, ModelLoadError
from core.galleries import GLOBAL_COLLECTION
from core.gallery.engine_pictures import EnginePictures
from core.gallery.engine_text import EngineText
from core.gallery.files import MediaStore
from core.gallery.intake import AddResult, AddStatus, Intake
from core.gallery.record_access import SIGHTING_RETENTION_S, GalleryRecords, StorageInfo
from core.media.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, REDUCIBLE_FORMATS, DecodedImage, decode_image
from core.media.video import DecodedMedia, VideoLimits, decode_media, representative, still_of
from core.models.blip import Captioner
from core.models.inference import Encoding
from core.models.ocr import TextReader
from core.records import ImageRecord, SourceFile
from core.search.calibration import CalibrationConfig, Calibrator
from core.search.frames import match_frames
from core.search.query import ParsedQuery
from core.search.searcher import DEFAULT_WEIGHT, QueryPlan, Searcher
from core.search.words import SearchResult
from core.storage import GalleryStorage
from core.storage.state import StateStore
from core.text import TextLimits

__all__ = ["AddResult", "AddStatus", "Engine", "StorageInfo"]
log = logging.getLogger(__name__)
# Everything the engine does with pixels needs at most this on the shorter side: CLIP looks at
# 224, BLIP at 384, colours at 96. Larger JPEGs are decoded at a reduced scale.
DECODE_SIDE = 448
T = TypeVar("T")


class Engine(GalleryRecords, EnginePictures, EngineText):
    """CLIP image search over a gallery (SQLite or PostgreSQL, see core.storage).

    Build it with collaborators (see ``bot.composition``), then ``await engine.start()``.
    The model loads on the first call that needs it, not at start.
    """

    def __init__(
        self,
        *,
        gallery: GalleryStorage,
        media: MediaStore,
        runner: Encoding,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        decode_workers: int = 2,
        captioner: Captioner | None = None,
        reader: TextReader | None = None,
        color_count: int = 5,
        text_limits: TextLimits | None = None,
        video_limits: VideoLimits | None = None,
        sighting_retention_s: float = SIGHTING_RETENTION_S,
    ) -> None:
        self._gallery = gallery
        self._media = media
        self._runner = runner
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.video_limits = video_limits or VideoLimits()
        # How long repost fingerprints are kept: every process's sweep (a bot's, `clipbot index`'s)
        # purges older ones; the repost watcher looks back no further.
        self.sighting_retention_s = sighting_retention_s
        self.decode_workers = max(1, decode_workers)  # how many decode threads it runs
        self._decode_pool: ThreadPoolExecutor | None = None  # made by start(): nothing runs before it
        self._search_ready = False
        self._ready_lock = asyncio.Lock()
        self.captioner = captioner
        self.reader = reader  # OCR; None: off
        self._reading = set()
        self.color_count = color_count
        self.text_limits = text_limits or TextLimits()
        self._caption_failure_logged = False
        self._searcher = Searcher(gallery, runner, ready=self._ready, path_of=self.path_of)
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._intake = Intake(gallery=gallery, media=media, runner=runner, blocking=self.blocking,
                              captions=self._captions_or_none, color_count=color_count, text_limits=self.text_limits)

    @property
    def model_id(self) -> str:
        return self._runner.model_id

    @property
    def state(self) -> StateStore:
        """Where conversation state (result pages, rate limits) lives: the gallery's database,
        shared by every process serving it."""
        return self._gallery

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
        self._decode_pool = ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="clipbot-decode")
        try:
            await self._runner.start()
            await self._gallery.open()
        except BaseException:
            await self.close()
            raise

    async def warm(self) -> None:
        """Load the models and what search needs now, so the first user waits for neither.

        A caption model that cannot load is logged, not fatal: images are then added uncaptioned.
        """
        await self._ready()
        captioner = self.captioner
        if captioner is not None:
            try:
                await self._runner.call(captioner.load)
            except ModelLoadError as exc:
                log.warning("captions unavailable: %s", exc)
                self._caption_failure_logged = True

    async def close(self) -> None:
        """Close the database and stop the worker threads; safe to call twice, or after a failed start."""
        pool, self._decode_pool = self._decode_pool, None
        self._search_ready = False
        closers, self._closers = self._closers, []
        for closer in closers:
            await closer()
        await self._intake.drop_late_captions()
        await self.close_reader()
        try:
            await self._gallery.close()
        finally:
            try:
                await self._runner.aclose()
            finally:
                if pool is not None:
                    # Waiting for a running decode must not block the event loop.
                    await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ready(self) -> None:
        """Load the model and let the backend prepare its search (SQLite: the in-memory index)."""
        await self._ready()

    async def _ready(self) -> None:
        if not self._search_ready:
            async with self._ready_lock:
                if not self._search_ready:
                    dim = await self._runner.load()
                    await self._gallery.prepare_search(self.model_id, dim)
                    self._search_ready = True

    # -- intake ---------------------------------------------------------------------------------

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU work (previews, cards) on the decode threads: a bounded pool, so a burst of
        replies cannot flood the process with threads that contend with the event loop."""
        if self._decode_pool is None:
            raise RuntimeError("the engine is not started: await engine.start() or use `async with engine`")
        return await asyncio.get_running_loop().run_in_executor(self._decode_pool, fn, *args)

    async def decode(self, source: bytes | str | Path) -> DecodedImage:
        """Decode an image on the decode threads; raises :class:`ImageError` subclasses.

        A video or animation (judged by content, core.media.video) becomes its most representative
        frame, as a JPEG: what adding it stores, and what /describe, /colors and /scores look at."""
        media = await self.decode_media(source)
        if media.still is not None:
            return media.still
        vectors = await self.frame_vectors(media)
        return await self.blocking(still_of, media.frames[representative(vectors)])

    async def decode_media(self, source: bytes | str | Path) -> DecodedMedia:
        """An image, or a video's or animation's sampled frames and their moments (core.media.video)."""
        return await self.blocking(lambda: decode_media(
            source, max_pixels=self.max_pixels, max_bytes=self.max_bytes, limits=self.video_limits,
            min_side=DECODE_SIDE, decode_still=decode_image))

    async def frame_vectors(self, media: DecodedMedia) -> np.ndarray:
        """The vectors of all of ``media``'s frames, encoded as one batch."""
        return await self._runner.encode_pixels(await self.blocking(self._runner.preprocess, list(media.frames)))

    async def add_image(self, source: bytes | str | Path, *, collection: str = GLOBAL_COLLECTION,
                        label: str | None = None, description: str | None = None,
                        added_by: str | None = None, caption_limit_s: float | None = None) -> AddResult:
        """Add one image; the same bytes in the same collection update label and description.

        ``caption_limit_s`` bounds the wait for BLIP's caption (see :meth:`add_decoded`)."""
        decoded = await self.decode(source)
        origin = None if isinstance(source, bytes) else await asyncio.to_thread(SourceFile.of, source)
        [result] = await self.add_decoded(
            [decoded], collection=collection, labels=[label], descriptions=[description],
            added_by=added_by, sources=[origin], caption_limit_s=caption_limit_s,
        )
        return result

    async def add_decoded(self, images: Sequence[DecodedImage], *, collection: str,
                          labels: Sequence[str | None], descriptions: Sequence[str | None],
                          added_by: str | None = None, sources: Sequence[SourceFile | None] | None = None,
                          pixels: np.ndarray | None = None, vectors: np.ndarray | None = None,
                          defer_enrichment: bool = False, caption_limit_s: float | None = None) -> list[AddResult]:
        """Store already decoded images, encoding only those not yet stored for this model.

        ``pixels``: the images' model inputs from :meth:`prepare`; ``vectors``: their vectors
        (ingest makes both ahead, so the model never waits for storage). ``sources``: the files
        they were read from; a picture already stored takes its new source (a moved file).

        New images get their enrichments (core.gallery.enrichment: colours, and BLIP's caption as
        the description of those without one) inline, or with ``defer_enrichment`` not at all:
        they wait for the passes that ``clipbot index`` runs after storing vectors. The caption
        waits at most ``caption_limit_s``: one that comes later is stored when it comes (if the
        engine is still open), else a later pass writes it.
        """
        await self._ready()
        results = await self._intake.add_decoded(
            images, collection=collection, labels=labels, descriptions=descriptions, added_by=added_by,
            sources=sources, pixels=pixels, vectors=vectors, prepare=self.prepare, defer_enrichment=defer_enrichment,
            caption_limit_s=caption_limit_s,
        )
        if not defer_enrichment:
            await self.read_new([(r.record.id, d.image) for r, d in zip(results, images, strict=True)
                                 if r.status == "added"], caption_limit_s)
        return results

    async def replace_picture(self, record: ImageRecord, decoded: DecodedImage, *, source: SourceFile,
                              pixels: np.ndarray | None = None, label: str | None = None,
                              description: str | None = None, defer_enrichment: bool = False) -> AddResult:
        """Give ``record`` the picture its source file now holds (edited in place), keeping its id,
        label and description unless new ones are given. A description that was BLIP's caption
        of the old picture becomes the caption of the new one (with ``defer_enrichment``: is emptied,
        waiting for the next caption pass, as the colours wait for theirs).
        """
        await self._ready()
        inputs = pixels[None] if pixels is not None else await self.prepare([decoded])
        return await self._intake.replace_picture(record, decoded, source=source, pixels=inputs, label=label,
                                                  description=description, captioning=self.captioner is not None,
                                                  defer=defer_enrichment)

    async def add_with_vector(self, *, collection: str, label: str, description: str, vector: np.ndarray,
                              decoded: DecodedImage | None, sha256: str, source_path: str | None,
                              added_by: str) -> AddStatus:
        """Store a vector made elsewhere (the seed notebook's pickle) bit for bit, with its picture
        when there is one; the same ``sha256`` in the collection is updated."""
        dim = await self.dim()
        if np.asarray(vector).size != dim:
            raise InputError(f"A {np.asarray(vector).size}-dimensional vector does not fit {self.model_id} ({dim}).")
        await self._ready()
        return await self._intake.add_with_vector(
            collection=collection, label=label, description=description, vector=vector, decoded=decoded,
            sha256=sha256, source_path=source_path, added_by=added_by,
        )

    async def remove(self, image_id: int) -> ImageRecord:
        """Delete an image, its vectors and (when no other row uses it) its file."""
        return await self._intake.remove(image_id)

    async def index_batch_size(self) -> int:
        """Images `clipbot index` reads and encodes at a time: the encoder's batch (256 on a GPU),
        at least 16 (on a CPU the model is called in batches of 8 within it)."""
        await self._runner.load()
        return max(16, self._runner.batch_size)

    async def index_side(self) -> int:
        """The shorter side, in pixels, the model looks at (224 for ViT-B/32): what indexing decodes
        to, since captions and colours come later from the stored file (loads the model)."""
        await self._runner.load()
        return max(1, int(getattr(self._runner, "input_side", 224)))

    async def dim(self) -> int:
        """The configured model's vector dimension (loads the model)."""
        return await self._runner.load()

    async def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Vectors of :meth:`prepare` output, on the inference thread."""
        return await self._runner.encode_pixels(pixels)

    async def store_vector(self, image_id: int, vector: np.ndarray) -> None:
        """Store (or replace) an image's vector for the configured model (``clipbot reindex``)."""
        await self._ready()
        await self._gallery.set_vector(image_id, vector, self.model_id)

    # -- search (core.search.searcher) ------------------------------------------------------------------

    async def search_image(
        self, source: bytes | str | Path, *, collections: Sequence[str] = (GLOBAL_COLLECTION,), k: int = 5
    ) -> list[SearchResult]:
        """The ``k`` images most similar to ``source`` across ``collections``, best first."""
        return await self.search_vector(await self.image_vector(source), collections=collections, k=k)

    async def match_media(self, source: bytes | str | Path, *, collections: Sequence[str] = (GLOBAL_COLLECTION,),
                          k: int = 5) -> tuple[list[SearchResult], np.ndarray]:
        """The ``k`` best images for a photo (as :meth:`search_image`), video or animation (each
        frame searches; an image keeps its best frame's score and ``moment``, see core.search.frames),
        and the query vector to remember: the photo's, or the best frame's."""
        media = await self.decode_media(source)
        vectors = await self.frame_vectors(media)
        if media.still is not None:
            return await self.search_vector(vectors[0], collections=collections, k=k), vectors[0]
        return await match_frames(lambda v: self.search_vector(v, collections=collections, k=k), vectors,
                                  media.moments, k)

    async def image_vector(self, source: bytes | str | Path) -> np.ndarray:
        """The vector of an image file or its bytes."""
        return await self.encode_decoded(await self.decode(source))

    async def encode_decoded(self, decoded: DecodedImage) -> np.ndarray:
        vector: np.ndarray = (await self._runner.encode_pixels(await self.prepare([decoded])))[0]
        return vector

    async def prepare(self, images: Sequence[DecodedImage]) -> np.ndarray:
        """Model inputs, computed on the decode threads so the inference thread only runs the model.

        The model always sees a JPEG as indexing decodes it (at a reduced scale, down to the
        model's side): a photo sent to the chat then gets the very vector of the same file indexed
        from a folder, and a score of 1.0, not 0.99."""
        side = await self.index_side()
        return await self.blocking(lambda: self._runner.preprocess([self._at_side(d, side) for d in images]))

    def _at_side(self, decoded: DecodedImage, side: int) -> Image.Image:
        if decoded.format in REDUCIBLE_FORMATS and min(decoded.image.size) > 2 * side:
            return decode_image(decoded.data, max_pixels=self.max_pixels, max_bytes=len(decoded.data),
                                min_side=side).image
        return decoded.image

    async def search_vector(
        self, vector: np.ndarray, *, collections: Sequence[str] = (GLOBAL_COLLECTION,), k: int = 5
    ) -> list[SearchResult]:
        return await self._searcher.search(QueryPlan(vector, kind="image"), collections=collections, k=k)

    async def find_text(
        self, text: str, *, collections: Sequence[str] = (GLOBAL_COLLECTION,), k: int = 5
    ) -> list[SearchResult]:
        """A /find query (``cat + beach -dog "red hat" #12 color:red``, see core.search.query): images
        whose label or description holds its words first, then the others, each by CLIP cosine."""
        plan = await self.plan_query(text, collections=collections)
        return await self._searcher.search(plan, collections=collections, k=k)

    async def plan_query(self, query: str | ParsedQuery, *, collections: Sequence[str],
                         weight: float = DEFAULT_WEIGHT) -> QueryPlan:
        """A parsed query's vector and filters; ``#12`` must be visible from ``collections``."""
        return await self._searcher.plan(query, collections=collections, weight=weight)

    async def search_plan(self, plan: QueryPlan, *, collections: Sequence[str], k: int) -> list[SearchResult]:
        """The ``k`` best images of ``collections`` for a plan (a thread's query, after feedback)."""
        return await self._searcher.search(plan, collections=collections, k=k)

    async def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors of texts, from the text model in use."""
        return await self._searcher.text_vectors(texts)

    async def image_vectors(self, ids: Sequence[int], collections: Sequence[str]) -> dict[int, np.ndarray]:
        """Stored vectors of images visible from ``collections``; :class:`NotFoundError` for any other id."""
        return await self._searcher.image_vectors(ids, collections)

    async def scores(
        self, source: bytes | str | Path, *, collections: Sequence[str] = (GLOBAL_COLLECTION,)
    ) -> list[SearchResult]:
        """Every image of ``collections`` with its cosine to ``source``, best first."""
        await self._ready()
        total = await self._gallery.count_vectors(self.model_id, list(dict.fromkeys(collections)))
        return await self.search_image(source, collections=collections, k=total)

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Have ``closer`` run when the engine closes (background work built on it: repost checks)."""
        self._closers.append(closer)

    def calibrator(self, config: CalibrationConfig, *, fallback_image: float, fallback_text: float) -> Calibrator:
        """Per-gallery weak and no-match thresholds (core.search.calibration), closed with the engine."""
        calibrator = Calibrator(self._gallery, self._runner, model_id=lambda: self.model_id, config=config,
                                fallback_image=fallback_image, fallback_text=fallback_text)
        self.on_close(calibrator.aclose)
        return calibrator
