"""The one place that turns errors and untrusted text into page elements."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Hashable, Iterator

import streamlit as st

from mindroute.errors import ConflictError, NotFound, PermissionDenied
from mindroute.validation import ValidationError

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:])")


def escape_markdown(text: str) -> str:
    """Text safe to put in st.error/st.success and other Markdown-rendering elements: every
    Markdown and HTML character is escaped, so no link, image or tag can come from it."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


# ![alt](url), ![alt][ref] and <img …>: an image in Markdown is fetched by the viewer's browser.
_MD_INLINE_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)?")
_MD_REF_IMAGE = re.compile(r"!\[([^\]]*)\]\[[^\]]*\]")
_MD_REF_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*\S+.*$", re.MULTILINE)


def safe_markdown(text: str) -> str:
    """Model output for st.markdown: images become a text label, so nothing remote is fetched.
    Raw HTML is already shown as text by st.markdown (never pass unsafe_allow_html)."""
    text = _MD_INLINE_IMAGE.sub(lambda m: f"[image: {m.group(1) or 'untitled'}]", text)
    text = _MD_REF_IMAGE.sub(lambda m: f"[image: {m.group(1) or 'untitled'}]", text)
    return _MD_REF_DEFINITION.sub("", text)


def untrusted_text(value: str | None) -> None:
    """Names, tickets, model output: shown as text, never as HTML or Markdown (no remote images)."""
    st.text(value or "")


@contextlib.contextmanager
def form_errors(fields: dict[str, st.delta_generator.DeltaGenerator] | None = None) -> Iterator[None]:
    """Turn service errors into a message, at the field's slot when the page gave one."""
    try:
        yield
    except ValidationError as exc:
        slot = (fields or {}).get(exc.field)
        # Service messages may quote what a user typed (an email, a name): never let it render.
        (slot or st).error(escape_markdown(exc.message))
    except ConflictError as exc:
        st.error(escape_markdown(f"{exc} Reload to see the current values, then make your change again."))
    except (PermissionDenied, NotFound) as exc:
        st.error(escape_markdown(str(exc)))


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


def page_control(key: str, page: int, pages: int, total: int, noun: str) -> None:
    """Page buttons and "Page X of Y, N <noun>"; `page` is the page actually shown (services clamp it)."""
    if st.session_state.get(key, 1) != page:
        st.session_state[key] = page  # the filters changed or the last page went away
    st.pagination(max(pages, 1), key=key)
    st.caption(f"Page {page:,} of {max(pages, 1):,}, {total:,} {noun}")
