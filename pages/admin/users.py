"""Users and permissions: find, create and edit accounts, and decide who may use which provider."""

from mindroute.ui.session import require_admin

user = require_admin()

import uuid  # noqa: E402

import streamlit as st  # noqa: E402

from mindroute import i18n  # noqa: E402
from mindroute.i18n import _, _n  # noqa: E402
from mindroute.services import admin_users, api_keys, permissions, users  # noqa: E402
from mindroute.services.admin_users import ROLES, SORT_COLUMNS, ConflictError  # noqa: E402
from mindroute.services.limit_rules import key_target, user_target  # noqa: E402
from mindroute.ui import limits_view  # noqa: E402
from mindroute.ui import users_view as view  # noqa: E402
from mindroute.ui.format import tokens  # noqa: E402
from mindroute.ui.render import Flash, form_errors, paged_table, requested_page, rows_height  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402
from mindroute.ui.viewer import when, zone_note  # noqa: E402

st.title(_("Users and permissions"))
zone_note()
flash = Flash("users_flash")
flash.show()
done = flash.done


# --- create ---------------------------------------------------------------------------------

if st.session_state.pop(view.CREATED, False):
    # Values assigned before the widgets exist reach the browser and empty its fields (deleting the keys
    # would leave the password on screen); a refused form keeps what was typed, to be corrected.
    st.session_state.update(view.CREATE_DEFAULTS)

with st.expander(_("Create a user")), st.form("create_user"):
    new_email = st.text_input(_("Email"), max_chars=255, key="create_user_email")
    new_email_err = st.empty()
    new_name = st.text_input(_("Name"), max_chars=100, key="create_user_name")
    new_name_err = st.empty()
    new_password = st.text_input(_("Password"), type="password", key="create_user_password", help=_("8 to 72 bytes"))
    new_password_err = st.empty()
    st.session_state.setdefault("create_user_role", "user")
    new_role = st.selectbox(_("Role"), ROLES, format_func=view.role_label, key="create_user_role")
    new_role_err = st.empty()
    if st.form_submit_button(_("Create user"), type="primary", key="create_user_submit"):
        slots = {"email": new_email_err, "name": new_name_err, "password": new_password_err, "role": new_role_err}
        with form_errors(slots):
            users.create_user(engine(), user, email=new_email, name=new_name, password=new_password, role=new_role)
            st.session_state[view.CREATED] = True
            done(_("User created."))

# --- the list -------------------------------------------------------------------------------

st.header(_("Users"))
filters = st.columns([3, 1, 1])
search = filters[0].text_input(
    _("Search"),
    max_chars=admin_users.SEARCH_MAX_CHARS,
    placeholder=_("Part of an email or a name"),
    key="users_search",
)
search_err = filters[0].empty()
role_choice = filters[1].selectbox(
    _("Role"), list(view.ROLE_CHOICES), format_func=lambda c: view.label(view.ROLE_CHOICES, c), key="users_role"
)
status_choice = filters[2].selectbox(
    _("Status"),
    list(view.STATUS_CHOICES),
    format_func=lambda c: view.label(view.STATUS_CHOICES, c),
    key="users_status",
)
ordering = st.columns([3, 1, 1])
sort = ordering[0].selectbox(
    _("Sort by"),
    SORT_COLUMNS,
    index=SORT_COLUMNS.index(view.DEFAULT_SORT),
    format_func=lambda c: view.label(view.SORT_LABELS, c),
    key="users_sort",
)
descending = ordering[1].selectbox(
    _("Order"), (True, False), format_func=view.order_label(sort), key="users_descending"
)
page_size = ordering[2].selectbox(
    _("Per page"),
    view.PAGE_SIZES,
    index=view.PAGE_SIZES.index(view.DEFAULT_PAGE_SIZE),
    format_func=i18n.number,
    key="users_page_size",
)
where = view.user_filter(search, role_choice, status_choice)
page = requested_page("users_page", (where, sort, descending, page_size))

# ?user=<id>: the user being edited, so a reload or a shared link opens them again.
wanted = st.query_params.get(view.URL_PARAM)
if wanted is not None and wanted != st.session_state.get(view.URL_WRITTEN):
    st.session_state["users_selected"] = wanted

read = None
with form_errors({"search": search_err}):
    read = permissions.users_page(
        engine(),
        user,
        where,
        sort=sort,
        descending=descending,
        page=page,
        page_size=page_size,
        selected_id=st.session_state.get("users_selected"),
        delete_pending=st.session_state.get("users_delete_pending"),
    )
