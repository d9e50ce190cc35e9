"""Account: display name, time zone and theme, password, and signing out everywhere."""

from mindroute.ui.session import require_user

user = require_user()

import streamlit as st  # noqa: E402

from mindroute.services import auth, users  # noqa: E402
from mindroute.ui import theme, viewer  # noqa: E402
from mindroute.ui.render import Flash, form_errors  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402
from mindroute.ui.session import session_token  # noqa: E402

saved = Flash("account_saved")
st.title("Account")
saved.show()
viewer.zone_note()
role = "Administrator" if user.role == "admin" else "User"
st.text(f"{user.email} · {role} · last sign-in {viewer.when(user.last_login)}")

st.subheader("Display name")
with st.form("account_name"):
    name = st.text_input("Name", value=user.name, max_chars=100)
    name_err = st.empty()
    if st.form_submit_button("Save name"):
        with form_errors({"name": name_err}):
            auth.change_name(engine(), user, name)
            st.success("Name saved.")

st.subheader("Time zone and theme")
FOLLOW = ""  # the option that follows the browser (a widget's None would read as "nothing chosen")
zones = [FOLLOW, *users.zone_choices()]
if user.timezone and user.timezone not in zones:
    zones.append(user.timezone)  # a zone the system no longer has: shown, and refused when saved again
browser = viewer.browser_zone().key
with st.form("account_preferences"):
    zone_choice = st.selectbox(
        "Time zone",
        zones,
        index=zones.index(user.timezone or FOLLOW),
        format_func=lambda z: z or f"Follow the browser ({browser})",
        accept_new_options=True,
        help="Type to search, e.g. Seoul or New_York",
        key="account_timezone",
    )
    zone_err = st.empty()
    shades = list(theme.CHOICES)
    shade_choice = st.radio(
        "Theme",
        shades,
        index=shades.index(user.theme if user.theme in shades else FOLLOW),
        format_func=theme.CHOICES.__getitem__,
        horizontal=True,
        key="account_theme",
    )
    shade_err = st.empty()
    if st.form_submit_button("Save time zone and theme"):
        with form_errors({"timezone": zone_err, "theme": shade_err}):
            users.set_preferences(engine(), user, timezone=zone_choice, theme=shade_choice)
            if (shade_choice or None) != user.theme:
                theme.request_apply()
            saved.done("Time zone and theme saved.")

st.subheader("Password")
with st.form("account_password", clear_on_submit=True):
    current = st.text_input("Current password", type="password", autocomplete="current-password")
    current_err = st.empty()
    new = st.text_input("New password", type="password", autocomplete="new-password", help="8 to 72 bytes")
    new_err = st.empty()
    repeat = st.text_input("Repeat new password", type="password", autocomplete="new-password")
    repeat_err = st.empty()
    if st.form_submit_button("Change password"):
        if new != repeat:
            repeat_err.error("The two new passwords differ")
        else:
            with form_errors({"current_password": current_err, "new_password": new_err}):
                revoked = auth.change_password(engine(), user, current, new, session_token())
                others = "1 other session" if revoked == 1 else f"{revoked:,} other sessions"
                st.success(f"Password changed. {others} signed out.")

st.subheader("Sessions")
st.write("Sign out of MindRoute in every browser, this one included.")
if st.button("Sign out everywhere", key="sign_out_everywhere"):
    auth.revoke_user_sessions(engine(), user.id)
    st.rerun()
