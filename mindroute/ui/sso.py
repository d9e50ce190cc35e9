"""Single sign-on on the pages: the "Sign in with …" buttons (Streamlit's `st.login`, configured in secrets.toml's
`[auth]`), and the signed-in user of a browser whose identity provider vouched for it (services/oidc.py)."""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from mindroute import i18n
from mindroute.config import get_settings
from mindroute.i18n import _
from mindroute.models import User
from mindroute.services import oidc
from mindroute.ui.runtime import engine

REFUSAL_KEY = "mindroute_sso_refusal"
_PROVIDER_SETTINGS = ("client_id", "server_metadata_url")


def _auth_section() -> Mapping[str, object]:
    try:
        section = st.secrets.get("auth")
    except FileNotFoundError:  # no secrets.toml at all
        return {}
    return section if isinstance(section, Mapping) else {}


def providers() -> list[tuple[str | None, str]]:
    """(name for st.login, button label) of each identity provider in `[auth]`: `[auth.okta]` is "okta";
    client settings directly under `[auth]` are the unnamed default provider. Labels in the reader's language
    (the provider's name, from the operator's secrets.toml, is filled in as it is)."""
    section = _auth_section()
    found: list[tuple[str | None, str]] = []
    if all(key in section for key in _PROVIDER_SETTINGS):
        found.append((None, _("Sign in with single sign-on")))
    for name, value in section.items():
        if isinstance(value, Mapping) and all(key in value for key in _PROVIDER_SETTINGS):
            found.append((str(name), _("Sign in with {provider}", provider=str(name).replace("_", " ").title())))
    return found


def enabled() -> bool:
    return bool(providers())


def sign_in_buttons() -> None:
    """The sign-in page's single sign-on buttons, and why the last attempt signed nobody in."""
    refusal = st.session_state.get(REFUSAL_KEY)
    if refusal:
        st.error(i18n.text(refusal))  # one of services/oidc.py's fixed messages
        if st.button(_("Use another account"), key="sso_use_another"):
            st.session_state.pop(REFUSAL_KEY, None)
            st.logout()  # clears Streamlit's identity cookie
        return
    for name, label in providers():
        if st.button(label, key=f"sso_login_{name or 'default'}", type="primary"):
            if name is None:
                st.login()
            else:
                st.login(name)


def _claims() -> dict[str, object] | None:
    if not enabled():
        return None
    try:
        claims = st.user.to_dict()
    except Exception:  # noqa: BLE001 - no identity cookie, or Streamlit's auth is not set up: nobody
        return None
    return claims if claims.get("is_logged_in") else None


def resolve_user(ip: str | None, user_agent: str | None) -> User | None:
    """The user whose identity provider signed this browser in, or None (then the sign-in page shows why)."""
    claims = _claims()
    if claims is None:
        return None
    settings = get_settings()
    result = oidc.sign_in(
        engine(), claims, oidc.policy_from(settings), settings.secret_keys[0], ip=ip, user_agent=user_agent
    )
    if result.refusal:
        st.session_state[REFUSAL_KEY] = result.refusal
        return None
    st.session_state.pop(REFUSAL_KEY, None)
    return result.user


def sign_out() -> None:
    """End this browser's single sign-on session: its row is revoked, Streamlit's identity cookie cleared."""
    claims = _claims()
    if claims is not None:
        oidc.revoke(engine(), claims, get_settings().secret_keys[0])
        st.logout()
