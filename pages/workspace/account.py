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

st.subheader(_("Language"))
# The language the browser asks for, as its own name ("한국어"); English when it asks for none we offer.
browser_language = i18n.LANGUAGES[i18n.resolve(None, viewer.browser_language())]
languages = [FOLLOW, *i18n.LANGUAGES]
with st.form("account_language_form"):
    language_choice = st.radio(
        _("Language"),
        languages,
        index=languages.index(user.language if user.language in languages else FOLLOW),
        # Each language by its own name, so a reader can find theirs whatever the page is in.
        format_func=lambda c: i18n.LANGUAGES.get(c) or _("Follow the browser ({language})", language=browser_language),
        horizontal=True,
        key="account_language",
    )
    language_err = st.empty()
    if st.form_submit_button(_("Save language"), key="account_language_save"):
        with form_errors({"language": language_err}):
            users.set_language(engine(), user, language_choice or None)
            # Said in the language just chosen: the next run (session.py reads it from the user) is in it.
            with i18n.using(i18n.resolve(language_choice or None, viewer.browser_language())):
                message = _("Language saved.")
            saved.done(message)

st.subheader(_("Time zone and theme"))
zones = [FOLLOW, *users.zone_choices()]
if user.timezone and user.timezone not in zones:
    zones.append(user.timezone)  # a zone the system no longer has: shown, and refused when saved again
browser = viewer.browser_zone().key
with st.form("account_preferences"):
    zone_choice = st.selectbox(
        _("Time zone"),
        zones,
        index=zones.index(user.timezone or FOLLOW),
        format_func=lambda z: z or _("Follow the browser ({zone})", zone=browser),
        accept_new_options=True,
        help=_("Type to search, e.g. `Seoul` or `New_York`"),
        key="account_timezone",
    )
    zone_err = st.empty()
    shades = list(theme.CHOICES)
    shade_choice = st.radio(
        _("Theme"),
        shades,
        index=shades.index(user.theme if user.theme in shades else FOLLOW),
        format_func=lambda c: i18n.text(theme.CHOICES[c]),
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
