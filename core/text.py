"""Labels and descriptions as they may be stored and shown: bounded, clean, shortened to fit."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from core.errors import InputError

ELLIPSIS = "\u2026"
# Marks that reorder the text around them: in a label they can make "#12 cat" read as something
# else. Embedding, override and isolate controls, plus the invisible direction marks.
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"))


def clean_text(text: str, *, multiline: bool = False) -> str:
    """``text`` without control characters or bidi controls; runs of spaces become one.

    A description may keep its line breaks (``multiline``); a label is one line.
    """
    kept = []
    for ch in text.translate(_BIDI_CONTROLS):
        if ch == "\n" and multiline:
            kept.append(ch)
        elif ch in "\t\r\n\v\f":
            kept.append(" ")
        elif unicodedata.category(ch) != "Cc":
            kept.append(ch)
    lines = ("".join(kept)).split("\n")
    return "\n".join(" ".join(line.split()) for line in lines).strip()


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` with its noun: "1 image", "2 images" (``nouns`` where adding "s" is wrong)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return ELLIPSIS[:limit]
    return text[: limit - 1].rstrip() + ELLIPSIS


@dataclass(frozen=True)
class TextLimits:
    """How long a label and a description may be (``CLIPBOT_MAX_LABEL_CHARS`` and friends)."""

    max_label: int = 200
    max_description: int = 1000

    def label(self, text: str) -> str:
        """The cleaned label; :class:`InputError` when it is too long."""
        return self._checked(clean_text(text), self.max_label, "A label")

    def description(self, text: str) -> str:
        """The cleaned description; :class:`InputError` when it is too long."""
        return self._checked(clean_text(text, multiline=True), self.max_description, "A description")

    @staticmethod
    def _checked(text: str, limit: int, what: str) -> str:
        if len(text) > limit:
            raise InputError(f"{what} can be at most {limit} characters; this one has {len(text)}. Shorten it.")
        return text
