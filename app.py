"""The ASGI entry: the Streamlit app and MindRoute's own HTTP routes in one process.

Run with `streamlit run app.py` (or `uvicorn app:app`).
"""

import streamlit as st

from mindroute import web

web.ROUTES_MOUNTED = True

app = st.App("Home.py", routes=web.routes(), middleware=web.middleware(), lifespan=web.lifespan)
