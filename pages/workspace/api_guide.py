"""API guide: how to call MindRoute's OpenAI-compatible API with your key, with copyable examples."""

from mindroute.ui.session import require_user

user = require_user()

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from mindroute.i18n import _  # noqa: E402
from mindroute.services.model_ids import api_model_ids  # noqa: E402
from mindroute.ui import api_guide as guide  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402
from mindroute.ui.session import cookie_routes_available  # noqa: E402

st.title(_("API guide"))
st.caption(
    _(
        "MindRoute answers OpenAI's chat completions API, so OpenAI's SDKs and tools that speak it work with it: "
        "point them at the base URL below and use one of your MindRoute API keys. Calls are checked against the "
        "same permissions as the Playground and show up on your Usage page."
    )
)

models = api_model_ids(engine(), user)

page_url = st.context.url if isinstance(st.context.url, str) else None
base = guide.api_base_url(page_url, dict(st.context.headers) if st.context.headers else None)

# --- where and with what --------------------------------------------------------------------------

st.subheader(_("Base URL"))
st.code(base.url, language=None)
if base.guessed:
    st.warning(
        _(
            "This address is a guess ({origin}): the app could not read the address your browser "
            "opened it at. Use that address followed by /v1.",
            origin=guide.FALLBACK_ORIGIN,
        )
    )
if not cookie_routes_available():
    st.warning(
        _(
            "This app was started without its API (as `streamlit run Home.py`): the API answers when it is "
            "started with `streamlit run app.py`, or alone with `uvicorn mindroute.http.api:app`."
        )
    )

st.subheader(_("Your key"))
st.write(
    _(
        "Create a key on the API keys page and copy it then: its full text is shown only once, and MindRoute "
        "stores only a digest of it. The examples read it from an environment variable:"
    )
)
st.page_link("pages/workspace/api_keys.py", label=_("Create an API key"), icon=":material/key:")
st.code(guide.key_env_example(), language="bash")

st.subheader(_("Models you may use"))
if models:
    st.dataframe(
        pd.DataFrame(models, columns=[_("provider"), _("model id")]),
        hide_index=True,
        width="stretch",
        key="api_guide_models",
    )
    ids = [model_id for _provider, model_id in models]
    model = st.selectbox(_("Model in the examples"), ids, key="api_guide_model")
else:
    st.info(
        _(
            "You may not use any model yet: an administrator grants access to providers. "
            "The examples below use a placeholder model id."
        )
    )
    model = guide.EXAMPLE_MODEL
st.caption(_("A model id is `<provider name>/<model>`; `GET /v1/models` lists the same ids for your key."))

# --- examples -------------------------------------------------------------------------------------

st.subheader(_("Examples"))
curl_tab, python_tab, node_tab = st.tabs(["curl", "Python (openai)", "Node.js (openai)"])
with curl_tab:
    st.caption(_("One answer"))
    st.code(guide.curl_example(base, model), language="bash")
    st.caption(_("Streamed (server-sent events; the last event before [DONE] carries the token usage)"))
    st.code(guide.curl_example(base, model, stream=True), language="bash")
    st.caption(_("The models your key may use"))
    st.code(guide.curl_models_example(base), language="bash")
with python_tab:
    st.caption(_("One answer"))
    st.code(guide.python_example(base, model), language="python")
    st.caption(_("Streamed"))
    st.code(guide.python_example(base, model, stream=True), language="python")
with node_tab:
    st.caption(_("One answer (an ES module)"))
    st.code(guide.node_example(base, model), language="javascript")
    st.caption(_("Streamed"))
    st.code(guide.node_example(base, model, stream=True), language="javascript")

st.subheader(_("Tools, structured output and embeddings"))
st.caption(
    _(
        "With the Python SDK; the other SDKs take the same fields. Tool calls keep their ids across the round "
        "trip, and every provider's model answers in OpenAI's shape."
    )
)
tools_tab, structured_tab, embeddings_tab = st.tabs([_("Tool calling"), _("Structured output"), _("Embeddings")])
with tools_tab:
    st.caption(
        _(
            "The model answers with tool_calls (finish_reason tool_calls); run each one and send its result back "
            "in a tool message naming the call's id, until the model answers with text"
        )
    )
    st.code(guide.python_tools_example(base, model), language="python")
with structured_tab:
    st.caption(_("An answer that is JSON matching your schema (response_format json_schema)"))
    st.code(guide.python_structured_example(base, model), language="python")
with embeddings_tab:
    st.caption(_("Vectors for one text or several (POST /v1/embeddings): use an embedding model's id"))
    st.code(guide.python_embeddings_example(base, model), language="python")

# --- reference ------------------------------------------------------------------------------------

st.subheader(_("Reference"))
st.write(_("The API's OpenAPI 3.1 document (no key needed):"))
st.code(base.openapi_url, language=None)
st.link_button(_("Open /v1/openapi.json"), base.openapi_url, icon=":material/open_in_new:")

st.subheader(_("Errors"))
st.write(_("A refused or failed call answers one of these statuses, with a JSON body in OpenAI's shape:"))
st.dataframe(guide.shown_error_statuses(), hide_index=True, width="stretch", key="api_guide_errors")
st.code(guide.error_body_example(), language="json")
st.caption(
    _(
        "Calls made with your key are logged, refused ones too: open one on your Calls page (Logs, for "
        "administrators) to see what was sent and answered, or to open a support ticket about it."
    )
)
