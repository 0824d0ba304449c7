"""The /find query language, and the words people reply to a result with.

``cat + beach`` looks for both, ``cat -dog`` for cats and not dogs, ``"red hat"`` keeps only
images whose label or description holds those words in that order, ``#12`` stands for gallery
image 12 and ``color:red`` keeps images with red among their dominant colours. A term runs until
the next ``+`` or ``-``, so ``red car -blue sky`` is "red car" minus "blue sky".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import InputError
from core.search.words import split_color_filter, words_of

FIND_USAGE = ('Usage: /find cat + beach (both), /find cat -dog (cats, no dogs), /find "red hat" (exact words), '
              "/find #12 + night (image 12 at night), /find car color:red.")
REFINE_USAGE = 'Reply to a result with words to refine it, for example "at night", "but red" or "-people".'
_REF = re.compile(r"#(\d{1,18})")
# How people say "not" when they refine: "but not blurry", "without people", "no text".
_NEGATIONS = ("but not ", "and not ", "not ", "without ", "no ", "minus ")
_FILLERS = ("but ", "and ", "with ", "plus ", "more ", "only ")


class QuerySyntaxError(InputError):
    """A query that does not parse (a lone ``+`` or ``-``, an unclosed quote); says how to write it."""


@dataclass(frozen=True)
class Term:
    """One ``+`` or ``-`` part of a query: its words, the image numbers in it and whether it was quoted."""

    text: str = ""
    refs: tuple[int, ...] = ()
    quoted: bool = False


@dataclass(frozen=True)
class ParsedQuery:
    """What a query asks for. ``plus``/``minus`` are texts to encode; ``phrases`` must appear."""

    plus: tuple[str, ...] = ()
    minus: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    refs: tuple[int, ...] = ()
    minus_refs: tuple[int, ...] = ()
    colors: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.plus or self.refs or self.colors)

    @property
    def words(self) -> str:
        """The words a label or description should hold to rank first (every positive text)."""
        return " ".join(self.plus)

    def describe(self) -> str:
        """The query written back in its canonical form, for titles: ``cat + beach -dog``."""
        quoted = list(self.phrases)  # each phrase once, in order: an unquoted copy of it stays unquoted
        texts = []
        for p in self.plus:
            if quoted and p == quoted[0]:
                texts.append(f'"{quoted.pop(0)}"')
            else:
                texts.append(p)
        parts = [*(f"#{r}" for r in self.refs), *texts]
        text = " + ".join(parts)
        text += "".join(f" -{m}" for m in [*(f"#{r}" for r in self.minus_refs), *self.minus])
        text += "".join(f" color:{c}" for c in self.colors)
        return text.strip()


def parse_query(text: str) -> ParsedQuery:
    """Parse a /find query; :class:`QuerySyntaxError` with the usage line when it is malformed."""
    rest, colors = split_color_filter(text)
    if rest.count('"') % 2:
        raise QuerySyntaxError(f"A quote is not closed. {FIND_USAGE}")
    plus: list[str] = []
    minus: list[str] = []
    phrases: list[str] = []
    refs: list[int] = []
    minus_refs: list[int] = []
    for sign, term in _terms(rest):
        words = " ".join(words_of(term.text)) and " ".join(term.text.split())
        if sign > 0:
            refs.extend(term.refs)
            if words:
                plus.append(words)
                if term.quoted:
                    phrases.append(words)
        else:
            minus_refs.extend(term.refs)
            if words:
                minus.append(words)
    parsed = ParsedQuery(tuple(plus), tuple(minus), tuple(phrases), tuple(dict.fromkeys(refs)),
                         tuple(dict.fromkeys(minus_refs)), tuple(colors))
    if parsed.empty:
        if parsed.minus or parsed.minus_refs:
            raise QuerySyntaxError(f"Say what to look for as well as what to leave out. {FIND_USAGE}")
        raise QuerySyntaxError(f"Tell me what to look for. {FIND_USAGE}")
    return parsed


def _terms(text: str) -> list[tuple[int, Term]]:
    """``text`` split into signed terms; an empty term (``+`` alone, ``cat +``, ``- dog``) is an error."""
    terms: list[tuple[int, Term]] = []
    sign, quoted = 1, False
    words: list[str] = []
    refs: list[int] = []
    started = False  # an operator was written, so a term must follow

    def close() -> None:
        nonlocal words, refs, quoted, started
        if words or refs:
            terms.append((sign, Term(" ".join(words), tuple(refs), quoted)))
        elif started:
            raise QuerySyntaxError(f"Put words (or an image #number) after each + and -. {FIND_USAGE}")
        words, refs, quoted, started = [], [], False, False

    for token in _tokens(text):
        if token[0] in "+-":  # "+", "-", or one glued to its term: "-dog", "+#12"
            close()
            sign, started, token = (1 if token[0] == "+" else -1), True, token[1:]
            if token[:1] in ("+", "-"):  # "++", "--dog": two operators and no term between them
                raise QuerySyntaxError(f"Put words (or an image #number) after each + and -. {FIND_USAGE}")
            if not token:
                continue
        if token.startswith('"'):
            if words or refs:  # a quoted phrase is a term of its own
                close()
            terms.append((sign, Term(token.strip('"'), (), True)))
            sign, started = 1, False
            continue
        ref = _REF.fullmatch(token)
        if ref:
            refs.append(int(ref.group(1)))
        else:
            words.append(token)
    close()
    return terms


def _tokens(text: str) -> list[str]:
    """Whitespace-separated tokens, a quoted phrase (with a sign before it) kept as one token."""
    tokens: list[str] = []
    for match in re.finditer(r'[+-]?"[^"]*"|\S+', text):
        token = match.group(0)
        if token.startswith(('+"', '-"')):
            tokens.extend([token[0], token[1:]])
        else:
            tokens.append(token)
    return tokens


@dataclass(frozen=True)
class Refinement:
    """What a reply to a result adds to it (``plus``) and takes away (``minus``)."""

    plus: tuple[str, ...] = ()
    minus: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.plus or self.minus)

    def describe(self) -> str:
        return " ".join([*(f"+{p}" if n else p for n, p in enumerate(self.plus)), *(f"-{m}" for m in self.minus)])


def parse_refinement(text: str) -> Refinement:
    """A reply's words: "at night", "but red", "-people", "but not blurry", "cat + beach -dog".

    "but", "and", "with" in front are dropped; "not", "without", "no" in front make the words a
    subtraction. Empty text gives an empty refinement; malformed operators a :class:`QuerySyntaxError`.
    """
    text = " ".join(text.split())
    lowered = text.casefold() + " "  # a lone "but" or "but not" is a filler too, not a word to search
    for negation in _NEGATIONS:
        for filler in ("", *_FILLERS):
            if lowered.startswith(filler + negation):
                rest = text[len(filler + negation):].strip()
                return Refinement(minus=(rest,)) if words_of(rest) else Refinement()
    for filler in _FILLERS:
        if lowered.startswith(filler):
            text = text[len(filler):].strip()
            break
    if not words_of(text) and not re.search(r"[+-]", text):
        return Refinement()
    plus: list[str] = []
    minus: list[str] = []
    try:
        terms = _terms(text)
    except QuerySyntaxError:
        raise QuerySyntaxError(REFINE_USAGE) from None
    for sign, term in terms:
        words = " ".join(term.text.split())
        if words:
            (plus if sign > 0 else minus).append(words)
    return Refinement(tuple(plus), tuple(minus))