if read is None:
    st.stop()  # e.g. the search was refused: its message is shown under the field
matrix, selected, grants, impact = read.matrix, read.selected, read.grants, read.impact
listing = matrix.users
by_id = {str(r.id): r for r in listing.rows}
if selected is not None:
    if wanted is not None and wanted != st.session_state.get(view.URL_WRITTEN) and wanted != str(selected.id):
        st.info(_("The user in the link was not found."))
    st.session_state["users_selected"] = str(selected.id)
    by_id.setdefault(str(selected.id), selected)  # chosen by a link, on another page of the list
    st.query_params[view.URL_PARAM] = st.session_state[view.URL_WRITTEN] = str(selected.id)
elif view.URL_PARAM in st.query_params:
    del st.query_params[view.URL_PARAM]

paged_table(
    "users_page",
    listing,
    view.user_table,
    key="users_table",
    counted=lambda n: _n("{n} user", "{n} users", n),
    empty=_("No users match these filters."),
)

if selected is None:
    st.stop()

# --- one user -------------------------------------------------------------------------------

st.header(_("Selected user"))
st.selectbox(
    _("User"),
    list(by_id),
    format_func=lambda i: view.user_label(by_id[i]),
    key="users_selected",
    help=_("From this page"),
)
uid = selected.id
is_me = uid == user.id
facts = [
    selected.email,
    view.role_label(selected.role),
    _("active") if selected.is_active else _("deactivated"),
    _("last sign-in {time}", time=when(selected.last_login)),
    _("created {time}", time=when(selected.created_at)),
]
st.text(" · ".join([*facts, _("this is you")] if is_me else facts))

# Keyed and tracked, so a save (which reruns the page) leaves the admin on the tab they were on.
profile_tab, access_tab, limits_tab, password_tab, danger_tab = st.tabs(
    [_("Name and role"), _("Provider access"), _("Limits and budgets"), _("Password"), _("Deactivate or delete")],
    key="user_tab",
    on_change="rerun",
)

with profile_tab:
    loaded_at = view.load_form(
        "user_edit", uid, selected.updated_at, {"user_edit_name": selected.name, "user_edit_role": selected.role}
    )
    if loaded_at != selected.updated_at:
        st.warning(_("This user was changed by someone else since you opened it."))
        st.button(
            _("Reload the current values"), on_click=view.reload_form, args=("user_edit",), key="user_edit_reload"
        )
    with st.form("user_edit"):
        edit_name = st.text_input(_("Name"), max_chars=100, key="user_edit_name")
        name_err = st.empty()
        edit_role = st.selectbox(_("Role"), ROLES, format_func=view.role_label, key="user_edit_role")
        role_err = st.empty()
        if st.form_submit_button(_("Save name and role"), type="primary", key="user_edit_save"):
            with form_errors({"name": name_err, "role": role_err}):
                try:
                    admin_users.update_user(
                        engine(), user, uid, name=edit_name, role=edit_role, expected_updated_at=loaded_at
                    )
                except ConflictError:
                    # The service's message names the email (not for Markdown): this fixed one does not.
                    st.error(i18n.text(view.CONFLICT_MESSAGE))
                else:
                    view.reload_form("user_edit")
                    done(_("Name and role saved."))


