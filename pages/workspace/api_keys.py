"""API keys: create, rotate, revoke and delete your own keys; administrators also see and revoke everyone's."""

from mindroute.ui.session import require_user

user = require_user()

import uuid  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from mindroute import i18n  # noqa: E402
from mindroute.i18n import _, _l, _n  # noqa: E402
from mindroute.services import admin_users, api_keys  # noqa: E402
from mindroute.services.admin_users import UserFilter  # noqa: E402
from mindroute.services.api_keys import API_KEY_NAME_MAX, EXPIRY_PRESETS, ApiKeyRow, KeyState, RotationGrace  # noqa: E402
from mindroute.services.limit_rules import key_target  # noqa: E402
from mindroute.ui import limits_view  # noqa: E402
from mindroute.ui.render import form_errors, paged_table, requested_page  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402
from mindroute.ui.users_view import user_label  # noqa: E402
from mindroute.ui.viewer import when, zone_note  # noqa: E402
from mindroute.ui.viewer import zone as viewer_zone  # noqa: E402

# One-shot: the full text of a key just issued. Popped by the next run, which shows it; any later
# run (an action, a rerun) no longer has it. It is never read back from the database: only its
# digest is stored there.
REVEAL = "api_keys_reveal"
FLASH = "api_keys_flash"
CUSTOM_DATE = "On a date…"  # an option's value (like the presets' "90 days"): shown through EXPIRY_LABELS
EXPIRY_CHOICES = (*EXPIRY_PRESETS, CUSTOM_DATE)
DEFAULT_EXPIRY = "90 days"
EXPIRY_LABELS = {
    "30 days": _l("30 days"),
    "90 days": _l("90 days"),
    "365 days": _l("365 days"),
    "Never": _l("Never"),
    CUSTOM_DATE: _l("On a date…"),
}
GRACE_LABELS = {
    RotationGrace.NONE: _l("None: the old key stops now"),
    RotationGrace.ONE_HOUR: _l("1 hour"),
    RotationGrace.ONE_DAY: _l("24 hours"),
}
STATE_LABELS = {KeyState.ACTIVE: _l("active"), KeyState.EXPIRED: _l("expired"), KeyState.REVOKED: _l("revoked")}
STATE_CHOICES = {
    "any": _l("Any state"),
    KeyState.ACTIVE.value: _l("Active"),
    KeyState.EXPIRED.value: _l("Expired"),
    KeyState.REVOKED.value: _l("Revoked"),
}
# The key table's columns (the English ones are what the tests read), translated where drawn.
COLUMNS = {
    "Owner": _l("Owner"),
    "Name": _l("Name"),
    "Prefix": _l("Prefix"),
    "Created": _l("Created"),
    "Last used": _l("Last used"),
    "Expires": _l("Expires"),
    "State": _l("State"),
}
PAGE_SIZES = (10, 25, 50, 100)
OWNER_CHOICES_MAX = 100
CREATED = "api_key_created"  # set by a successful create: the next run empties the form

st.title(_("API keys"))
zone_note()
zone = viewer_zone()


def done(message: i18n.Message, reveal: dict[str, str] | None = None) -> None:
    st.session_state[FLASH] = message  # fixed texts only (a Message, shown translated): never a key name (Markdown)
    if reveal is not None:
        st.session_state[REVEAL] = reveal
    st.rerun()


def state_label(row: ApiKeyRow) -> str:
    if row.rotating_out:
        return _("rotating out until {time}", time=when(row.stops_at))
    return i18n.text(STATE_LABELS.get(row.state, row.state.value))


def key_label(row: ApiKeyRow, *, with_owner: bool = False) -> str:
    """A key in a select box: option texts are drawn as plain text, never Markdown."""
    owner = f"{row.owner_email} · " if with_owner else ""
    return f"{owner}{row.name} · {row.prefix}… · {state_label(row)}"


def key_table(rows: list[ApiKeyRow], *, with_owner: bool = False) -> pd.DataFrame:
    columns = [*(["Owner"] if with_owner else []), "Name", "Prefix", "Created", "Last used", "Expires", "State"]
    table = pd.DataFrame(
        [
            {
                **({"Owner": r.owner_email} if with_owner else {}),
                "Name": r.name,
                "Prefix": f"{r.prefix}…",
                "Created": when(r.created_at),
                "Last used": when(r.last_used_at),
                "Expires": when(r.expires_at),
                "State": state_label(r),
            }
            for r in rows
        ],
        columns=columns,
    )
    return table.rename(columns={c: i18n.text(COLUMNS[c]) for c in columns})


