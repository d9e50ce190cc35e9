"""The one place that turns errors and untrusted text into page elements."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Hashable, Iterator
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import streamlit as st
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from mindroute import i18n
from mindroute.errors import ConflictError, NotFound, PermissionDenied
from mindroute.i18n import _
from mindroute.services.paging import Page
from mindroute.validation import FormValidationError, ValidationError

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:])")


def escape_markdown(text: str) -> str:
    """Text safe to put in st.error/st.success and other Markdown-rendering elements: every
    Markdown and HTML character is escaped, so no link, image or tag can come from it."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


# Model output is parsed as CommonMark (markdown-it-py; raw HTML off, GFM tables and strikethrough on)
# and written back as Markdown that only says what we allow. In text, every character that could
# start syntax is backslash-escaped: backslash, backtick, `* _ [ ] < ~ $ | { } &` always; `# > - + =` and a list
# number's `.`/`)` where a line could begin; `!` unless a character other than `[` follows it in the
# same text; `:` unless a space, digit or punctuation follows (Streamlit's `:red[…]`, `:material/…:`
# and emoji). So whatever parser reads it next (Streamlit's remark with GFM, math and directives)
# finds no image, tag, reference definition or directive in it, even where it would disagree with
# markdown-it about the original text. Images become a label; only http(s) links stay links.
_PARSER = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_ALWAYS_ESCAPED = frozenset("\\`*_[]<~$|{}&")
_ESCAPED_AT_START = frozenset("#>-+=")
_LIST_NUMBER = re.compile(r"\d{1,9}[.)]")
_FENCE_INFO = re.compile(r"[^A-Za-z0-9_+.#-]")
_URL_SAFE = "!#$%&*+,-./:;=?@_~"  # kept as they are; anything else (brackets, quotes, spaces) percent-encoded
_ALIGN = {"text-align:left": ":--", "text-align:right": "--:", "text-align:center": ":-:"}


def _escape_text(text: str) -> str:
    """`text` as Markdown that any CommonMark/GFM parser reads back as exactly this text."""
    out: list[str] = []
    number = _LIST_NUMBER.match(text)
    for i, ch in enumerate(text):
        after = text[i + 1] if i + 1 < len(text) else ""
        if (
            ch in _ALWAYS_ESCAPED
            or (i == 0 and ch in _ESCAPED_AT_START)
            or (ch == "!" and after in ("", "["))
            or (ch == ":" and (after == "" or after.isalpha() or after in "[/_"))
            or (number is not None and i == number.end() - 1)
        ):
            out.append("\\")
        out.append(ch)
    return "".join(out)


