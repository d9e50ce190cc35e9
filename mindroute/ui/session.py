"""Who is signed in, for the page scripts: resolve the session and guard every page."""

from __future__ import annotations

import streamlit as st

from mindroute import security
from mindroute.http import web
from mindroute.i18n import _
from mindroute.models import User
from mindroute.services import audit, auth
from mindroute.ui import sso, viewer
from mindroute.ui.runtime import engine

# Where a tab-lived session (no cookie routes: `streamlit run Home.py`, AppTest) keeps its token.
TAB_TOKEN_KEY = "mindroute_tab_session"  # noqa: S105 - a session_state key, not a secret
# (token digest, user id, first sign-in time) of the session this tab's connection resolved.
FOLLOW_KEY = "mindroute_session_follow"


def client_ip() -> str | None:
    """The browser's address (see web.client_address); None in AppTest, which has no connection."""
    peer = st.context.ip_address
    forwarded = st.context.headers.get("x-forwarded-for")
    return web.client_address(
        peer if isinstance(peer, str) else None, forwarded if isinstance(forwarded, str) else None
    )


def user_agent() -> str | None:
    agent = st.context.headers.get("user-agent")
    return agent if isinstance(agent, str) else None


def cookie_routes_available() -> bool:
    return web.ROUTES_MOUNTED


def session_token() -> str | None:
    """The browser's session token: the HttpOnly cookie, else the one this tab signed in with."""
    cookie = st.context.cookies.get(web.SESSION_COOKIE)
    if isinstance(cookie, str) and cookie:
        return cookie
    return st.session_state.get(TAB_TOKEN_KEY)


def resolve_current_user() -> User | None:
    """The signed-in user of this tab, or None.

    The tab's connection keeps the cookie it was opened with. When another tab's page load
    rotates the session, this tab's token is rotated away (it ends 60 s later) while the
    browser already holds the new one: a connection that resolved its token while it was valid
    then follows its session to the successor token, until the session is signed out, revoked
    or past its absolute lifetime. A connection opened with an already-dead token never does.
    """
    _set_audit_actor(None)  # until a user is resolved, anything recorded is anonymous (the sign-in form)
    viewer.remember_choice(None)  # signed out, times follow the browser
    viewer.use_language(None)  # and so does the language
    token = session_token()
    if not token:
        return _single_sign_on_user()
    digest = security.digest(token)
    follow = st.session_state.get(FOLLOW_KEY)
    successor_of = (follow[1], follow[2]) if follow is not None and follow[0] == digest else None
    resolved = auth.resolve_or_follow(engine(), token, successor_of)
    if resolved is None:
        st.session_state.pop(TAB_TOKEN_KEY, None)  # revoked or expired: this tab is signed out
        st.session_state.pop(FOLLOW_KEY, None)
        return None
    st.session_state[FOLLOW_KEY] = (digest, resolved.user.id, resolved.created_at)
    _set_audit_actor(resolved.user)
    viewer.remember_choice(resolved.user.timezone)
    viewer.use_language(resolved.user.language)
    return resolved.user


def _single_sign_on_user() -> User | None:
    """The user an identity provider signed this browser in as (services/oidc.py), when single sign-on is set up."""
    if not sso.enabled():
        return None
    user = sso.resolve_user(client_ip(), user_agent())
    if user is not None:
        _set_audit_actor(user)
        viewer.remember_choice(user.timezone)
        viewer.use_language(user.language)
    return user


def signed_in_by_sso() -> bool:
    """Whether this browser's session is a single sign-on one (no MindRoute cookie or tab token of its own)."""
    return session_token() is None and sso.enabled()


def _set_audit_actor(user: User | None) -> None:
    """Whatever this script run changes is recorded in the audit trail as done by `user`, from this
    browser's address (the trusted-proxy rules of web.client_address) and user agent."""
    audit.set_actor(audit.AuditActor.of(user, client_ip(), user_agent()))


def require_user(role: str | None = None) -> User:
    """The first statement of every page: stops the page for anyone not allowed to see it."""
    user = resolve_current_user()
    if user is None:
        st.warning(_("Please sign in to continue."))
        st.stop()
    if role == "admin" and user.role != "admin":
        st.error(_("This page is for administrators."))
        st.stop()
    return user


def require_admin() -> User:
    return require_user("admin")


def sign_in_tab(token: str) -> None:
    st.session_state[TAB_TOKEN_KEY] = token


def sign_out_tab() -> None:
    token = st.session_state.pop(TAB_TOKEN_KEY, None)
    if token:
        auth.revoke_token(engine(), token)