with access_tab:
    st.write(_("Which providers this user may call. Administrators may use every active provider anyway."))
    if not grants:
        st.info(_("No providers yet: add one on the Providers page."))
    for grant in grants:
        pid = grant.provider_id
        form = f"grant_{pid}"
        offered = grant.provider_models
        grant_loaded_at = view.load_form(
            form,
            uid,
            grant.updated_at,
            {
                f"grant_allowed_{pid}": grant.allowed,
                f"grant_max_{pid}": "" if grant.max_tokens_override is None else str(grant.max_tokens_override),
                f"grant_models_{pid}": list(grant.models),
            },
        )
        with st.container(border=True):
            st.text(
                grant.provider_name
                if grant.provider_active
                else _("{name} (inactive: every call is refused)", name=grant.provider_name)
            )
            if grant_loaded_at != grant.updated_at:
                st.warning(_("This access was changed by someone else since you opened it."))
                st.button(_("Reload the current values"), on_click=view.reload_form, args=(form,), key=f"{form}_reload")
            provider_limit = read.provider_limits.get(pid)
            with st.form(form, border=False):
                allowed = st.toggle(_("Allowed"), key=f"grant_allowed_{pid}")
                max_tokens = st.text_input(
                    _("Token limit per call"),
                    key=f"grant_max_{pid}",
                    help=_("Blank uses the provider's limit (none)")
                    if provider_limit is None
                    else _("Blank uses the provider's limit ({limit})", limit=tokens(provider_limit)),
                )
                max_err = st.empty()
                models = st.multiselect(
                    _("Models this user may use"),
                    list(dict.fromkeys([*offered, *grant.models])),
                    key=f"grant_models_{pid}",
                    placeholder=_("All of the provider's models"),
                    accept_new_options=not offered,  # the provider lists none: type model ids
                    help=_("Leave empty for all of the provider's models"),
                )
                models_err = st.empty()
                if st.form_submit_button(_("Save access"), key=f"{form}_save"):
                    with form_errors({"max_tokens_override": max_err, "models": models_err}):
                        permissions.set_grant(
                            engine(),
                            user,
                            uid,
                            pid,
                            allowed=allowed,
                            max_tokens_override=max_tokens,
                            models=models,
                            expected_updated_at=grant_loaded_at,
                        )
                        view.reload_form(form)
                        done(_("Access saved."))


with limits_tab:
    limits_view.limit_editor(
        user,
        user_target(uid),
        key=f"user_limits_{uid}",
        title=_("This user's limits"),
        help_text=_(
            "Instead of the default, which applies while this user has no rule of their own (now: {summary}).",
            summary=limits_view.default_summary(),
        ),
    )
    limits_view.show_budgets(
        _("Used this period"),
        limits_view.user_budgets(engine(), user, uid),
        _("No budget applies to this user or their keys."),
    )
    user_keys = api_keys.list_all_keys(engine(), user, user_id=uid, page_size=view.KEYS_SHOWN_MAX).rows
    if not user_keys:
        st.info(_("This user has no API keys."))
    else:
        keys_by_id = {str(k.id): k for k in user_keys}
        if st.session_state.get("user_limits_key") not in keys_by_id:
            st.session_state["user_limits_key"] = next(iter(keys_by_id))
        chosen_key = keys_by_id[
            st.selectbox(
                _("API key"),
                list(keys_by_id),
                format_func=lambda i: view.key_label(keys_by_id[i]),
                key="user_limits_key",
                help=_("Each key may have a rule of its own, on top of the user's"),
            )
        ]
        limits_view.limit_editor(
            user,
            key_target(chosen_key.id),
            key=f"key_limits_{chosen_key.id}",
            title=_("This API key's limits"),
            help_text=_("Calls through this key meet this rule as well as the user's: the tightest wins."),
            related=[(_("Set by the key's owner"), limits_view.stored_settings(key_target(chosen_key.id, owner=True)))],
        )


with password_tab, st.form("user_password", clear_on_submit=True):
    st.write(_("Sets a new password and signs the user out everywhere."))
    new_pw = st.text_input(_("New password"), type="password", key="user_new_password", help=_("8 to 72 bytes"))
    new_pw_err = st.empty()
    if st.form_submit_button(_("Set password"), key="user_password_save"):
        with form_errors({"password": new_pw_err}):
            admin_users.set_user_password(engine(), user, uid, new_pw)
            view.reload_form("user_edit")
            done(_("Password set. The user is signed out everywhere."))


with danger_tab:
    active_err = st.empty()
    if selected.is_active:
        st.write(_("Deactivating refuses sign-in and calls, and signs the user out everywhere now."))
        if st.button(_("Deactivate"), key="user_deactivate"):
            with form_errors({"is_active": active_err}):
                admin_users.set_user_active(engine(), user, uid, False)
                view.reload_form("user_edit")
                done(_("User deactivated and signed out everywhere."))
    elif st.button(_("Activate"), key="user_activate"):
        with form_errors({"is_active": active_err}):
            admin_users.set_user_active(engine(), user, uid, True)
            view.reload_form("user_edit")
            done(_("User activated."))

    st.divider()
    delete_err = st.empty()
    if impact is None:
        if st.button(_("Delete user…"), key="user_delete"):
            st.session_state["users_delete_pending"] = str(uid)
            st.rerun()
    else:
        st.warning(
            _(
                "Deleting this user also deletes {keys}, {tickets} and {grants}. {calls}, without the link to the "
                "user. This cannot be undone.",
                keys=_n("{n} API key", "{n} API keys", impact.api_keys),
                tickets=_n("{n} ticket", "{n} tickets", impact.tickets),
                grants=_n("{n} provider permission", "{n} provider permissions", impact.provider_grants),
                calls=_n("{n} logged call stays", "{n} logged calls stay", impact.log_rows_unlinked),
            )
        )
        st.text(selected.email)
        confirm_col, cancel_col = st.columns(2)
        if confirm_col.button(_("Delete for good"), type="primary", key="user_delete_confirm"):
            st.session_state.pop("users_delete_pending", None)
            with form_errors({"user": delete_err}):
                admin_users.delete_user(engine(), user, uid)
                st.session_state.pop("users_selected", None)
                done(_("User deleted."))
        if cancel_col.button(_("Cancel"), key="user_delete_cancel"):
            st.session_state.pop("users_delete_pending", None)
            st.rerun()


