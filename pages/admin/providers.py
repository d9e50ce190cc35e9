"""Providers: register AI providers, their keys (write-only), models and prices."""

from mindroute.ui.session import require_admin

user = require_admin()

import uuid  # noqa: E402

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from mindroute import i18n  # noqa: E402
from mindroute.i18n import _, _l, _n  # noqa: E402
from mindroute.services import providers as svc  # noqa: E402
from mindroute.services.limit_rules import provider_target  # noqa: E402
from mindroute.services.providers import (  # noqa: E402
    builtin_prices,
    builtin_table,
    price_for,
    settings_json,
)
from mindroute.ui import limits_view  # noqa: E402
from mindroute.ui.render import escape_markdown, form_errors  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402

CHOICES = svc.protocol_choices()
PRICE_SOURCES = {"provider": _l("this provider"), "built-in": _l("built-in"), None: _l("unpriced")}
PROTOCOLS = [c.name for c in CHOICES]
# The registry's labels are product names, but for the protocol of every OpenAI-compatible server: that one is
# read in the reader's language (a plug-in's protocol shows the label it registered).
PROTOCOL_LABELS: dict[str, str] = {c.name: c.label for c in CHOICES} | {
    "openai-compatible": _l("OpenAI-compatible (Ollama, vLLM, LM Studio, OpenRouter…)")
}
URL_PARAM = "provider"  # ?provider=<id>: the provider being managed, so a reload or a shared link keeps it
URL_WRITTEN = "provider_url_written"
TABS = [
    _l("Settings"),
    _l("Models and prices"),
    _l("Limits and spend"),
    _l("Test connection"),
    _l("Deactivate or delete"),
]


def protocol_label(protocol: str) -> str:
    return i18n.text(PROTOCOL_LABELS.get(protocol, protocol))


st.title(_("Providers"))
if flash := st.session_state.pop("provider_flash", None):
    st.success(escape_markdown(flash))  # names the provider: never Markdown

views = svc.list_providers(engine(), user)


def provider_table(rows: list[svc.ProviderView]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            [
                v.name,
                protocol_label(v.protocol),
                v.endpoint_url,
                v.is_active,
                v.allow_images,
                v.allow_videos,
                v.allow_files,
                v.max_tokens,
                ", ".join(v.models) if v.models else _("any"),
                v.default_model or "",
                v.masked_key or _("not set"),
            ]
            for v in rows
        ],
        columns=[
            _("Name"),
            _("Protocol"),
            _("Endpoint"),
            _("Active"),
            _("Images"),
            _("Videos"),
            _("Files"),
            _("Max tokens"),
            _("Models"),
            _("Default model"),
            _("Key"),
        ],
    )


if views:
    st.dataframe(provider_table(views), hide_index=True, width="stretch")
else:
    st.info(_("No providers yet. Add one below, or run `python -m mindroute seed-providers` for the official three."))


# --- add ------------------------------------------------------------------------------------

NEW_PROVIDER_DEFAULTS = {
    "new_provider_name": "",
    "new_provider_protocol": PROTOCOLS[0],
    "new_provider_endpoint": "",
    "new_provider_key": "",
    "new_provider_images": False,
    "new_provider_videos": False,
    "new_provider_files": False,
    "new_provider_active": True,
    "new_provider_max_tokens": "",
}
if st.session_state.pop("new_provider_saved", False):
    # Values assigned before the widgets exist are sent to the browser, which then empties its
    # fields; deleting the keys would not, and the key would stay in the password field. A refused
    # submit keeps what was typed, so it can be corrected.
    st.session_state.update(NEW_PROVIDER_DEFAULTS)
st.session_state.setdefault("new_provider_active", True)  # here, not as the widget's value: the reset sets it too