if flash := st.session_state.pop(FLASH, None):
    st.success(i18n.text(flash))
if (reveal := st.session_state.pop(REVEAL, None)) is not None:
    with st.container(border=True):
        st.subheader(i18n.text(reveal["title"]))
        st.text(reveal["name"])
        st.code(reveal["key"], language=None)  # the copy button is on the code block
        st.warning(
            _(
                "Copy this key now: it is shown only this once. MindRoute keeps only a digest of it, "
                "so it cannot show it again. If you lose it, rotate the key or create a new one."
            )
        )


# --- create ---------------------------------------------------------------------------------

st.header(_("Create a key"))
if st.session_state.pop(CREATED, False):
    # Values assigned before the widgets exist reach the browser and empty its fields; deleting the
    # keys would leave what was typed on screen. A refused create keeps it, to be corrected.
    st.session_state.update({"api_key_name": "", "api_key_expiry": DEFAULT_EXPIRY})
    st.session_state.pop("api_key_date", None)
name = st.text_input(_("Name"), max_chars=API_KEY_NAME_MAX, placeholder=_("What the key is for"), key="api_key_name")
name_err = st.empty()
expiry = st.selectbox(
    _("Expires"),
    EXPIRY_CHOICES,
    index=EXPIRY_CHOICES.index(DEFAULT_EXPIRY),
    format_func=i18n.labeller(EXPIRY_LABELS),
    key="api_key_expiry",
)
expiry_err = st.empty()
day = None
if expiry == CUSTOM_DATE:
    today = datetime.now(zone).date()
    day = st.date_input(
        _("Works through the end of"),
        value=today + timedelta(days=30),
        format="YYYY-MM-DD",
        key="api_key_date",
        help=_("Midnight at the end of this day, in your time zone ({zone})", zone=zone.key),
    )
    date_err = st.empty()
else:
    date_err = expiry_err
if st.button(_("Create key"), type="primary", key="api_key_create"):
    with form_errors({"name": name_err, "expires_at": date_err}):
        # Both fields are checked before either refusal is shown: a bad name and a past date, at once.
        expires = api_keys.check_new_key(name, expiry, day, zone, custom_date=expiry == CUSTOM_DATE)
        issued = api_keys.create_key(engine(), user, user.id, name, expires)
        shown_name = issued.key.name
        st.session_state[CREATED] = True
        done(_l("Key created."), {"title": _l("Your new key"), "name": shown_name, "key": issued.plaintext})


# --- one's own keys -------------------------------------------------------------------------

if user.role == "admin":
    # Tracked, so revoking a key on "All keys" (which reruns the page) stays there.
    mine_area, all_area = st.tabs([_("My keys"), _("All keys")], key="api_keys_tab", on_change="rerun")
else:
    mine_area, all_area = st.container(), None

with mine_area:
    mine = api_keys.list_my_keys(engine(), user)
    if not mine:
        st.info(_("You have no API keys yet."))
    else:
        st.dataframe(key_table(mine), hide_index=True, width="stretch", key="my_keys_table")
        by_id = {str(r.id): r for r in mine}
        if (replacement := st.session_state.pop("my_key_select_next", None)) in by_id:
            st.session_state["my_key_selected"] = replacement
        if st.session_state.get("my_key_selected") not in by_id:
            st.session_state["my_key_selected"] = next(iter(by_id))
        selected = by_id[
            st.selectbox(_("Key"), list(by_id), format_func=lambda i: key_label(by_id[i]), key="my_key_selected")
        ]
        action_err = st.empty()
        kid = selected.id
        revoke_col, rotate_col, delete_col = st.columns(3)

        with revoke_col:
            st.caption(_("Revoking stops the key now, grace period or not."))
            if st.button(_("Revoke now"), key="my_key_revoke", disabled=selected.state is KeyState.REVOKED):
                with form_errors({"key": action_err}):
                    api_keys.revoke_key(engine(), user, kid)
                    done(_l("Key revoked: it no longer works."))

        with rotate_col:
            grace = st.selectbox(
                _("Old key keeps working for"),
                list(RotationGrace),
                format_func=i18n.labeller(GRACE_LABELS),
                key="my_key_grace",
            )
            grace_err = st.empty()
            if st.button(_("Rotate"), key="my_key_rotate", disabled=selected.revoked_at is not None):
                with form_errors({"key": action_err, "grace": grace_err}):
                    issued = api_keys.rotate_key(engine(), user, kid, grace)
                    shown_name = issued.key.name
                    st.session_state["my_key_select_next"] = str(issued.key.id)
                    replacement = {"title": _l("The replacement key"), "name": shown_name, "key": issued.plaintext}
                    done(_l("Key rotated."), replacement)

        with delete_col:
            if st.session_state.get("my_key_delete_pending") != str(kid):
                st.caption(_("Deleting removes the key from this list for good."))
                if st.button(_("Delete…"), key="my_key_delete"):
                    st.session_state["my_key_delete_pending"] = str(kid)
                    st.rerun()
            else:
                st.warning(_("Delete this key for good? It stops working at once. This cannot be undone."))
                if st.button(_("Delete for good"), type="primary", key="my_key_delete_confirm"):
                    st.session_state.pop("my_key_delete_pending", None)
                    with form_errors({"key": action_err}):
                        api_keys.delete_key(engine(), user, kid)
                        st.session_state.pop("my_key_selected", None)
                        done(_l("Key deleted."))
                if st.button(_("Cancel"), key="my_key_delete_cancel"):
                    st.session_state.pop("my_key_delete_pending", None)
                    st.rerun()

        admin_rule = limits_view.stored_settings(key_target(kid))
        limits_view.limit_editor(
            user,
            key_target(kid, owner=True),
            key=f"own_key_limits_{kid}",
            title=_("Your limits on this key"),
            help_text=_(
                "Calls through this key must pass these as well as every other rule on it, so you can "
                "only make it stricter: e.g. a small budget for a key used by a script."
            ),
            related=[(_("Set by an administrator"), admin_rule)],
            ceiling=admin_rule,
        )
        limits_view.show_budgets(
            _("This key's budgets"),
            limits_view.key_budgets(engine(), user, kid),
            _("No budget is set on this key."),
        )


