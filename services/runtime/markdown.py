"""Markdown that representatives write (progress reports, comments), made safe for peers' eyes.

Two layers, each enough on its own against script injection:

1. markdown-it-py, CommonMark preset with raw HTML *disabled*: ``<script>`` and friends come out
   as visible, escaped text; its link validator already refuses ``javascript:``, ``vbscript:``,
   ``file:`` and ``data:`` destinations. Tables and ``~~strikethrough~~`` (GFM) are enabled,
   images are disabled (``![alt](url)`` stays a plain link: attachments are links, and emails
   load no remote pictures), a single newline is a line break (people type reports like
   letters, not like source code), and headings are demoted by two levels (``#`` -> ``h3``,
   ``##`` -> ``h4``, ... capped at ``h6``) because the page or email around a report already
   owns ``h1``/``h2``.
2. nh3 (Ammonia) on the HTML that comes out: only the tags in :data:`ALLOWED_TAGS` and the
   attributes in :data:`ALLOWED_ATTRIBUTES` survive (no ``style``, no ``class``, no event
   handlers, no images, no iframes), ``href`` only with ``http``, ``https`` or ``mailto``
   (relative and fragment links are dropped: they point nowhere in an email), and every link
   gets ``rel="nofollow noopener noreferrer"``.

:func:`render` gives that HTML (:func:`sanitize` is layer 2 alone); :func:`plain` gives the
bare text for subjects, previews and search. :func:`plain` returns *text*, not HTML: whoever
puts it into HTML escapes it (Jinja's autoescape does).
"""

from __future__ import annotations

import functools
import re
import unicodedata

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

__all__ = ["ALLOWED_ATTRIBUTES", "ALLOWED_TAGS", "ALLOWED_URL_SCHEMES", "LINK_REL", "plain", "render", "sanitize"]

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "p",
        "br",
        "strong",
        "em",
        "del",
        "code",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "li",
        "h3",
        "h4",
        "h5",
        "h6",
        "a",
        "hr",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
    }
)
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "title"}),
    "ol": frozenset({"start"}),
}
ALLOWED_URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})
LINK_REL = "nofollow noopener noreferrer"

_HEADING_SHIFT = 2
_ELLIPSIS = "\u2026"


def _demote_headings_and_mark_deletions(state: StateCore) -> None:
    """Core rule: ``#`` -> ``h3`` ... (capped at ``h6``); ``~~x~~`` -> ``<del>`` instead of ``<s>``."""
    for token in state.tokens:
        if token.type in ("heading_open", "heading_close"):
            level = int(token.tag[1:]) + _HEADING_SHIFT
            token.tag = f"h{min(level, 6)}"
        elif token.type == "inline" and token.children:
            for child in token.children:
                if child.type in ("s_open", "s_close"):
                    child.tag = "del"


def _build() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.disable(["image"])
    md.core.ruler.push("convoy_tags", _demote_headings_and_mark_deletions)
    return md


_MD = _build()

_CLEANER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    # Dropped together with everything inside them (other disallowed tags keep their text).
    clean_content_tags=frozenset({"script", "style", "iframe", "object", "embed", "svg", "math", "template"}),
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes=ALLOWED_URL_SCHEMES,
    url_relative="deny",
    link_rel=LINK_REL,
    strip_comments=True,
)


def sanitize(html: str) -> str:
    """Any HTML -> only what :data:`ALLOWED_TAGS`/:data:`ALLOWED_ATTRIBUTES` permit (layer 2 alone)."""
    return _CLEANER.clean(html)


RENDER_CACHE_ENTRIES = 2048
"""Rendered texts kept (least recently used dropped first): a timeline page renders three texts of
each of its 20 reports on every read, a digest each report once per recipient."""
RENDER_CACHE_MAX_CHARS = 4000
"""Longer texts are rendered every time, which bounds the cache to a few tens of MB at worst."""


def render(text: str) -> str:
    """Markdown -> sanitized HTML fragment, safe to put into a page or an email as it is.

    A pure function of ``text`` (the parser and the allow-list are fixed at import), so results are
    cached by text: docs/performance.md, "Profile findings".
    """
    if not text:
        return ""
    if len(text) > RENDER_CACHE_MAX_CHARS:
        return _render(text)
    return _render_cached(text)


def _render(text: str) -> str:
    return sanitize(_MD.render(text))


_render_cached = functools.lru_cache(maxsize=RENDER_CACHE_ENTRIES)(_render)


# Tokens whose end separates words in plain text (paragraphs, list items, cells, ...).
_BLOCK_BREAKS = frozenset(
    {
        "paragraph_close",
        "heading_close",
        "list_item_close",
        "blockquote_close",
        "th_close",
        "td_close",
        "tr_close",
        "hr",
    }
)
_WHITESPACE = re.compile(r"\s+")


def _inline_text(children: list[Token], out: list[str]) -> None:
    for child in children:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")


# Bidirectional overrides/isolates and the byte-order mark: invisible, and able to make a
# subject or preview read differently from what it says.
_INVISIBLE = dict.fromkeys(map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"))


def _printable(text: str) -> str:
    """Control characters become spaces (no header injection via a subject), bidi marks go."""
    text = text.translate(_INVISIBLE)
    return "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)


def plain(text: str, limit: int | None = None) -> str:
    """Markdown -> text without markup: link texts stay (their addresses go), code stays as
    text, whitespace collapses to single spaces. With ``limit``, a longer result is cut so that
    it has at most ``limit`` characters including a trailing "…" (at a word boundary when one
    is near). Cached by text like :func:`render` (a report's text is flattened once per email of
    its fan-out, its digests and chat posts otherwise)."""
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")
    if len(text) > RENDER_CACHE_MAX_CHARS:
        return _plain(text, limit)
    return _plain_cached(text, limit)


def _plain(text: str, limit: int | None) -> str:
    out: list[str] = []
    for token in _MD.parse(text):
        if token.type == "inline" and token.children is not None:
            _inline_text(token.children, out)
        elif token.type in ("code_block", "fence"):
            out.append(token.content)
            out.append(" ")
        elif token.type in _BLOCK_BREAKS:
            out.append(" ")
    result = _WHITESPACE.sub(" ", _printable("".join(out))).strip()
    if limit is None or len(result) <= limit:
        return result
    cut = result[: limit - 1]
    space = cut.rfind(" ")
    if space >= (limit - 1) * 2 // 3:
        cut = cut[:space]
    return cut.rstrip() + _ELLIPSIS


_plain_cached = functools.lru_cache(maxsize=RENDER_CACHE_ENTRIES)(_plain)