with st.expander(_("Add a provider"), expanded=not views):
    with st.form("provider_create", clear_on_submit=False):
        name = st.text_input(_("Name"), max_chars=100, key="new_provider_name")
        name_err = st.empty()
        protocol = st.selectbox(_("Protocol"), PROTOCOLS, format_func=protocol_label, key="new_provider_protocol")
        protocol_err = st.empty()
        endpoint = st.text_input(
            _("Endpoint URL"),
            max_chars=255,
            key="new_provider_endpoint",
            help=_(
                "Leave blank for the protocol's official endpoint: {endpoints}",
                endpoints="; ".join(f"{c.name}: {c.default_endpoint}" for c in CHOICES),
            ),
        )
        endpoint_err = st.empty()
        api_key = st.text_input(
            _("API key"), type="password", key="new_provider_key", help=_("Stored encrypted; never shown")
        )
        key_err = st.empty()
        cols = st.columns(4)
        allow_images = cols[0].checkbox(_("Allow images"), key="new_provider_images")
        allow_videos = cols[1].checkbox(_("Allow videos"), key="new_provider_videos")
        allow_files = cols[2].checkbox(_("Allow files"), key="new_provider_files")
        active = cols[3].checkbox(_("Active"), key="new_provider_active")
        max_tokens = st.text_input(
            _("Max tokens per call"), key="new_provider_max_tokens", help=_("Blank for no limit")
        )
        max_tokens_err = st.empty()
        if st.form_submit_button(_("Add provider"), type="primary"):
            slots = {
                "name": name_err,
                "protocol": protocol_err,
                "endpoint_url": endpoint_err,
                "api_key": key_err,
                "max_tokens": max_tokens_err,
            }
            with form_errors(slots):
                created = svc.create_provider(
                    engine(),
                    user,
                    name=name,
                    protocol=protocol,
                    endpoint_url=endpoint,
                    api_key=api_key,
                    allow_images=allow_images,
                    allow_videos=allow_videos,
                    allow_files=allow_files,
                    max_tokens=max_tokens,
                    is_active=active,
                )
                st.session_state["new_provider_saved"] = True
                st.session_state["selected_provider"] = str(created.id)
                st.session_state["provider_flash"] = _("Added {name}. Its settings are below.", name=created.name)
                st.rerun()

if not views:
    st.stop()

# --- manage one -----------------------------------------------------------------------------

by_id = {str(v.id): v for v in views}
wanted = st.query_params.get(URL_PARAM)
if wanted is not None and wanted != st.session_state.get(URL_WRITTEN):  # a link or a reload names one
    if wanted in by_id:
        st.session_state["selected_provider"] = wanted
    else:
        st.info(_("The provider in the link was not found."))
if st.session_state.get("selected_provider") not in by_id:
    st.session_state["selected_provider"] = str(views[0].id)
selected_id = st.selectbox(
    _("Manage provider"), list(by_id), format_func=lambda i: by_id[i].name, key="selected_provider"
)
st.query_params[URL_PARAM] = st.session_state[URL_WRITTEN] = selected_id
view = by_id[selected_id]
pid = uuid.UUID(selected_id)

# Optimistic concurrency: remember the version the forms were filled from, so a save after
# someone else's change is refused instead of silently undoing it.
loaded_key = f"provider_loaded_{selected_id}"
version_key = f"provider_form_version_{selected_id}"
st.session_state.setdefault(loaded_key, view.updated_at)
st.session_state.setdefault(version_key, 0)
wk = f"p{selected_id[:8]}v{st.session_state[version_key]}"  # widget key prefix, bumped to reload the forms


def reload_forms() -> None:
    st.session_state.pop(loaded_key, None)
    st.session_state[version_key] = st.session_state.get(version_key, 0) + 1


def saved(new_view: svc.ProviderView, message: str) -> None:
    st.session_state[loaded_key] = new_view.updated_at
    st.session_state[version_key] += 1
    st.session_state["provider_flash"] = message
    st.rerun()


if st.session_state[loaded_key] != view.updated_at:
    st.warning(_("This provider was changed by someone else since you opened it."))
    st.button(_("Reload the current values"), on_click=reload_forms, key=f"{wk}_reload")

