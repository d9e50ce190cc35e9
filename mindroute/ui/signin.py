"""What a signed-out visitor sees: the first-run administrator form, sign-in and sign-up."""

from __future__ import annotations

import html

import streamlit as st

from mindroute import i18n
from mindroute.config import get_settings
from mindroute.errors import PermissionDenied
from mindroute.i18n import _
from mindroute.services import auth, users
from mindroute.ui import sso
from mindroute.ui.render import Flash, form_errors
from mindroute.ui.runtime import engine
from mindroute.ui.session import client_ip, cookie_routes_available, sign_in_tab

TAB_NOTE_SHOWN = "mindroute_tab_note_shown"
_CREATED = Flash("mindroute_first_admin_created")

# Static markup, no user text in it: a real form so the browser posts it to /auth/signin,
# which sets the HttpOnly cookie (a Streamlit script cannot set cookies). Its slots are the labels: catalog
# texts, HTML-escaped (cookie_signin_form).
_COOKIE_SIGNIN_FORM = """
<style>
.mr-signin {display:flex; flex-direction:column; gap:0.6rem; max-width:26rem}
.mr-signin label {font-size:0.875rem; display:flex; flex-direction:column; gap:0.25rem}
.mr-signin input[type=email], .mr-signin input[type=password] {
  font:inherit; padding:0.5rem 0.75rem; border-radius:0.5rem;
  border:1px solid rgba(128,128,128,0.4); background:transparent; color:inherit}
.mr-signin .mr-check {flex-direction:row; align-items:center; gap:0.5rem}
.mr-signin button {font:inherit; padding:0.5rem 1rem; border-radius:0.5rem; border:none; cursor:pointer;
  background:#4f46e5; color:white; align-self:flex-start}
</style>
<form class="mr-signin" method="post" action="/auth/signin" data-testid="mr-signin-form">
  <label>{email}<input type="email" name="email" autocomplete="username" required maxlength="255"></label>
  <label>{password}<input type="password" name="password" autocomplete="current-password" required></label>
  <label class="mr-check"><input type="checkbox" name="remember" value="on"> {remember}</label>
  <button type="submit">{submit}</button>
</form>
"""


def cookie_signin_form() -> str:
    """The sign-in form in the reader's language: the fixed markup with its translated, escaped labels."""
    labels = {
        "email": _("Email"),
        "password": _("Password"),
        "remember": _("Keep me signed in for 30 days"),
        "submit": _("Sign in"),
    }
    markup = _COOKIE_SIGNIN_FORM
    for slot, label in labels.items():  # str.replace: the CSS's own braces are not format fields
        markup = markup.replace("{" + slot + "}", html.escape(label))
    return markup


def first_admin_view() -> None:
    st.title(_("Welcome to MindRoute"))
    st.write(_("No administrator exists yet. Create the first administrator account to begin."))
    with st.form("first_admin"):
        name = st.text_input(_("Name"), max_chars=100, key="first_admin_name")
        name_err = st.empty()
        email = st.text_input(_("Email"), max_chars=255, key="first_admin_email")
        email_err = st.empty()
        password = st.text_input(
            _("Password"), type="password", help=_("8 to 72 bytes, not your email"), key="first_admin_password"
        )
        password_err = st.empty()
        repeat = st.text_input(_("Repeat password"), type="password", key="first_admin_repeat")
        repeat_err = st.empty()
        submitted = st.form_submit_button(_("Create administrator"), type="primary")
    if not submitted:
        return
    fields = {"name": name_err, "email": email_err, "password": password_err, "repeat": repeat_err}
    form = {"email": email, "name": name, "password": password, "password_repeat": repeat}
    with form_errors(fields):
        try:
            if cookie_routes_available():
                users.create_first_admin(engine(), **form)
                # A script cannot set the HttpOnly cookie: the sign-in form follows, with this message above it.
                _CREATED.done(_("Administrator created. Sign in with the email and password you just chose."))
            # A tab-lived session: the new administrator is signed in at once.
            sign_in_tab(auth.create_first_admin_and_sign_in(engine(), **form, ip=client_ip()).token)
        except PermissionDenied:
            pass  # someone else finished the first run meanwhile: show sign-in
        st.rerun()


def _query_param_message() -> None:
    outcome = st.query_params.get("signin")
    if outcome == "failed":
        st.error(i18n.text(auth.SIGN_IN_FAILED))
    elif outcome == "throttled":
        try:
            wait = int(st.query_params.get("wait", "60"))
        except ValueError:
            wait = 60
        st.error(i18n.text(auth.throttled_message(min(max(wait, 1), 3600))))
    if outcome:  # the rest of the query is the page's own (a link's filters): kept
        for key in ("signin", "wait"):
            st.query_params.pop(key, None)


def _tab_signin_form() -> None:
    if not st.session_state.get(TAB_NOTE_SHOWN):
        st.session_state[TAB_NOTE_SHOWN] = True
        st.info(
            _(
                "This copy of MindRoute runs without its sign-in routes (started with `streamlit run Home.py`), "
                "so a sign-in lasts only as long as this browser tab. Start it with `streamlit run app.py` "
                "to stay signed in across reloads."
            )
        )
    with st.form("signin"):
        email = st.text_input(_("Email"), max_chars=255, autocomplete="username", key="signin_email")
        email_err = st.empty()
        password = st.text_input(_("Password"), type="password", autocomplete="current-password", key="signin_password")
        password_err = st.empty()
        submitted = st.form_submit_button(_("Sign in"), type="primary")
    if not submitted:
        return
    # A blank field is said at the field, both at once (the cookie form's browser does the same by `required`);
    # anything else gets the one message that does not tell which part was wrong.
    blank = {"email": not email.strip(), "password": not password}
    if blank["email"]:
        email_err.error(_("Email is required"))
    if blank["password"]:
        password_err.error(_("Password is required"))
    if any(blank.values()):
        return
    result, issued = auth.sign_in_and_issue(engine(), email, password, client_ip())
    if issued is None:
        st.error(i18n.text(result.error))
        return
    sign_in_tab(issued.token)
    st.rerun()


def _signup_form() -> None:
    with st.expander(_("New here? Create an account")):
        with st.form("signup"):
            name = st.text_input(_("Name"), max_chars=100, key="signup_name")
            name_err = st.empty()
            email = st.text_input(_("Email"), max_chars=255, key="signup_email")
            email_err = st.empty()
            password = st.text_input(_("Password"), type="password", key="signup_password", help=_("8 to 72 bytes"))
            password_err = st.empty()
            submitted = st.form_submit_button(_("Create account"))
        if submitted:
            with form_errors({"name": name_err, "email": email_err, "password": password_err}):
                users.sign_up(engine(), email=email, name=name, password=password)
                st.success(_("Account created. Sign in with your email and password."))


def signed_out_view() -> None:
    passwords = get_settings().password_signin
    has_admin = users.admin_exists(engine())
    if not has_admin and passwords:
        first_admin_view()
        return
    st.title(_("Sign in to MindRoute"))
    _CREATED.show()
    _query_param_message()
    sso.sign_in_buttons()
    if not passwords:  # single sign-on only (MINDROUTE_PASSWORD_SIGNIN=false)
        if not sso.enabled():
            st.error(_("Password sign-in is off and no identity provider is set up in secrets.toml's `[auth]`."))
        return
    if cookie_routes_available():
        st.html(cookie_signin_form())
    else:
        _tab_signin_form()
    if get_settings().allow_signup:
        _signup_form()
