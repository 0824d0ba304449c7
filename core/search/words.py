"""Ranking rules shared by the engine and the seed functions: word matching and hybrid order."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from core.media.colors import COLOR_FAMILIES, parse_color_word
from core.storage.vector_index import top_k_order

# Words that say nothing about what is in a picture; "a photo of a cat" should look for "cat".
STOPWORDS: frozenset[str] = frozenset(
    [
        "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "image", "images", "in", "is", "it",
        "of", "on", "or", "photo", "photos", "picture", "pictures", "show", "some", "the", "this", "to", "with",
    ]
)
# Underscores split words too: folder labels such as "grace_hopper" should match "grace".
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_COLOR_FILTER = re.compile(r"(?<!\S)colou?r:(\S*)", re.IGNORECASE)


@dataclass(frozen=True)
class SearchResult:
    """One hit: what a chat reply or the CLI shows."""

    id: int
    label: str
    description: str
    path: str | None
    score: float
    collection: str = ""
    text_match: bool = False
    source_path: str | None = None  # the operator's own file it was indexed from, when there is one
    moment: float | None = None  # a video query: seconds into it of the frame that matched best
    matched_text: str | None = None  # the words in the picture that matched a /find query (OCR)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id, "label": self.label, "description": self.description, "path": self.path,
            "source_path": self.source_path, "score": round(float(self.score), 6),
        }
        if self.moment is not None:
            out["moment"] = round(float(self.moment), 3)
        if self.matched_text is not None:
            out["matched_text"] = self.matched_text
        return out


def shown_path(source_path: str | None, stored: str | None) -> str | None:
    """The path people recognise: their own file while it is there, else the stored copy
    (``media/91/91c3...webp`` means nothing to them). Blocking: a stat."""
    if source_path and os.path.exists(source_path):
        return source_path
    return stored or source_path


def words_of(text: str) -> list[str]:
    """Casefolded word tokens of ``text``, in order."""
    return _WORD.findall(text.casefold())


def query_words(query: str) -> list[str]:
    """The words of a query that must appear in a label or description (stopwords dropped)."""
    return list(dict.fromkeys(w for w in words_of(query) if w not in STOPWORDS))


def _variants(word: str) -> set[str]:
    # Light plural folding so "cats" finds "cat" and "boxes" finds "box", without stemming "cat" to "catalog".
    forms = {word, word + "s", word + "es"}
    if word.endswith("es") and len(word) > 3:
        forms.add(word[:-2])
    if word.endswith("s") and len(word) > 2:
        forms.add(word[:-1])
    return forms


def word_stem(word: str) -> str:
    """The shortest form a word may match as; every accepted form contains it (a cheap prefilter)."""
    return min(_variants(word), key=len)


def matches_words(words: list[str], label: str, description: str) -> bool:
    """Whether every query word appears as a whole word in the label or description."""
    if not words:
        return False
    tokens = set(words_of(f"{label} {description}"))
    return all(_variants(w) & tokens for w in words)


def hybrid_order(scores: np.ndarray, text_match: np.ndarray, k: int) -> np.ndarray:
    """Indices of the top ``k``: text matches first, each tier ordered by CLIP score.

    ``text_match`` is a boolean mask over ``scores``; one matrix-wide pass per tier, no row loop.
    """
    matched = np.flatnonzero(text_match)
    first: np.ndarray = matched[top_k_order(scores[matched], k)]
    if len(first) >= k:
        return first
    rest = np.flatnonzero(~text_match)
    return np.concatenate([first, rest[top_k_order(scores[rest], k - len(first))]])


def split_color_filter(query: str) -> tuple[str, list[str]]:
    """``"car color:red"`` becomes ``("car", ["red"])``; an unknown colour is an :class:`InputError`."""
    families: list[str] = []
    for match in _COLOR_FILTER.finditer(query):
        family = parse_color_word(match.group(1))
        if family is None:
            raise InputError(
                f"I don't know the colour {match.group(1)!r}; try one of: {', '.join(COLOR_FAMILIES)}."
            )
        if family not in families:
            families.append(family)
    return " ".join(_COLOR_FILTER.sub(" ", query).split()), families