if view.key_problem:
    st.error(escape_markdown(_("The stored API key cannot be used: {problem}", problem=i18n.text(view.key_problem))))

# Keyed and tracked, so a save (which reruns the page) leaves the admin on the tab they were on.
settings_tab, models_tab, limits_tab, connection_tab, danger_tab = st.tabs(
    [i18n.text(t) for t in TABS], key="provider_tab", on_change="rerun"
)

with settings_tab, st.form(f"{wk}_edit"):
    e_name = st.text_input(_("Name"), value=view.name, max_chars=100, key=f"{wk}_name")
    e_name_err = st.empty()
    e_protocol = st.selectbox(
        _("Protocol"),
        PROTOCOLS,
        index=PROTOCOLS.index(view.protocol),
        format_func=protocol_label,
        key=f"{wk}_protocol",
    )
    e_endpoint = st.text_input(_("Endpoint URL"), value=view.endpoint_url, max_chars=255, key=f"{wk}_endpoint")
    e_endpoint_err = st.empty()
    st.text(_("Stored key: {key}", key=view.masked_key or _("not set")))
    e_key = st.text_input(
        _("New API key"), type="password", key=f"{wk}_key", help=_("Leave blank to keep the stored key")
    )
    e_clear = st.checkbox(_("Remove the stored key"), key=f"{wk}_clear_key")
    e_key_err = st.empty()
    cols = st.columns(4)
    e_images = cols[0].checkbox(_("Allow images"), value=view.allow_images, key=f"{wk}_images")
    e_videos = cols[1].checkbox(_("Allow videos"), value=view.allow_videos, key=f"{wk}_videos")
    e_files = cols[2].checkbox(_("Allow files"), value=view.allow_files, key=f"{wk}_files")
    e_active = cols[3].checkbox(_("Active"), value=view.is_active, key=f"{wk}_active")
    e_max = st.text_input(
        _("Max tokens per call"), value="" if view.max_tokens is None else str(view.max_tokens), key=f"{wk}_max"
    )
    e_max_err = st.empty()
    if st.form_submit_button(_("Save changes"), type="primary"):
        slots = {"name": e_name_err, "endpoint_url": e_endpoint_err, "api_key": e_key_err, "max_tokens": e_max_err}
        with form_errors(slots):
            new_view = svc.update_provider(
                engine(),
                user,
                pid,
                expected_updated_at=st.session_state[loaded_key],
                name=e_name,
                protocol=e_protocol,
                endpoint_url=e_endpoint,
                allow_images=e_images,
                allow_videos=e_videos,
                allow_files=e_files,
                max_tokens=e_max,
                is_active=e_active,
                api_key=e_key,
                clear_api_key=e_clear,
            )
            saved(new_view, _("Saved {name}.", name=new_view.name))


