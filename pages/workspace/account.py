"""Account: display name, language, time zone and theme, password, and signing out everywhere."""

from mindroute.ui.session import require_user

user = require_user()

import streamlit as st  # noqa: E402

from mindroute import i18n  # noqa: E402
from mindroute.i18n import _, _n  # noqa: E402
from mindroute.services import auth, users  # noqa: E402
from mindroute.ui import theme, viewer  # noqa: E402
from mindroute.ui.render import Flash, form_errors  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402
from mindroute.ui.session import session_token  # noqa: E402

saved = Flash("account_saved")
st.title(_("Account"))
saved.show()
viewer.zone_note()
role = _("Administrator") if user.role == "admin" else _("User")
st.text(_("{email} · {role} · last sign-in {time}", email=user.email, role=role, time=viewer.when(user.last_login)))

st.subheader(_("Display name"))
with st.form("account_name"):
    name = st.text_input(_("Name"), value=user.name, max_chars=100)
    name_err = st.empty()
    if st.form_submit_button(_("Save name")):
        with form_errors({"name": name_err}):
            auth.change_name(engine(), user, name)
            st.success(_("Name saved."))

FOLLOW = ""  # the option that follows the browser (a widget's None would read as "nothing chosen")
# The choices' labels, made once per run: a widget's value travels as its label, so a format_func must give the
# same text whenever Streamlit calls it (after the run too), never a translation looked up later.
browser_language = i18n.LANGUAGES[i18n.resolve(None, viewer.browser_language())]  # what "follow" gives now
language_labels = {FOLLOW: _("Follow the browser ({language})", language=browser_language), **i18n.LANGUAGES}
browser = viewer.browser_zone().key
zone_labels = {FOLLOW: _("Follow the browser ({zone})", zone=browser)}
shade_labels = {c: i18n.text(label) for c, label in theme.CHOICES.items()}
LANGUAGE_REFUSED = "account_language_refused"
PREFERENCE_KEYS = ("account_language", "account_timezone", "account_theme")


def save_language() -> None:
    """The Language form's submit, before the next run: save, then carry this page's choices over by value.

    The next run draws the page in the new language, so the labels the browser holds for the Account choices
    would match none: each is set again by its value here (a callback may), and the run redraws it in the new
    language (the time zone box would otherwise take an old label as a typed zone)."""
    choice = st.session_state.get("account_language") or None
    try:
        users.set_language(engine(), user, choice)
    except (users.ValidationError, users.PermissionDenied) as exc:  # the service's refusals, shown at the form
        st.session_state[LANGUAGE_REFUSED] = exc
        return
    for key in PREFERENCE_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    # Said in the language just chosen: the next run (session.py reads it from the user) is in it.
    with i18n.using(i18n.resolve(choice, viewer.browser_language())):
        st.session_state[saved.key] = _("Language saved.")


st.subheader(_("Language"))
languages = list(language_labels)
with st.form("account_language_form"):
    st.radio(
        _("Language"),
        languages,
        index=languages.index(user.language if user.language in languages else FOLLOW),
        # Each language by its own name, so a reader can find theirs whatever the page is in.
        format_func=language_labels.__getitem__,
        horizontal=True,
        label_visibility="collapsed",  # the subheader above says it
        key="account_language",
    )
    language_err = st.empty()
    st.form_submit_button(_("Save language"), key="account_language_save", on_click=save_language)
    if (refused := st.session_state.pop(LANGUAGE_REFUSED, None)) is not None:
        with form_errors({"language": language_err}):
            raise refused

st.subheader(_("Time zone and theme"))
zones = [FOLLOW, *users.zone_choices()]
if user.timezone and user.timezone not in zones:
    zones.append(user.timezone)  # a zone the system no longer has: shown, and refused when saved again
with st.form("account_preferences"):
    zone_choice = st.selectbox(
        _("Time zone"),
        zones,
        index=zones.index(user.timezone or FOLLOW),
        format_func=lambda z: zone_labels.get(z, z),
        accept_new_options=True,
        placeholder=_("Choose or type a time zone"),
        help=_("Type to search, e.g. `Seoul` or `New_York`"),
        key="account_timezone",
    )
    zone_err = st.empty()
    shades = list(theme.CHOICES)
    shade_choice = st.radio(
        _("Theme"),
        shades,
        index=shades.index(user.theme if user.theme in shades else FOLLOW),
        format_func=shade_labels.__getitem__,
        horizontal=True,
        key="account_theme",
    )
    shade_err = st.empty()
    if st.form_submit_button(_("Save time zone and theme")):
        with form_errors({"timezone": zone_err, "theme": shade_err}):
            users.set_preferences(engine(), user, timezone=zone_choice, theme=shade_choice)
            if (shade_choice or None) != user.theme:
                theme.request_apply()
            saved.done(_("Time zone and theme saved."))

st.subheader(_("Password"))
with st.form("account_password", clear_on_submit=True):
    current = st.text_input(_("Current password"), type="password", autocomplete="current-password")
    current_err = st.empty()
    new = st.text_input(_("New password"), type="password", autocomplete="new-password", help=_("8 to 72 bytes"))
    new_err = st.empty()
    repeat = st.text_input(_("Repeat new password"), type="password", autocomplete="new-password")
    repeat_err = st.empty()
    if st.form_submit_button(_("Change password")):
        if new != repeat:
            repeat_err.error(_("The two new passwords differ"))
        else:
            with form_errors({"current_password": current_err, "new_password": new_err}):
                revoked = auth.change_password(engine(), user, current, new, session_token())
                st.success(
                    _n(
                        "Password changed. {n} other session signed out.",
                        "Password changed. {n} other sessions signed out.",
                        revoked,
                    )
                )

st.subheader(_("Sessions"))
st.write(_("Sign out of MindRoute in every browser, this one included."))
if st.button(_("Sign out everywhere"), key="sign_out_everywhere"):
    auth.revoke_user_sessions(engine(), user.id)
    st.rerun()