def _plain(node: SyntaxTreeNode) -> str:
    """A node's text content (an image's alt text, a link's words)."""
    if node.type in ("text", "code_inline", "html_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(_plain(child) for child in node.children)


def _image_label(node: SyntaxTreeNode) -> str:
    alt = " ".join(_plain(node).split())
    return f"[image: {_escape_text(alt) or 'untitled'}]"


def _safe_href(href: str) -> str | None:
    """An http(s) URL with nothing in it that Markdown could read as syntax; None for anything else."""
    parts = urlsplit(href.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return quote(href.strip(), safe=_URL_SAFE)


def _code_span(code: str, *, in_cell: bool = False) -> str:
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    # Three or more backticks could open a fence at the start of a line; in a table cell a "|"
    # ends the cell even inside a code span (GFM), which would leave the rest of the code as Markdown.
    if longest >= 2 or (in_cell and "|" in code):
        return _escape_text(code)
    fence = "`" * (longest + 1)
    pad = " " if code.startswith(("`", " ")) or code.endswith(("`", " ")) else ""
    return f"{fence}{pad}{code}{pad}{fence}"


def _inline(nodes: list[SyntaxTreeNode], *, one_line: bool = False, in_cell: bool = False) -> str:
    out: list[str] = []
    for node in nodes:
        kind = node.type
        if kind == "text" or kind == "html_inline":
            out.append(_escape_text(node.content))
        elif kind == "softbreak":
            out.append(" " if one_line else "\n")
        elif kind == "hardbreak":
            out.append(" " if one_line else "\\\n")
        elif kind == "code_inline":
            out.append(_code_span(node.content, in_cell=in_cell))
        elif kind == "image":
            out.append(_image_label(node))
        elif kind == "link":
            words = _inline(node.children, one_line=one_line, in_cell=in_cell)
            href = _safe_href(str(node.attrs.get("href", "")))
            if href is None:
                out.append(words)  # inert: mailto:, javascript:, relative targets…
            else:
                out.append(f"[{words or _escape_text(href)}]({href})")
        elif kind in ("em", "strong", "s"):
            mark = {"em": "*", "strong": "**", "s": "~~"}[kind]
            words = _inline(node.children, one_line=one_line, in_cell=in_cell)
            out.append(f"{mark}{words}{mark}" if words else "")
        else:  # anything else markdown-it may grow: its text only
            out.append(_escape_text(_plain(node)))
    return "".join(out)


def _indent(text: str, first: str, rest: str, blank: str = "") -> str:
    """`text` with `first` before its first line and `rest` before the others (`blank` on empty ones)."""
    lines = text.split("\n")
    return "\n".join(
        [first + lines[0] if lines[0] else first.rstrip()] + [rest + line if line else blank for line in lines[1:]]
    )


def _fence(code: str, info: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    language = _FENCE_INFO.sub("", info.split()[0]) if info.strip() else ""
    return f"{fence}{language}\n{code.removesuffix(chr(10))}\n{fence}" if code else f"{fence}{language}\n{fence}"


def _table(node: SyntaxTreeNode) -> str:
    rows: list[list[str]] = []
    aligns: list[str] = []
    for section in node.children:
        for row in section.children:
            cells = [
                _inline(cell.children[0].children if cell.children else [], one_line=True, in_cell=True)
                for cell in row.children
            ]
            if section.type == "thead":
                aligns = [_ALIGN.get(str(cell.attrs.get("style", "")), "---") for cell in row.children]
            rows.append(cells)
    if not rows:
        return ""
    lines = ["| " + " | ".join(rows[0]) + " |", "| " + " | ".join(aligns or ["---"] * len(rows[0])) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows[1:]]
    return "\n".join(lines)


def _blocks(nodes: list[SyntaxTreeNode], *, tight: bool = False) -> str:
    parts = [_block(node) for node in nodes]
    return ("\n" if tight else "\n\n").join(part for part in parts if part)


def _block(node: SyntaxTreeNode) -> str | None:
    kind = node.type
    if kind == "paragraph":
        return _inline(node.children[0].children if node.children else [])
    if kind == "heading":
        level = int(node.tag[1:]) if node.tag[1:].isdigit() else 1
        text = _inline(node.children[0].children if node.children else [], one_line=True)
        return "#" * level + (" " + text if text else "")
    if kind in ("fence", "code_block"):
        return _fence(node.content, node.info if kind == "fence" else "")
    if kind == "hr":
        return "***"
    if kind == "blockquote":
        return _indent(_blocks(node.children), "> ", "> ", ">")
    if kind in ("bullet_list", "ordered_list"):
        tight = any(p.type == "paragraph" and p.hidden for item in node.children for p in item.children)
        items = []
        start = int(node.attrs.get("start", 1) or 1) if kind == "ordered_list" else 0
        delimiter = ")" if node.markup == ")" else "."
        for number, item in enumerate(node.children, start=start):
            marker = f"{number}{delimiter} " if kind == "ordered_list" else f"{node.markup or '-'} "
            items.append(_indent(_blocks(item.children, tight=tight), marker, " " * len(marker)))
        return ("\n" if tight else "\n\n").join(items)
    if kind == "table":
        return _table(node)
    if kind == "html_block":  # not produced with HTML off; shown as text if it ever is
        return _escape_text(node.content.strip())
    return _escape_text(_plain(node)) or None


@functools.lru_cache(maxsize=256)  # a conversation's answers are drawn again on every rerun
def safe_markdown(text: str) -> str:
    """Model output for st.markdown, rebuilt from a CommonMark parse: images become a text label
    ("[image: alt]"), raw HTML and reference definitions become text or nothing, links other than
    http(s) lose their target, and all text is escaped, so the browser fetches nothing remote.
    Never pass the result with unsafe_allow_html."""
    return _blocks(SyntaxTreeNode(_PARSER.parse(text or "")).children)


class MarkdownStream:
    """safe_markdown for an answer that grows while it streams, without parsing it all again on every
    redraw: top-level blocks that a later complete line has closed (CommonMark never reopens them)
    are rendered once and kept; only the text from the last open block on is parsed again. A
    reference definition applies only within the part it arrived in (an image it would make stays
    text; the final answer is rendered whole by safe_markdown)."""

    def __init__(self) -> None:
        self._start_over()

    def _start_over(self) -> None:
        self._text = ""
        self._done: list[str] = []  # rendered blocks that can no longer change
        self._tail_at = 0  # offset in the text where the part still parsed again starts

    def render(self, text: str) -> str:
        """The whole text so far (not only what is new) as safe Markdown."""
        if not text.startswith(self._text):  # not a continuation: start over
            self._start_over()
        self._text = text
        tail = text[self._tail_at :]
        blocks = SyntaxTreeNode(_PARSER.parse(tail)).children
        complete_lines = tail.count("\n")  # lines 0..n-1 are complete; line n is still being written
        closed = [b for b in blocks if b.map is not None and b.map[0] < complete_lines]
        if len(closed) >= 2:
            settled, first_open = closed[:-1], closed[-1]
            self._done += [part for part in (_block(b) for b in settled) if part]
            line_starts = [0] + [i + 1 for i, ch in enumerate(tail) if ch == "\n"]
            self._tail_at += line_starts[first_open.map[0]]
            blocks = blocks[len(settled) :]
        rest = [part for part in (_block(b) for b in blocks) if part]
        return "\n\n".join(self._done + rest)


class Flash:
    """A message an action leaves for the page's next run, shown once at its top with st.success, which
    renders Markdown: give it fixed texts and numbers only, never a name, an email or a subject."""

    def __init__(self, key: str) -> None:
        self.key = key

    def show(self) -> None:
        if message := st.session_state.pop(self.key, None):
            st.success(i18n.text(message))  # a Message left for this run reads in this run's language

    def done(self, message: str) -> NoReturn:
        """Leave `message` for the next run, and start it now."""
        st.session_state[self.key] = message
        st.rerun()


def _slot_key(field: str, fields: dict[str, st.delta_generator.DeltaGenerator]) -> str | None:
    """The page's slot for `field`, or for the nearest enclosing one ("settings" for "settings.prices.a.input")."""
    name = field
    while name:
        if name in fields:
            return name
        name = name.rpartition(".")[0]
    return None


def _show_problems(exc: FormValidationError, fields: dict[str, st.delta_generator.DeltaGenerator]) -> None:
    """Every problem at once: each at its field's slot (several in one slot as a list), the rest at the top."""
    grouped: dict[str | None, list[str]] = {}
    for field, message in exc.problems.items():
        slot = _slot_key(field, fields)
        # Under a slot that stands for several fields, say which one each message is about.
        reading = i18n.text(message)
        grouped.setdefault(slot, []).append(reading if slot in (None, field) else f"{field}: {reading}")
    for slot, messages in grouped.items():
        # Service messages may quote what a user typed (an email, a name): never let it render.
        body = (
            escape_markdown(messages[0])
            if len(messages) == 1
            else "\n".join(f"- {escape_markdown(m)}" for m in messages)
        )
        (fields[slot] if slot is not None else st).error(body)


@contextlib.contextmanager
def form_errors(fields: dict[str, st.delta_generator.DeltaGenerator] | None = None) -> Iterator[None]:
    """Turn service errors into a message, at the field's slot when the page gave one. A refusal of several
    fields (FormValidationError, e.g. a SettingsError) shows every problem, each at its slot; a slot named
    "settings" also takes "settings.prices.a.input" and the like."""
    try:
        yield
    except FormValidationError as exc:
        _show_problems(exc, fields or {})
    except ValidationError as exc:
        slot = (fields or {}).get(exc.field)
        # Service messages may quote what a user typed (an email, a name): never let it render.
        (slot or st).error(escape_markdown(i18n.text(exc.message)))
    except ConflictError as exc:
        again = _("Reload to see the current values, then make your change again.")
        st.error(escape_markdown(f"{i18n.text(exc)} {again}"))
    except (PermissionDenied, NotFound) as exc:
        st.error(escape_markdown(i18n.text(exc)))


def requested_page(key: str, filters: Hashable) -> int:
    """The page a `page_control` under a table asks for; back to page 1 whenever `filters` change.

    Read it before the query, draw `page_control` after it: the number of pages is only known then.
    """
    marker = f"{key}__filters"
    if st.session_state.get(marker) != filters:
        st.session_state[marker] = filters
        return 1
    page = st.session_state.get(key, 1)
    return page if isinstance(page, int) and not isinstance(page, bool) and page >= 1 else 1


def page_control(key: str, page: int, pages: int, counted: str) -> None:
    """Page buttons and "Page X of Y · <counted>" (`counted`: the translated total, e.g. "1,200 users");
    `page` is the page actually shown (services clamp it)."""
    if st.session_state.get(key, 1) != page:
        st.session_state[key] = page  # the filters changed or the last page went away
    st.pagination(max(pages, 1), key=key)
    st.caption(_("Page {page} of {pages} · {counted}", page=page, pages=max(pages, 1), counted=counted))


ROW_HEIGHT_PX = 35  # st.dataframe's row (and header) height at the default font size
TABLE_HEIGHT_MAX_PX = 3_600  # about 100 rows: beyond that the table scrolls inside itself


def rows_height(rows: int) -> int:
    """A st.dataframe height that shows `rows` rows and the header without scrolling (the default shows ~10)."""
    return min((rows + 1) * ROW_HEIGHT_PX + 3, TABLE_HEIGHT_MAX_PX)


def paged_table(
    page_key: str,
    listing: Page[Any],
    table: Callable[[list[Any]], Any],
    *,
    key: str,
    counted: Callable[[int], str],
    empty: str,
) -> None:
    """One page of a list as a table, or `empty` ("No users match these filters."), with the page control
    under it; `counted(n)` is the translated total ("3 users"). The table is as tall as the page of rows, so
    the page size chosen is the number of rows seen."""
    if listing.rows:
        st.dataframe(
            table(listing.rows), hide_index=True, width="stretch", height=rows_height(len(listing.rows)), key=key
        )
    else:
        st.info(empty)
    page_control(page_key, listing.page, listing.pages, counted(listing.total))
