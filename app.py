"""The ASGI entry: the Streamlit app, MindRoute's own HTTP routes and the OpenAI-compatible API in one process.

Run with `streamlit run app.py` (or `uvicorn app:app`); the API alone: `uvicorn mindroute.http.api:app`.
Every /v1 request is handed to the API by `api.ApiFirst`, the first middleware, so API calls skip
the page middleware (Streamlit's and MindRoute's) and unknown /v1 paths get the API's JSON 404.
"""

import streamlit as st
from starlette.middleware import Middleware
from streamlit.runtime.pages_manager import PagesManager

from mindroute.http import api, web
from mindroute.ui import navigation

web.ROUTES_MOUNTED = True
# Home.py routes with st.navigation, which sets this flag on its first run. Until then Streamlit treats the
# pages/ folder as a legacy multipage app: the very first session's deep link (/usage) got "Page not
# found", and a page script directly in pages/ would run without Home.py's sign-in check. Set it up front.
PagesManager.uses_pages_directory = False
web.PAGE_PATHS = frozenset(spec.url_path for spec in navigation.PAGES)

app = st.App(
    "Home.py",
    routes=web.routes(),
    middleware=[Middleware(api.ApiFirst), *web.middleware()],
    lifespan=api.lifespan,
)
