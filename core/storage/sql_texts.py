"""The text in pictures as both SQL backends keep it (SQLite's schema version 6, PostgreSQL's 3):
one ``image_texts`` row per image read, and indexes of its 2- and 3-character substrings.

The rows are shared: the lines as JSON (``[[text, confidence], ...]``), the folded text searches
match, the reader's model id. What differs is the index, each backend's own kind:

* SQLite (:class:`Fts5Texts`): an FTS5 table with the ``trigram`` tokenizer over ``folded`` for
  queries of three characters or more, and one with the ``ascii`` tokenizer over ``pairs`` (each
  text's distinct 2-character substrings, space-separated) for two; both external-content tables
  kept in step by triggers, so deleting a row by any path, its image's cascade included, takes
  it out of the indexes in the same transaction;
* PostgreSQL (:class:`GramTexts`): a ``grams text[]`` column of each text's distinct 2- and
  3-character substrings under a GIN index: a query's trigrams must all be there, then
  ``position`` checks the substring (they may be there in another order); a 2-character query is
  one gram, exact. pg_trgm would keep trigrams in the server, but it is not everywhere (pgserver's
  PostgreSQL lacks it) and has no bigrams, so the array is used everywhere.

Why bigrams: a 2-character query (a CJK word, often) scanning every text took 35 to 150 ms at
100,000 images (bench.text_search); through an index it costs what its hits cost.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from core.records import ImageRecord, PictureText
from core.storage.sql import SELECT_IMAGES, C, SqlStore, record
from core.storage.texts import ImageTexts

__all__ = ["Fts5Texts", "GramTexts", "SqlTexts", "grams", "pairs", "trigrams"]
# Images with a picture and no text row (``image_texts``' primary key answers each probe).
_AWAITING = (f"{SELECT_IMAGES} WHERE file IS NOT NULL"
             " AND NOT EXISTS (SELECT 1 FROM image_texts t WHERE t.image_id = images.id)")
_TEXTS_OF = "SELECT image_id, model_id, lines, folded FROM image_texts WHERE "
# A scan of every text: for what no index answers (a single character, say).
_SCAN = "SELECT t.image_id FROM image_texts t JOIN images i ON i.id = t.image_id WHERE {where} AND {contains}"
# Texts holding every gram given (PostgreSQL), then their images in the collections asked for.
# MATERIALIZED: the index first, whatever the statistics say (fresh rows not analysed yet made the
# planner walk every image of the collections and probe each one's text).
_GRAMS = ("WITH t AS MATERIALIZED (SELECT image_id FROM image_texts WHERE grams @> %s::text[]{check})"
          " SELECT t.image_id FROM t JOIN images i ON i.id = t.image_id WHERE {where}")


def trigrams(folded: str) -> list[str]:
    """The distinct 3-character substrings of ``folded``, in order of first appearance."""
    return list(dict.fromkeys(folded[n:n + 3] for n in range(len(folded) - 2)))


def pairs(folded: str) -> list[str]:
    """The distinct 2-character substrings of ``folded``, in order of first appearance."""
    return list(dict.fromkeys(folded[n:n + 2] for n in range(len(folded) - 1)))


def grams(folded: str) -> list[str]:
    """What PostgreSQL's index keys a text by: its distinct 2- and 3-character substrings."""
    return pairs(folded) + trigrams(folded)


def lines_json(text: PictureText) -> str:
    """A text's lines as the ``lines`` column holds them: ``[[text, confidence], ...]``."""
    return json.dumps([[line, confidence] for line, confidence in text.lines], ensure_ascii=False)


def picture_text(model_id: Any, lines: Any, folded: Any) -> PictureText:
    """A stored row's text (JSON floats come back as written: the confidences are exact)."""
    return PictureText(lines=tuple((str(line), float(confidence)) for line, confidence in json.loads(lines)),
                       folded=str(folded), model_id=str(model_id))


class SqlTexts(SqlStore[C], ImageTexts):
    """:class:`ImageTexts` in the backend's :attr:`dialect`; the index is a subclass's."""

    #: Stores one text unless its image is gone or read already; parameters from :meth:`_text_params`.
    _ADD_TEXT: ClassVar[str]

    @abstractmethod
    def _text_params(self, image_id: int, text: PictureText) -> tuple[Any, ...]:
        """The parameters of :attr:`_ADD_TEXT` for one text."""

    @abstractmethod
    async def _matching(self, where: str, args: list[Any], folded: str) -> list[int]:
        """The ids, in order, of the images whose text holds ``folded``; ``where`` (with
        ``args``) keeps the collections asked for, on the images as ``i``."""

    def _scan(self, where: str, args: list[Any], folded: str) -> tuple[str, list[Any]]:
        """The query that reads every text of the collections: for what no index answers."""
        return _SCAN.format(where=where, contains=self.dialect.has_text("t.folded")), [*args, folded]

    async def set_texts(self, texts: Sequence[tuple[int, PictureText]]) -> int:
        if not texts:
            return 0
        async with self._transaction() as conn:
            return await self._execute_many(conn, self.dialect.sql(self._ADD_TEXT),
                                            [self._text_params(int(i), text) for i, text in texts])

    async def texts_for(self, ids: Sequence[int]) -> dict[int, PictureText]:
        out: dict[int, PictureText] = {}
        for part in self.dialect.chunks(list(dict.fromkeys(int(i) for i in ids))):
            where, args = self.dialect.member("image_id", part, ints=True)
            for image_id, model_id, lines, folded in await self._fetch(_TEXTS_OF + where, args):
                out[int(image_id)] = picture_text(model_id, lines, folded)
        return out

    async def awaiting_text(self, collection: str | None = None) -> list[ImageRecord]:
        if collection:
            rows = await self._fetch(self.dialect.sql(f"{_AWAITING} AND collection = ? ORDER BY id"), (collection,))
        else:
            rows = await self._fetch(f"{_AWAITING} ORDER BY id")
        return [record(row) for row in rows]

    async def text_search(self, collections: Sequence[str], folded: str) -> list[int]:
        names = list(dict.fromkeys(collections))
        if not names:
            return []
        where, args = self.dialect.member("i.collection", names)
        return await self._matching(where, args, folded)