# --- permissions of the whole page, and bulk changes ----------------------------------------

st.header(_("Permissions"))
if not matrix.providers:
    st.info(_("No providers yet: add one on the Providers page."))
    st.stop()
st.write(_("Access of the users on this page (filters and page as above). “—” means no access was ever set: denied."))
table, columns = view.matrix_table(matrix)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    height=rows_height(len(table)),
    column_config=columns,
    key="users_matrix",
)

st.subheader(_("Grant or revoke one provider for many users"))
provider_names = {str(p.id): p.name for p in matrix.providers}
bulk_provider = st.selectbox(_("Provider"), list(provider_names), format_func=provider_names.get, key="bulk_provider")
bulk_allowed = st.selectbox(
    _("Change"), (True, False), format_func=lambda a: _("Grant access") if a else _("Revoke access"), key="bulk_allowed"
)
bulk_scope = st.radio(
    _("Users"),
    ("selected", "matching"),
    format_func=lambda s: (
        _("Users chosen below (from this page)")
        if s == "selected"
        else _("Every user matching the search and filters (all pages)")
    ),
    key="bulk_scope",
)
bulk_users: list[str] = []
if bulk_scope == "selected":
    bulk_users = st.multiselect(
        _("Users"),
        list(by_id),
        format_func=lambda i: view.user_label(by_id[i]),
        key="bulk_users",
        placeholder=_("Choose users"),
    )
bulk_err = st.empty()

pending = st.session_state.get("bulk_pending")
if pending is None:
    if st.button(_("Review the change"), key="bulk_review"):
        count = listing.total if bulk_scope == "matching" else len(bulk_users)
        if count == 0:
            bulk_err.error(_("Select at least one user"))
        else:
            st.session_state["bulk_pending"] = {
                "provider": bulk_provider,
                "allowed": bulk_allowed,
                "user_ids": None if bulk_scope == "matching" else list(bulk_users),
                "matching": where if bulk_scope == "matching" else None,
                "count": count,
            }
            st.rerun()
else:
    n = pending["count"]
    st.warning(
        _n(
            "This will grant access to the provider below for {n} user, in one change.",
            "This will grant access to the provider below for {n} users, in one change.",
            n,
        )
        if pending["allowed"]
        else _n(
            "This will revoke access to the provider below for {n} user, in one change.",
            "This will revoke access to the provider below for {n} users, in one change.",
            n,
        )
    )
    st.text(provider_names.get(pending["provider"], _("(a provider that no longer exists)")))
    confirm_col, cancel_col = st.columns(2)
    yes = _("Yes, grant access") if pending["allowed"] else _("Yes, revoke access")
    if confirm_col.button(yes, type="primary", key="bulk_confirm"):
        st.session_state.pop("bulk_pending", None)
        with form_errors({"users": bulk_err}):
            covered = permissions.set_provider_access(
                engine(),
                user,
                uuid.UUID(pending["provider"]),
                allowed=pending["allowed"],
                user_ids=None if pending["user_ids"] is None else [uuid.UUID(i) for i in pending["user_ids"]],
                matching=pending["matching"],
            )
            for p in matrix.providers:
                view.reload_form(f"grant_{p.id}")
            done(
                _n("Access granted for {n} user.", "Access granted for {n} users.", covered)
                if pending["allowed"]
                else _n("Access revoked for {n} user.", "Access revoked for {n} users.", covered)
            )
    if cancel_col.button(_("Cancel"), key="bulk_cancel"):
        st.session_state.pop("bulk_pending", None)
        st.rerun()
