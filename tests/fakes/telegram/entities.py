"""The fake Bot API's entity parsers, after tdlib's: HTML, MarkdownV2 and legacy Markdown.

Each returns the plain text Telegram stores and raises ``EntityError`` with tdlib's wording where the
markup does not parse. HTML: only Telegram's tags (b strong i em u ins s strike del
span[class=tg-spoiler] tg-spoiler a code pre blockquote tg-emoji), balanced and properly nested; a
bare ``<`` is refused, a bare ``&`` is kept (Telegram is lenient there); the entities ``&lt; &gt;
&amp; &quot;`` and numeric ones are decoded. MarkdownV2: every reserved character (underscore,
asterisk, square and round brackets, tilde, backtick, ``>#+-=|{}.!``) outside an entity's markup
must be escaped with a backslash; entities must be closed; inside code and pre only the backtick and
the backslash need escaping; inside a link's ``(...)`` only ``)`` and the backslash; ``>`` is a
blockquote only at the start of a line. Markdown (legacy): bold, italic, code and pre entities must
be closed and ``[text](url)`` complete.
"""

from __future__ import annotations

import html
import re


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


class EntityError(ValueError):
    pass


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


_HTML_TAGS = frozenset({"a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji",
                        "span", "pre", "code", "blockquote"})
_HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_HTML_ATTR = re.compile(r"""\s*([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")


def parse_html(text: str) -> str:
    """Telegram's HTML subset; raises EntityError with tdlib's wording."""
    out: list[str] = []
    open_tags: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "&":
            m = _HTML_ENTITY.match(text, i)
            if m:
                out.append(html.unescape(m.group(0)))
                i = m.end()
            else:  # an unknown entity is kept as it stands
                out.append(c)
                i += 1
            continue
        if c != "<":
            out.append(c)
            i += 1
            continue
        start = i
        i += 1
        if i < n and text[i] == "/":  # end tag
            end = text.find(">", i)
            if end < 0:
                raise EntityError(f"Unclosed end tag at byte offset {_byte_offset(text, start)}")
            name = text[i + 1:end].strip().lower()
            if not open_tags:
                raise EntityError(f'Unexpected end tag at byte offset {_byte_offset(text, start)}')
            if name != open_tags[-1]:
                raise EntityError(f'Unmatched end tag at byte offset {_byte_offset(text, start)}, expected '
                                  f'"</{open_tags[-1]}>", found "</{name}>"')
            open_tags.pop()
            i = end + 1
            continue
        m = re.match(r"[a-zA-Z0-9-]*", text[i:])
        name = m.group(0).lower() if m else ""
        if name not in _HTML_TAGS:
            raise EntityError(f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, start)}')
        i += len(name)
        end = text.find(">", i)
        if end < 0:
            raise EntityError(f"Unclosed start tag at byte offset {_byte_offset(text, start)}")
        attributes = {a.group(1).lower(): a.group(2) or a.group(3) or a.group(4) or ""
                      for a in _HTML_ATTR.finditer(text[i:end]) if a.group(1)}
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise EntityError('Tag "span" must have class "tg-spoiler" at byte offset '
                              f"{_byte_offset(text, start)}")
        if name == "tg-emoji" and not attributes.get("emoji-id"):
            raise EntityError(f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset '
                              f"{_byte_offset(text, start)}")
        open_tags.append(name)
        i = end + 1
    if open_tags:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"')
    return "".join(out)


_MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"
_MDV2_NAMES = {"*": "Bold", "_": "Italic", "__": "Underline", "~": "Strikethrough", "||": "Spoiler", "`": "Code",
               "```": "Pre", "[": "TextUrl", "![": "CustomEmoji"}


def parse_markdown_v2(text: str) -> str:
    """Telegram's MarkdownV2; raises EntityError with tdlib's wording."""
    out: list[str] = []
    stack: list[tuple[str, int]] = []  # (markup, byte offset where it began)
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            out.append(text[i + 1])
            i += 2
            at_line_start = False
            continue
        top = stack[-1][0] if stack else ""
        reserved = "`" if top in ("`", "```") else _MDV2_RESERVED
        if c not in reserved:
            out.append(c)
            at_line_start = c == "\n"
            i += 1
            continue
        # The end of the innermost entity?
        ends = {"*": c == "*", "_": c == "_" and text[i:i + 2] != "__", "__": text[i:i + 2] == "__",
                "~": c == "~", "||": text[i:i + 2] == "||", "`": c == "`", "```": text[i:i + 3] == "```",
                "[": c == "]", "![": c == "]"}
        if top and ends[top]:
            stack.pop()
            i += len(top) if top not in ("[", "![") else 1
            if top in ("[", "!["):  # the URL: ( ... ) with only ')' and '\' escaped
                if i < n and text[i] == "(":
                    j = i + 1
                    while j < n and text[j] != ")":
                        j += 2 if text[j] == "\\" else 1
                    if j >= n:
                        raise EntityError(f"Can't find end of a URL at byte offset {_byte_offset(text, i)}")
                    i = j + 1
                elif top == "![":
                    raise EntityError(f"Custom emoji entity must contain a tg://emoji URL at byte offset "
                                      f"{_byte_offset(text, i)}")
            at_line_start = False
            continue
        offset = _byte_offset(text, i)
        if text[i:i + 3] == "```":
            markup = "```"
            newline = text.find("\n", i + 3)  # an optional language on the first line
            i = i + 3 if newline < 0 or " " in text[i + 3:newline] else newline + 1
        elif text[i:i + 2] in ("__", "||", "!["):
            markup = text[i:i + 2]
            i += 2
        elif c in "*_~`[":
            markup = c
            i += 1
        elif c == ">" and at_line_start:  # a blockquote line
            i += 1
            continue
        else:
            raise EntityError(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        if any(m == markup for m, _ in stack):
            raise EntityError(f"Nested {_MDV2_NAMES[markup]} entities at byte offset {offset}")
        stack.append((markup, offset))
        at_line_start = False
    if stack:
        markup, offset = stack[-1]
        raise EntityError(f"Can't find end of {_MDV2_NAMES[markup]} entity at byte offset {offset}")
    return "".join(out)


def parse_markdown(text: str) -> str:
    """Telegram's legacy Markdown; raises EntityError with tdlib's wording."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.append(text[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            out.append(c)
            i += 1
            continue
        offset = _byte_offset(text, i)
        if text[i:i + 3] == "```":
            end = text.find("```", i + 3)
            if end < 0:
                raise EntityError(f"Can't find end of the entity starting at byte offset {offset}")
            out.append(text[i + 3:end])
            i = end + 3
        elif c == "[":
            close = text.find("]", i + 1)
            if close < 0 or text[close + 1:close + 2] != "(" or text.find(")", close) < 0:
                raise EntityError(f"Can't find end of the entity starting at byte offset {offset}")
            out.append(text[i + 1:close])
            i = text.find(")", close) + 1
        else:
            end = text.find(c, i + 1)
            if end < 0:
                raise EntityError(f"Can't find end of the entity starting at byte offset {offset}")
            out.append(text[i + 1:end])
            i = end + 1
    return "".join(out)


PARSERS = {"html": parse_html, "markdownv2": parse_markdown_v2, "markdown": parse_markdown}
