"""Reply texts composed to fit every platform: long labels and descriptions give way first.

Platforms cut what is too long from the end, which would take the score, the ``#id`` and the
match count with it; composing to the tightest budget keeps those whole on every platform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from core.chat.catalogue import HelpStyle
from core.records import ImageRecord, PictureText
from core.search.words import SearchResult
from core.text import clean_text, plural, shorten

CAPTION_BUDGET = 1024  # Telegram's photo captions: the tightest of the platforms' limits
TEXT_BUDGET = 4096  # Telegram's messages and Discord's embed descriptions
_STUB = 24  # the least of a description worth showing once it has to be cut
_LIST_LABEL = 60
_LIST_DESCRIPTION = 90


def fit_pair(label: str, description: str, room: int) -> tuple[str, str]:
    """Label and description within ``room`` characters (with the line between them).

    The description is shortened first, down to a stub; only then the label.
    """
    if not description:
        return shorten(label, room), ""
    if len(label) + 1 + len(description) <= room:
        return label, description
    if room - 1 - len(label) >= _STUB:
        return label, shorten(description, room - 1 - len(label))
    label = shorten(label, max(1, room - 1 - _STUB))
    return label, shorten(description, room - 1 - len(label))


WEAK_MATCH = "Weak match: nothing here looks much like this."
NO_MATCH = "Nothing in this gallery looks like this. The closest anyway:"


# The matched words a result's caption quotes, at most: a line on every platform.
MATCHED_TEXT = 80


def moment_text(seconds: float) -> str:
    """A time into a video as players show it: ``0:03``, ``12:40``, ``1:02:03`` from an hour on."""
    whole = int(seconds) if math.isfinite(seconds) and seconds > 0 else 0
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def result_caption(result: SearchResult, index: int, total: int, *, verdict: str = "good") -> str:
    """The caption of one match: a weak or no-match warning (``verdict``), label, description,
    the words in the picture or the moment of a video that matched, then score and ``#id``."""
    head = [NO_MATCH] if verdict == "none" else [WEAK_MATCH] if verdict == "weak" else []
    tail = [f"Score: {result.score:.2f} \u00b7 #{result.id} \u00b7 match {index + 1} of {total}"]
    if result.moment is not None:
        tail.insert(0, f"Matched at {moment_text(result.moment)}.")
    if result.matched_text:
        # The words in the picture that matched (already cut to a line by the searcher).
        tail.insert(0, f"Text in the picture: \u201c{shorten(clean_text(result.matched_text), MATCHED_TEXT)}\u201d")
    room = CAPTION_BUDGET - len("\n".join([*head, *tail])) - 1
    label = clean_text(result.label) or "(no label)"
    label, description = fit_pair(label, clean_text(result.description, multiline=True), room)
    return "\n".join([*head, label, *([description] if description else []), *tail])


def read_text(text: PictureText) -> str:
    """``/read``'s answer: the text in a photo, line by line, within one message."""
    if not text.lines:
        return "I can't find any text in this picture."
    head = "The text in this picture:"
    lines = [clean_text(line) for line, _ in text.lines]
    body = "\n".join(line for line in lines if line)
    return f"{head}\n{shorten(body, TEXT_BUDGET - len(head) - 1)}"


def added_text(record: ImageRecord, verb: str) -> str:
    head, tail = f"{verb} #{record.id} \u201c", " to this chat's gallery."
    room = TEXT_BUDGET - len(head + tail) - 4  # the closing quote and the parentheses
    label, description = fit_pair(clean_text(record.label), clean_text(record.description), room)
    return head + label + "\u201d" + (f" ({description})" if description else "") + tail


def list_text(records: Sequence[ImageRecord], total: int) -> str:
    """The newest images, one short line each, within one message."""
    lines = [f"This chat's gallery ({plural(total, 'image')}, newest first):"]
    for n, r in enumerate(records):
        label = shorten(clean_text(r.label), _LIST_LABEL)
        description = shorten(clean_text(r.description), _LIST_DESCRIPTION)
        line = f"#{r.id} {label}" + (f" \u2014 {description}" if description else "")
        more = f"\u2026and {total - n} more."
        if len("\n".join([*lines, line, more])) > TEXT_BUDGET:
            lines.append(more)
            return "\n".join(lines)
        lines.append(line)
    if total > len(records):
        lines.append(f"\u2026and {total - len(records)} more.")
    return "\n".join(lines)


def label_or_id(label: str, image_id: int, limit: int = 100) -> str:
    """A short name for an image in a one-line answer."""
    return shorten(clean_text(label), limit) or f"#{image_id}"


def empty_gallery_text(style: HelpStyle) -> str:
    """Nothing to search yet, and how to add something, the way the asking front end does it."""
    return f"This gallery has no images yet. {style.how_to_add()}"


def expired_text(style: HelpStyle) -> str:
    return f"These results have expired; {style.send_photo()} or /find again."
