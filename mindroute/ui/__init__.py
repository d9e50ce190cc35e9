"""The Streamlit side: the only package besides the page scripts that imports streamlit."""