# --- every key (administrators) -------------------------------------------------------------

if all_area is None:
    st.stop()

with all_area:
    filters = st.columns([2, 2, 1, 1])
    owner_search = filters[0].text_input(
        _("Find an owner"),
        max_chars=admin_users.SEARCH_MAX_CHARS,
        placeholder=_("Part of an email or a name"),
        key="all_keys_owner_search",
    )
    search_err = filters[0].empty()
    owners = []
    with form_errors({"search": search_err}):
        owners = admin_users.list_users(
            engine(),
            user,
            UserFilter(search=owner_search),
            sort="email",
            descending=False,
            page_size=OWNER_CHOICES_MAX,
        ).rows
    owner_labels = {"any": _("Any owner"), **{str(o.id): user_label(o) for o in owners}}
    owner_choice = filters[1].selectbox(
        _("Owner"), list(owner_labels), format_func=owner_labels.get, key="all_keys_owner"
    )
    state_choice = filters[2].selectbox(
        _("State"), list(STATE_CHOICES), format_func=i18n.labeller(STATE_CHOICES), key="all_keys_state"
    )
    page_size = filters[3].selectbox(
        _("Per page"), PAGE_SIZES, index=1, format_func=i18n.number, key="all_keys_page_size"
    )
    owner_id = None if owner_choice == "any" else uuid.UUID(owner_choice)
    state = None if state_choice == "any" else state_choice
    page = requested_page("all_keys_page", (owner_id, state, page_size))

    listing = api_keys.list_all_keys(engine(), user, user_id=owner_id, state=state, page=page, page_size=page_size)
    paged_table(
        "all_keys_page",
        listing,
        lambda rows: key_table(rows, with_owner=True),
        key="all_keys_table",
        counted=lambda n: _n("{n} key", "{n} keys", n),
        empty=_("No keys match these filters."),
    )

    if listing.rows:
        all_by_id = {str(r.id): r for r in listing.rows}
        if st.session_state.get("all_keys_selected") not in all_by_id:
            st.session_state["all_keys_selected"] = next(iter(all_by_id))
        chosen = all_by_id[
            st.selectbox(
                _("Key"),
                list(all_by_id),
                format_func=lambda i: key_label(all_by_id[i], with_owner=True),
                key="all_keys_selected",
                help=_("From this page"),
            )
        ]
        all_err = st.empty()
        if st.button(_("Revoke this key now"), key="all_keys_revoke", disabled=chosen.state is KeyState.REVOKED):
            with form_errors({"key": all_err}):
                api_keys.revoke_key(engine(), user, chosen.id)
                done(_l("Key revoked: it no longer works."))
        limits_view.limit_editor(
            user,
            key_target(chosen.id),
            key=f"key_limits_{chosen.id}",
            title=_("This key's limits"),
            help_text=_("Set by an administrator; calls through the key meet it as well as its owner's rules."),
            related=[(_("Set by its owner"), limits_view.stored_settings(key_target(chosen.id, owner=True)))],
        )
