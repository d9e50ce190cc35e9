"""The one place that turns errors and untrusted text into page elements."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import streamlit as st

from mindroute.errors import ConflictError, NotFound, PermissionDenied
from mindroute.validation import ValidationError


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
        (slot or st).error(exc.message)
    except ConflictError as exc:
        st.error(f"{exc} Reload to see the current values, then make your change again.")
    except (PermissionDenied, NotFound) as exc:
        st.error(str(exc))
