"""Matching what a user types against text read from pictures (OCR), whatever the spacing.

The reader reads characters well but often drops the spaces between English words
("ISTHISAPIGEON"), and users type without a meme's capitals or a sign's accents. So both sides are
*folded* (:func:`fold`): case, accents, full-width forms, spaces and punctuation are taken away,
and matching is a substring test on what is left. CJK text, which has no spaces, folds to itself.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

ELLIPSIS = "…"
_SPACES = re.compile(r"\s+")


def _is_accent(ch: str) -> bool:
    """A combining mark from the diacritic blocks (acute, diaeresis, cedilla…). Other scripts' marks,
    such as kana voicing or Devanagari vowel signs, are part of their letters and are kept."""
    code = ord(ch)
    return (0x0300 <= code <= 0x036F or 0x1AB0 <= code <= 0x1AFF or 0x1DC0 <= code <= 0x1DFF
            or 0x20D0 <= code <= 0x20FF or 0xFE20 <= code <= 0xFE2F)


def _kept(ch: str) -> bool:
    # Letters, digits and the marks still attached to them; spaces, punctuation, symbols and
    # control characters go (OCR confuses them, and users rarely type them).
    return unicodedata.category(ch)[0] in "LNM"


def fold(text: str) -> str:
    """``text`` reduced to what matching compares: casefolded, accents and full-width forms
    undone, every space, punctuation mark and symbol removed.

    ``fold("Is this a pigeon?") == fold("ISTHISAPIGEON") == "isthisapigeon"``,
    ``fold("Café") == "cafe"``, ``fold("紧急 出口") == "紧急出口"``, and full-width "ROOM 4B"
    (U+FF32 U+FF2F…) folds to ``"room4b"``.
    """
    # NFKC first: full-width and other compatibility forms become plain letters and digits.
    text = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    bare = unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not _is_accent(ch)))
    return "".join(ch for ch in bare if _kept(ch))


def _folded_lines(lines: Sequence[str]) -> tuple[str, list[int]]:
    """The lines folded and joined with nothing (a caption's phrase may run over a line break),
    and where each line starts in that string (with the end as a last entry)."""
    starts, pieces, at = [], [], 0
    for line in lines:
        piece = fold(line)
        starts.append(at)
        pieces.append(piece)
        at += len(piece)
    starts.append(at)
    return "".join(pieces), starts


def phrase_in(query: str, text: str) -> bool:
    """Whether ``query`` appears in ``text``, compared folded; an empty query matches nothing."""
    needle = fold(query)
    return bool(needle) and needle in fold(text)


def match_score(query_words: Sequence[str], lines: Sequence[str]) -> float:
    """How well a picture's text (``lines``) matches a query's words, in [0, 1], for ranking.

    1.0 when the words, folded and run together, appear in order in the folded text; else the
    share of the query's letters whose words appear anywhere in it, each word weighed by its
    folded length (so a stray "a" or "is", found almost everywhere, counts for little).
    0.0 for a query with nothing left once folded.
    """
    words = [w for w in (fold(word) for word in query_words) if w]
    if not words:
        return 0.0
    haystack, _ = _folded_lines(lines)
    if "".join(words) in haystack:
        return 1.0
    found = sum(len(w) for w in words if w in haystack)
    return found / sum(len(w) for w in words)


def _fold_map(text: str) -> tuple[str, list[int]]:
    """``fold(text)`` character by character, and for each folded character the index in ``text``
    it came from. Approximate where folding joins characters (rare), which only moves a snippet."""
    folded, origins = [], []
    for i, ch in enumerate(text):
        piece = fold(ch)
        folded.append(piece)
        origins.extend([i] * len(piece))
    return "".join(folded), origins


def _matched_lines(query: str, lines: Sequence[str]) -> list[int]:
    """Indices of the lines that hold the folded query, where it runs over several lines too;
    failing that, those holding any of its words."""
    haystack, starts = _folded_lines(lines)
    needle = fold(query)
    if needle and needle in haystack:
        begin = haystack.index(needle)
        end = begin + len(needle)
        return [i for i in range(len(lines)) if starts[i] < end and starts[i + 1] > begin]
    words = [w for w in (fold(word) for word in query.split()) if w]
    return [i for i, line in enumerate(lines) if any(w in fold(line) for w in words)]


def matched_snippet(query: str, lines: Sequence[str], limit: int = 80) -> str:
    """The line or lines of a picture's text that matched ``query``, joined by spaces, for a caption.

    Longer than ``limit`` characters, it is cut to a window around the match, with ``…`` where
    text was left out (the result is never longer than ``limit``). ``""`` when nothing matched.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, not {limit}")
    chosen = _matched_lines(query, lines)
    snippet = _SPACES.sub(" ", " ".join(lines[i].strip() for i in chosen)).strip()
    if len(snippet) <= limit:
        return snippet
    if limit <= 2:
        return snippet[:limit]
    # Where the match begins in the snippet, so the window shows it.
    folded, origins = _fold_map(snippet)
    words = [w for w in (fold(word) for word in query.split()) if w]
    first = next((folded.find(w) for w in [fold(query), *words] if w and w in folded), 0)
    at = origins[first] if origins else 0
    # A little of what comes before the match, then as much as fits.
    start = at - limit // 4
    if start <= 0:
        return snippet[: limit - 1].rstrip() + ELLIPSIS
    if start >= len(snippet) - (limit - 1):  # the window reaches the end: one ellipsis, in front
        return ELLIPSIS + snippet[len(snippet) - (limit - 1):].lstrip()
    return ELLIPSIS + snippet[start:start + limit - 2].strip() + ELLIPSIS
