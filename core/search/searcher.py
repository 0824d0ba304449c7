"""Searching a gallery: from a query (a photo, a /find query, a thread's vector) to ranked results.

The engine owns one :class:`Searcher` and forwards its search methods to it; the conversation
(core.chat.threads) keeps a :class:`QueryPlan` between messages and searches it again with feedback.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from core.errors import NotFoundError
from core.models.inference import Encoding
from core.records import ImageRecord, PictureText
from core.search.feedback import combine
from core.search.ocr_text import fold, matched_snippet
from core.search.query import ParsedQuery, parse_query
from core.search.words import SearchResult, matches_words, query_words, word_stem, words_of
from core.storage import GalleryStorage, Neighbours

DEFAULT_WEIGHT = 0.5
# The matched words shown under a result found by the text in its picture: a caption's line.
MATCHED_TEXT_CHARS = 80
QueryKind = Literal["image", "text", "mixed"]


@dataclass(frozen=True)
class QueryPlan:
    """A query made ready to search: its vector plus the filters that ride along with it.

    ``words``: images whose label or description holds them rank first (text queries only).
    ``phrases``: only images holding these; ``minus_words``: images holding any of these are left
    out; ``exclude``: ids never to show (a thread's rejected images, ``-#12``).
    """

    vector: np.ndarray = field(compare=False)
    words: str = ""
    phrases: tuple[str, ...] = ()
    minus_words: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    exclude: tuple[int, ...] = ()
    title: str = ""
    kind: QueryKind = "text"  # which calibrated thresholds apply (mixed: none)


def _phrase_in(phrase: str, label: str, description: str) -> bool:
    """Whether the phrase's words appear in this order as whole words (case and spacing aside)."""
    wanted = words_of(phrase)
    if not wanted:
        return True
    pattern = r"(?<![^\W_])" + r"[\W_]+".join(map(re.escape, wanted)) + r"(?![^\W_])"
    return re.search(pattern, f"{label}\n{description}".casefold()) is not None


def _joined(a: Neighbours, b: Neighbours) -> Neighbours:
    return Neighbours(np.concatenate([a.ids, b.ids]), np.concatenate([a.scores, b.scores]))


def _matched(query: str, text: PictureText | None) -> str | None:
    """The lines of a picture's text that hold the query, shortened for a caption; None: none do."""
    if text is None or not query or not text.lines:
        return None
    return matched_snippet(query, [line for line, _ in text.lines], limit=MATCHED_TEXT_CHARS) or None


class Searcher:
    """Vector and text search over one gallery for the configured model."""

    def __init__(self, gallery: GalleryStorage, runner: Encoding, *, ready: Callable[[], Awaitable[None]],
                 path_of: Callable[[ImageRecord], str | None]) -> None:
        self._gallery = gallery
        self._runner = runner
        self._ready = ready
        self._path_of = path_of

    async def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Text vectors (the multilingual text model's when one is configured)."""
        await self._ready()
        return await self._runner.encode_texts(list(texts))

    async def image_vectors(self, ids: Sequence[int], collections: Sequence[str]) -> dict[int, np.ndarray]:
        """Stored vectors of gallery images, checked to be visible from ``collections``.

        An id that does not exist, lies in a collection not searched here, or has no vector of
        this model gets the same :class:`NotFoundError`: nothing tells whether it exists elsewhere.
        """
        await self._ready()
        records = await self._gallery.get_images(list(ids))
        vectors = await self._gallery.vectors_for(list(ids), self._runner.model_id)
        for image_id in ids:
            record = records.get(image_id)
            if record is None or record.collection not in collections or image_id not in vectors:
                raise NotFoundError(f"There is no image #{image_id} here.")
        return {i: vectors[i] for i in ids}

    async def plan(self, query: str | ParsedQuery, *, collections: Sequence[str],
                   weight: float = DEFAULT_WEIGHT) -> QueryPlan:
        """A /find query's plan: ``cat + beach -dog "red hat" #12 color:red`` (see core.search.query)."""
        parsed = parse_query(query) if isinstance(query, str) else query
        refs = await self.image_vectors([*parsed.refs, *parsed.minus_refs], collections)
        if not parsed.plus and not parsed.refs:  # colours alone: CLIP still ranks by the colour's name
            parsed = replace(parsed, plus=tuple(parsed.colors))
        texts = [*parsed.plus, *parsed.minus]
        encoded = await self.text_vectors(texts) if texts else np.zeros((0, 1), np.float32)
        plus, minus = list(encoded[: len(parsed.plus)]), list(encoded[len(parsed.plus):])
        minus += [refs[i] for i in parsed.minus_refs]
        vector = combine(images=[refs[i] for i in parsed.refs], plus=plus, minus=minus, weight=weight)
        kind: QueryKind = "image" if parsed.refs and not parsed.plus else "mixed" if parsed.refs else "text"
        return QueryPlan(vector, words="" if parsed.refs else parsed.words, phrases=parsed.phrases,
                         minus_words=parsed.minus, families=parsed.colors, exclude=parsed.minus_refs,
                         title=parsed.describe(), kind=kind)

    async def search(self, plan: QueryPlan, *, collections: Sequence[str], k: int) -> list[SearchResult]:
        """The ``k`` best images for ``plan`` (text queries), in tiers, each by cosine:

        1. pictures whose text (OCR) holds the whole query, words in order, spacing aside;
        2. images whose label or description holds every word;
        3. pictures whose text holds every word, in any order;
        4. the rest, by CLIP's meaning alone.

        Phrase, colour and exclusion filters apply to every tier; a quoted phrase is held by a
        label, a description or the text in the picture.
        """
        await self._ready()
        names = list(dict.fromkeys(collections))
        only = await self._phrase_ids(names, plan.phrases) if plan.phrases else None
        if only is not None and not only:
            return []
        exclude = set(plan.exclude) | await self._word_ids(names, plan.minus_words)
        words = query_words(plan.words)
        tiers: list[list[int]] = []
        in_picture: set[int] = set()
        if words:
            whole = await self._picture_ids(names, [plan.words])
            every = await self._picture_ids(names, words)
            in_picture = whole | every
            tiers = [sorted(whole), await self._word_match_ids(names, words), sorted(every)]
        hits, taken = Neighbours.empty(), set(exclude)
        for tier in tiers:
            ids = [i for i in tier if i not in taken and (only is None or i in only)]
            if ids and len(hits) < k:
                found = await self._nearest(plan, names, k - len(hits), only=ids, exclude=set())
                hits = _joined(hits, found)
                taken |= set(found.ids.tolist())
        text_matches = len(hits)
        if len(hits) < k:
            rest = await self._nearest(plan, names, k - len(hits), only=sorted(only) if only is not None else None,
                                       exclude=taken)
            hits = _joined(hits, rest)
        shown = " ".join([plan.words, *plan.phrases]).strip() if in_picture or plan.phrases else ""
        return await self.results(hits, text_matches=text_matches, read_for=shown)

    async def _picture_ids(self, names: list[str], terms: Sequence[str]) -> set[int]:
        """Pictures whose text holds every term, each folded (no case, accents, spaces or
        punctuation); a term that folds to under two characters matches too much to count."""
        found: set[int] | None = None
        for term in terms:
            folded = fold(term)
            if len(folded) < 2:
                continue
            ids = set(await self._gallery.text_search(names, folded))
            found = ids if found is None else found & ids
            if not found:
                return set()
        return found or set()

    async def _nearest(self, plan: QueryPlan, names: list[str], k: int, *, only: Sequence[int] | None,
                       exclude: set[int]) -> Neighbours:
        """``k`` hits that are not excluded: asks for as many more as could be excluded."""
        if k <= 0:
            return Neighbours.empty()
        more = await self._gallery.nearest(plan.vector, model_id=self._runner.model_id, collections=names,
                                           k=k + len(exclude), color_families=list(plan.families), only=only)
        keep = ~np.isin(more.ids, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))
        return Neighbours(more.ids[keep][:k], more.scores[keep][:k])

    async def _word_match_ids(self, names: list[str], words: list[str]) -> list[int]:
        candidates = await self._gallery.text_candidates(names, [word_stem(w) for w in words])
        return [r.id for r in candidates if matches_words(words, r.label, r.description)]

    async def _word_ids(self, names: list[str], terms: Sequence[str]) -> set[int]:
        """Images whose label or description holds every word of any of ``terms``."""
        found: set[int] = set()
        for term in terms:
            words = query_words(term) or words_of(term)
            if words:
                found.update(await self._word_match_ids(names, words))
        return found

    async def _phrase_ids(self, names: list[str], phrases: Sequence[str]) -> set[int]:
        """Images holding every phrase, words in order, in their label or description or in the
        text in the picture."""
        words = [w for p in phrases for w in words_of(p)]
        candidates = await self._gallery.text_candidates(names, [word_stem(w) for w in dict.fromkeys(words)])
        labelled = {r.id: r for r in candidates}
        found: set[int] | None = None
        for phrase in phrases:
            held = {i for i, r in labelled.items() if _phrase_in(phrase, r.label, r.description)}
            held |= await self._picture_ids(names, [phrase])
            found = held if found is None else found & held
        return found or set()

    async def results(self, hits: Neighbours, text_matches: int = 0, read_for: str = "") -> list[SearchResult]:
        """Hits as results, with their records (an image deleted meanwhile is left out).

        ``read_for``: the query words; a result whose picture's text holds them shows the lines
        that matched (``matched_text``)."""
        records = await self._gallery.get_images([int(i) for i in hits.ids])
        texts = await self._gallery.texts_for([int(i) for i in hits.ids]) if read_for else {}
        out = []
        for n, (image_id, score) in enumerate(zip(hits.ids.tolist(), hits.scores.tolist(), strict=True)):
            rec = records.get(image_id)
            if rec is None:
                continue
            out.append(SearchResult(
                id=rec.id, label=rec.label, description=rec.description, path=self._path_of(rec),
                score=float(np.clip(score, -1.0, 1.0)), collection=rec.collection, text_match=n < text_matches,
                source_path=rec.source_path, matched_text=_matched(read_for, texts.get(image_id)),
            ))
        return out
