"""The ASGI entry: the Streamlit app, MindRoute's own HTTP routes and the OpenAI-compatible API in one process.

Run with `streamlit run app.py` (or `uvicorn app:app`); the API alone: `uvicorn mindroute.api:app`.
"""

import streamlit as st

from mindroute import api, web

web.ROUTES_MOUNTED = True

app = st.App("Home.py", routes=[*web.routes(), *api.routes()], middleware=web.middleware(), lifespan=api.lifespan)