with models_tab:
    st.write(_("Models offered through this provider (empty means any model it accepts), the default, and prices."))
    if st.button(_("Refresh models from the provider"), key=f"{wk}_refresh"):
        with form_errors():
            with st.spinner(_("Asking the provider for its models…")):
                refresh = svc.refresh_models(engine(), user, pid, expected_updated_at=st.session_state[loaded_key])
            result = refresh.answer
            if refresh.view is None:
                st.error(
                    _("The provider answered {status}:", status=str(result.status_code))
                    if result.status_code
                    else _("The provider answered nothing:")
                )
                # The provider's text (key removed), or our own reason in the reader's language: never Markdown.
                st.code(i18n.text(result.error or ""), language=None)
            else:
                saved(
                    refresh.view,
                    _n(
                        "Found {n} model in {ms} ms.",
                        "Found {n} models in {ms} ms.",
                        len(result.models),
                        ms=result.latency_ms,
                    ),
                )

    prices = view.prices
    table_name = builtin_table(view.protocol, view.endpoint_url)
    shipped = builtin_prices()
    shipped_models = shipped.models.get(table_name, {}) if table_name else {}
    if table_name:
        st.caption(
            escape_markdown(
                _(
                    "Built-in prices ({table} list prices as of {date}, from {sources}) apply to models without a "
                    "price of your own. Type a price to override it for this provider; clear both to go back to the "
                    "built-in one. A model with neither is unpriced: costs leave it out and say so.",
                    table=table_name,
                    date=i18n.day(shipped.as_of),
                    sources=", ".join(shipped.sources),
                )
            )
        )
    else:
        st.caption(
            _(
                "No built-in prices apply: this endpoint is not OpenAI's own, so its models cost what the server "
                "charges. Type their prices here; a model without one is unpriced, and costs leave it out and say so."
            )
        )
    # The table's columns are headed as the reader reads them (its rows are read back by these headers).
    col = {
        "model": _("Model"),
        "input": _("Your input USD / 1M tokens"),
        "output": _("Your output USD / 1M tokens"),
        "input_in_use": _("Input in use"),
        "output_in_use": _("Output in use"),
        "source": _("Price from"),
    }
    rows = []
    for m in sorted(set(view.models) | set(prices)):
        in_use = price_for(prices, m, view.protocol, view.endpoint_url)
        rows.append(
            {
                col["model"]: m,
                col["input"]: prices.get(m, {}).get("input"),
                col["output"]: prices.get(m, {}).get("output"),
                col["input_in_use"]: in_use.input,
                col["output_in_use"]: in_use.output,
                col["source"]: i18n.text(PRICE_SOURCES[in_use.source]),
            }
        )
    table = pd.DataFrame(rows, columns=list(col.values()))
    edited = st.data_editor(
        table,
        num_rows="dynamic",
        hide_index=True,
        key=f"{wk}_models",
        column_config={
            col["model"]: st.column_config.TextColumn(max_chars=100, required=True),
            col["input"]: st.column_config.NumberColumn(min_value=0.0),
            col["output"]: st.column_config.NumberColumn(min_value=0.0),
            col["input_in_use"]: st.column_config.NumberColumn(disabled=True),
            col["output_in_use"]: st.column_config.NumberColumn(disabled=True),
            col["source"]: st.column_config.TextColumn(disabled=True),
        },
    )
    if shipped_models:
        with st.expander(
            _n(
                "Built-in prices for this protocol ({n} model)",
                "Built-in prices for this protocol ({n} models)",
                len(shipped_models),
            )
        ):
            st.dataframe(
                pd.DataFrame(
                    [
                        [m, p["input"], p["output"], p.get("cached_input"), m in prices]
                        for m, p in sorted(shipped_models.items())
                    ],
                    columns=[
                        _("Model"),
                        _("Input USD / 1M tokens"),
                        _("Output USD / 1M tokens"),
                        _("Cached input USD / 1M tokens"),
                        _("Overridden here"),
                    ],
                ),
                hide_index=True,
                width="stretch",
            )
            st.caption(
                _(
                    "Dated snapshots are priced as their family: `gpt-4o-2024-08-06` as `gpt-4o`, "
                    "`claude-sonnet-4-5-20250929` as `claude-sonnet-4-5`, `gemini-2.0-flash-001` as "
                    "`gemini-2.0-flash`."
                )
            )
    model_names = [str(m).strip() for m in edited[col["model"]].dropna() if str(m).strip()]
    default = st.selectbox(
        _("Default model"),
        [None, *model_names],
        index=([None, *model_names].index(view.default_model) if view.default_model in model_names else 0),
        format_func=lambda m: _("none") if m is None else m,
        key=f"{wk}_default",
    )
    models_err = st.empty()  # every problem, listed per field: they quote model ids, shown as text
    if st.button(_("Save models and prices"), key=f"{wk}_save_models"):
        new_prices: dict[str, dict[str, float]] = {}
        for _i, row in edited.iterrows():
            model = str(row[col["model"]] or "").strip()
            price = {k: float(row[col[k]]) for k in ("input", "output") if pd.notna(row[col[k]])}
            if model and price:
                new_prices[model] = price
        with form_errors({"settings": models_err}):
            new_view = svc.update_provider_settings(
                engine(),
                user,
                pid,
                {"models": model_names, "default_model": default, "prices": new_prices},
                expected_updated_at=st.session_state[loaded_key],
            )
            saved(new_view, _("Models and prices saved."))

    with st.expander(_("Advanced: edit the settings as JSON")):
        raw = st.text_area(_("Settings JSON"), value=settings_json(view.settings), height=240, key=f"{wk}_json")
        raw_err = st.empty()
        if st.button(_("Validate and save JSON"), key=f"{wk}_save_json"):
            with form_errors({"settings": raw_err}):
                new_view = svc.update_provider_settings_json(
                    engine(), user, pid, raw, expected_updated_at=st.session_state[loaded_key]
                )
                saved(new_view, _("Settings saved."))


