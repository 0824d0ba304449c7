"""Image paths as operators type, paste and drag them into a terminal.

Terminals drop a dragged file in as ``'/tmp/my photo.jpg'``, ``/tmp/my\\ photo.jpg`` or
``file:///tmp/my%20photo.jpg``; operators also type plain paths with spaces in them. A photo
argument is tried as written first, then as its first shell word.
"""

from __future__ import annotations

import io
import shlex
import urllib.parse
import urllib.request
from pathlib import Path

from core.media import IMAGE_SUFFIXES

# How a path starts when it can be nothing else; "./" and ".\\" as typed on Windows too.
_PATH_STARTS = ("/", "~", "./", "../", ".\\", "..\\", "file:")


def first_word(text: str, separators: str = "") -> tuple[str, str] | None:
    """The first word of ``text`` as a POSIX shell reads it (quotes, backslashes) and the text after it.

    ``separators`` end an unquoted word as whitespace does: the ``|`` between a path and its label.
    ``None`` when there is no word or a quote is left open.
    """
    stream = io.StringIO(text)
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # "#" is part of file names, not a comment
    lexer.whitespace += separators
    try:
        word = lexer.get_token()
    except ValueError:
        return None
    if word is None:
        return None
    # shlex reads one character past the word (the space or separator that ended it), no further.
    return word, text[stream.tell():]


def to_path(written: str) -> Path:
    """A typed path or a ``file://`` URL (percent-encoded, as file managers write them) as a path."""
    if written[:7].lower() == "file://":
        return Path(urllib.request.url2pathname(urllib.parse.urlsplit(written).path))
    return Path(written).expanduser()


def photo_arguments(text: str, *, labelled: bool) -> list[tuple[Path, str]]:
    """The ways to read an image path off the start of ``text``, each with the text after the path.

    First the text as written (up to the ``|`` of a label): a path pasted with its spaces unescaped.
    Then its first shell word: a quoted, escaped or ``file://`` path, with whatever follows it (for
    ``/add``, the ``label | description``; the ``|`` before the label may be left out).
    """
    text = text.strip()
    ways: list[tuple[Path, str]] = []
    written, _, after = text.partition("|") if labelled else (text, "", "")
    if written.strip():
        ways.append((to_path(written.strip()), after))
    word = first_word(text, "|" if labelled else "")
    if word is not None:
        path, rest = word
        rest = rest.strip()
        ways.append((to_path(path), rest.removeprefix("|") if labelled else rest))
    return ways


def written_path(text: str, *, labelled: bool = False) -> str:
    """The path ``text`` names, for telling the operator it is not there: unquoted when it is one word.

    ``labelled``: the path ends at the ``|`` before a label.
    """
    text = text.partition("|")[0] if labelled else text
    word = first_word(text)
    return word[0] if word is not None and not word[1].strip() else text.strip()


def looks_like_path(text: str) -> bool:
    """Whether a line that names no file was still meant as a path, rather than words to search for.

    It starts like a path, or is a single word ending in an image suffix ("cat.jpg").
    """
    name = written_path(text)
    if name.lower().startswith(_PATH_STARTS) or (len(name) > 2 and name[1] == ":" and name[2] in "\\/"):
        return True
    return not any(ch.isspace() for ch in name) and Path(name).suffix.lower() in IMAGE_SUFFIXES
