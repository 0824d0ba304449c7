"""User text on the page is text: labels, descriptions, captions, file names and names never become markup.

Gradio renders a Markdown component's value, and a chat message's text, as (sanitised) HTML:
a label such as ``<form>`` or ``[pay here](https://...)`` would be a live form or link in every
visitor's page. Everything a user or an indexed folder wrote passes through one of these first.
Nothing here imports Gradio.
"""

from __future__ import annotations

import html
import string

_HTML = {"<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&#x27;"}
# Every other ASCII punctuation mark may be backslash-escaped in Markdown: no emphasis, heading,
# list, table, link, image, code or autolink ("http\://", "www\.") can start from one.
_MARKDOWN = {c: "\\" + c for c in string.punctuation if c not in _HTML}


def escape_markdown(text: str) -> str:
    """``text`` for a Markdown component: shown exactly as written, never as markup."""
    return "".join(_HTML.get(c) or _MARKDOWN.get(c) or c for c in text)


def escape_html(text: str) -> str:
    """``text`` for element content that is rendered as HTML (a chat message): shown as written."""
    return html.escape(text, quote=False)  # element content: only & < > matter