with limits_tab:
    limits_view.limit_editor(
        user,
        provider_target(pid),
        key=f"provider_limits_{pid}",
        title=_("The organisation's limits on this provider"),
        help_text=_("Counts every call through this provider, by everyone (API and playground alike)."),
    )
    limits_view.show_budgets(
        _("The organisation's spend on it"),
        limits_view.provider_budgets(user, pid),
        _(
            "No budget is set on this provider: set one above to follow its spend per period here "
            "(the Usage page shows its cost at any time)."
        ),
    )


with connection_tab:
    st.write(_("Makes one real request to the provider's model list, with the stored key or one typed here."))
    typed = st.text_input(_("Try another key (optional)"), type="password", key=f"{wk}_try_key")
    typed_err = st.empty()
    if st.button(_("Test connection"), key=f"{wk}_test"):
        with form_errors({"api_key": typed_err}):
            with st.spinner(_("Connecting…")):
                result = svc.test_connection(engine(), user, pid, typed_api_key=typed or None)
            cols = st.columns(3)
            cols[0].metric(_("Status"), result.status_code or _("no answer"))
            cols[1].metric(_("Latency"), f"{i18n.number(result.latency_ms)} ms")
            cols[2].metric(_("Models on the first page"), i18n.number(len(result.models)))
            if result.ok:
                st.success(_("Connected."))
            else:
                st.error(_("The provider refused or did not answer:"))
                st.code(i18n.text(result.error or ""), language=None)  # the provider's text (key removed) or ours


with danger_tab:
    if view.is_active:
        st.write(_("Deactivating refuses new calls through this provider; its history stays."))
        if st.button(_("Deactivate"), key=f"{wk}_deactivate"):
            with form_errors():
                new_view = svc.set_provider_active(engine(), user, pid, False)
                saved(new_view, _("{name} is deactivated.", name=new_view.name))
    elif st.button(_("Activate"), key=f"{wk}_activate"):
        with form_errors():
            new_view = svc.set_provider_active(engine(), user, pid, True)
            saved(new_view, _("{name} is active.", name=new_view.name))

    st.divider()
    log_rows = svc.provider_log_count(engine(), user, pid)
    st.write(
        _n(
            "Deleting removes the provider and every user's permission for it. {n} logged call keeps its numbers "
            "but loses its link to this provider.",
            "Deleting removes the provider and every user's permission for it. {n} logged calls keep their numbers "
            "but lose their link to this provider.",
            log_rows,
        )
    )
    confirm = st.text_input(_("Type the provider's name to confirm"), key=f"{wk}_delete_confirm")
    if st.button(_("Delete provider"), type="primary", key=f"{wk}_delete", disabled=confirm != view.name):
        with form_errors():
            unlinked = svc.delete_provider(engine(), user, pid)
            st.session_state.pop("selected_provider", None)
            st.session_state.pop(URL_WRITTEN, None)
            del st.query_params[URL_PARAM]
            st.session_state["provider_flash"] = _n(
                "Deleted. {n} logged call no longer names a provider.",
                "Deleted. {n} logged calls no longer name a provider.",
                unlinked,
            )
            st.rerun()
