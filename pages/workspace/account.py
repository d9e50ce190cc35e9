"""Account: display name, password, and signing out everywhere."""

from mindroute.ui.session import require_user

user = require_user()

import streamlit as st  # noqa: E402

from mindroute.services import auth  # noqa: E402
from mindroute.ui.format import timestamp  # noqa: E402
from mindroute.ui.render import form_errors  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402
from mindroute.ui.session import session_token  # noqa: E402

st.title("Account")
st.text(
    f"{user.email} · {'Administrator' if user.role == 'admin' else 'User'} · last sign-in {timestamp(user.last_login)}"
)

st.subheader("Display name")
with st.form("account_name"):
    name = st.text_input("Name", value=user.name, max_chars=100)
    name_err = st.empty()
    if st.form_submit_button("Save name"):
        with form_errors({"name": name_err}):
            auth.change_name(engine(), user, name)
            st.success("Name saved.")

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
                st.success(f"Password changed. {revoked} other session(s) signed out.")

st.subheader("Sessions")
st.write("Sign out of MindRoute in every browser, this one included.")
if st.button("Sign out everywhere", key="sign_out_everywhere"):
    auth.revoke_user_sessions(engine(), user.id)
    st.rerun()
