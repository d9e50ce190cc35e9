"""Checks that Markdown handed to Streamlit makes the browser fetch nothing and shows no HTML."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from markdown_it import MarkdownIt
from markdown_it.token import Token

# How the output is read again: a strict CommonMark parser, and one like Streamlit's (GFM tables
# and strikethrough). Both with raw HTML ON, so that any tag left in the output would show up.
REREADERS = {
    "commonmark": MarkdownIt("commonmark", {"html": True}),
    "gfm": MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]),
}


def all_tokens(tokens: list[Token]) -> list[Token]:
    found: list[Token] = []
    for token in tokens:
        found.append(token)
        found.extend(all_tokens(token.children or []))
    return found


ALLOWED_TAGS = {
    *("p", "em", "strong", "s", "code", "pre", "a", "br", "hr", "blockquote", "ul", "ol", "li"),
    *("h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td"),
}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, attrs))


def _tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.seen


def _outside_code(markdown: str, md: MarkdownIt) -> str:
    """The output with its code blocks and code spans (as `md` reads them) removed."""
    lines = markdown.split("\n")
    tokens = all_tokens(md.parse(markdown))
    for token in tokens:
        if token.type in ("fence", "code_block") and token.map:
            lines[token.map[0] : token.map[1]] = [""] * (token.map[1] - token.map[0])
    rest = "\n".join(lines)
    for token in tokens:
        if token.type == "code_inline":
            span = re.escape(token.markup) + r"[ \n]?" + re.escape(token.content) + r"[ \n]?" + re.escape(token.markup)
            rest = re.sub(span, "", rest, count=1)
    return rest


def assert_inert(markdown: str) -> None:
    for name, md in REREADERS.items():
        tokens = all_tokens(md.parse(markdown))
        kinds = {t.type for t in tokens}
        assert "image" not in kinds, (name, markdown)
        assert not kinds & {"html_inline", "html_block"}, (name, markdown)
        for tag, attrs in _tags(md.render(markdown)):  # the HTML a browser would get: nothing that fetches
            assert tag in ALLOWED_TAGS, (name, tag, markdown)
            assert {a for a, _ in attrs} <= {"href", "start", "style", "class"}, (name, attrs, markdown)
        for token in tokens:  # links only to http(s), never an image-capable position
            if token.type == "link_open":
                assert re.match(r"https?://", str(token.attrGet("href"))), (name, markdown)
        # Whatever a parser thinks, outside code no "<" and no "![" is left unescaped.
        plain = _outside_code(markdown, md).replace("\\\\", "")
        assert not re.search(r"(?<!\\)(<|!\[)", plain), (name, markdown)
