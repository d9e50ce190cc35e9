"""The frame around every signed-in page: who is signed in, and the way out."""

from __future__ import annotations

import html

import streamlit as st

from mindroute.i18n import _
from mindroute.models import User
from mindroute.ui import sso, theme
from mindroute.ui.session import cookie_routes_available, sign_out_tab, signed_in_by_sso

# Static markup: posts to /auth/signout, which revokes the token and clears the HttpOnly cookie. Its one
# slot is the button's label, a catalog text (never user text), HTML-escaped.
_COOKIE_SIGNOUT_FORM = """
<form method="post" action="/auth/signout" data-testid="mr-signout-form">
  <button type="submit" style="font:inherit; padding:0.35rem 0.9rem; border-radius:0.5rem; cursor:pointer;
    border:1px solid rgba(128,128,128,0.4); background:transparent; color:inherit">{label}</button>
</form>
"""


def cookie_signout_form() -> str:
    """The sign-out form in the reader's language: fixed markup around the translated, escaped label."""
    return _COOKIE_SIGNOUT_FORM.format(label=html.escape(_("Sign out")))


def sidebar(user: User) -> None:
    with st.sidebar:
        theme.apply(user.theme, can_reload=cookie_routes_available())
        st.text(user.name)  # untrusted: plain text, never Markdown
        st.caption(_("Administrator") if user.role == "admin" else _("User"))
        if signed_in_by_sso():
            if st.button(_("Sign out"), key="sign_out_sso"):
                sso.sign_out()  # revokes this sign-in and clears the identity provider's cookie (a reload)
        elif cookie_routes_available():
            st.html(cookie_signout_form())
        elif st.button(_("Sign out"), key="sign_out"):
            sign_out_tab()
            st.rerun()