def _pair_token(folded: str) -> bool:
    """Whether SQLite's ``ascii`` tokenizer keeps ``folded`` as one token, unchanged: no ASCII
    but lowercase letters and digits (it splits at the rest and lowercases capitals)."""
    return all(not ch.isascii() or ch.isdigit() or "a" <= ch <= "z" for ch in folded)


class Fts5Texts(SqlTexts[C]):
    """SQLite's: FTS5 tables of trigrams (``image_texts_fts``) and pairs (``image_texts_pairs``)."""

    _ADD_TEXT = ("INSERT INTO image_texts(image_id, model_id, lines, folded, pairs) SELECT id, ?, ?, ?, ?"
                 " FROM images WHERE id = ? ON CONFLICT (image_id) DO NOTHING")

    def _text_params(self, image_id: int, text: PictureText) -> tuple[Any, ...]:
        # Only the pairs the tokenizer keeps whole: a query of any other pair scans instead.
        kept = " ".join(pair for pair in pairs(text.folded) if _pair_token(pair))
        return text.model_id, lines_json(text), text.folded, kept, image_id

    async def _matching(self, where: str, args: list[Any], folded: str) -> list[int]:
        # A quoted string: FTS5's query syntax takes nothing in it but doubled quotes; the trigram
        # tokenizer (case-sensitive) matches it as a substring, the ascii one a pair as its token.
        if len(folded) >= 3:
            index, match = "image_texts_fts", '"' + folded.replace('"', '""') + '"'
        elif len(folded) == 2 and _pair_token(folded):
            index, match = "image_texts_pairs", f'"{folded}"'
        else:
            index = match = ""
        if index:  # CROSS JOIN keeps the index the outer loop (SQLite does not reorder it): images by id
            query, params = (f"SELECT f.rowid AS image_id FROM {index} f CROSS JOIN images i ON i.id = f.rowid"
                             f" WHERE {index} MATCH ? AND {where}", [match, *args])
        else:
            query, params = self._scan(where, args, folded)
        # One row, not one per hit: thousands of ids come back a row at a time twice as slowly.
        rows = await self._fetch(f"SELECT group_concat(image_id) FROM ({query})", params)
        joined = rows[0][0] if rows else None
        return sorted(int(i) for i in str(joined).split(",")) if joined else []


class GramTexts(SqlTexts[C]):
    """PostgreSQL's: each text's 2- and 3-character substrings in ``grams``, under a GIN index."""

    # FOR KEY SHARE: an image deleted meanwhile is skipped (its row no longer passes), not
    # reported as a foreign key violation that would fail the whole batch.
    _ADD_TEXT = ("INSERT INTO image_texts(image_id, model_id, lines, folded, grams) SELECT id, ?, ?, ?, ?::text[]"
                 " FROM images WHERE id = ? FOR KEY SHARE ON CONFLICT (image_id) DO NOTHING")

    def _text_params(self, image_id: int, text: PictureText) -> tuple[Any, ...]:
        return text.model_id, lines_json(text), text.folded, grams(text.folded), image_id

    async def _matching(self, where: str, args: list[Any], folded: str) -> list[int]:
        if len(folded) < 2:
            query, params = self._scan(where, args, folded)
        else:
            # Two characters are one gram, exact; more must have all their trigrams, and the
            # substring itself (the trigrams may be there in another order).
            if len(folded) == 2:
                query, params = _GRAMS.format(check="", where=where), [[folded], *args]
            else:
                query = _GRAMS.format(check=" AND position(%s in folded) > 0", where=where)
                params = [trigrams(folded), folded, *args]
        async with self._transaction() as conn:
            # The planner costs a row's array test as one operator: a gram in a fifth of the
            # texts or more made it read the whole table (200 ms at 100,000 texts), not the
            # index (30 ms). Off for this query only.
            await self._execute(conn, "SET LOCAL enable_seqscan = off")
            rows = await self._fetch(f"{query} ORDER BY 1", params, conn=conn)
        return [int(row[0]) for row in rows]
