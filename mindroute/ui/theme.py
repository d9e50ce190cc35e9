"""A user's light/dark choice from Account, applied through the browser's own theme setting.

Both palettes live in .streamlit/config.toml, and Streamlit picks between them in the browser: by its
prefers-color-scheme ("System"), or by the choice kept in localStorage (the key Streamlit 1.67's frontend
reads at load, `stActiveTheme-<path>-v2`, holding "System", "Light" or "Dark", the values its own Settings
menu writes). No Python API sets it, so a user's choice is written there by a fixed script (no user text
in it, the value one of three constants) and the page reloaded once so Streamlit reads it.
tests/browser/test_theme_browser.py checks this against the installed frontend.
"""

from __future__ import annotations

import json

import streamlit as st

from mindroute.i18n import _l
from mindroute.ui.navigation import PAGES

# users.theme (None follows the browser) -> Streamlit's stored value.
_STORED = {None: "System", "light": "Light", "dark": "Dark"}
# Account's labels, in the order offered ("" follows the browser): Messages, shown with i18n.text.
CHOICES: dict[str, str] = {"": _l("Follow the browser"), "light": _l("Light"), "dark": _l("Dark")}
_KEY_FORMAT = "stActiveTheme-{path}-v2"
_APPLY_REQUEST = "mindroute_theme_apply"


def _paths() -> list[str]:
    # The frontend keys the choice by the path it was loaded at: write it for every page this app has.
    paths = ["/", "/signin"] + ["/" + spec.path.rsplit("/", 1)[-1].removesuffix(".py") for spec in PAGES]
    return sorted(set(paths))


def _script(stored: str, *, reload: bool, fresh: bool) -> str:
    keys = [_KEY_FORMAT.format(path=p) for p in _paths()]
    # json.dumps of constants only: the three stored values and the app's page paths.
    return f"""<script>
(() => {{
  const want = {json.dumps(stored)};
  const keys = {json.dumps(keys)}.concat(["stActiveTheme-" + window.location.pathname + "-v2"]);
  const mark = "mindroute-theme-applied";
  const done = want + " " + window.location.pathname;
  if ({"true" if fresh else "false"}) window.sessionStorage.removeItem(mark);  // a new choice may reload again
  for (const key of keys) window.localStorage.setItem(key, JSON.stringify(want));
  if ({"true" if reload else "false"} && window.sessionStorage.getItem(mark) !== done) {{
    window.sessionStorage.setItem(mark, done);  // at most one reload per choice and page: never a loop
    window.location.reload();
  }}
}})();
</script>"""


def request_apply() -> None:
    """After Account saved a new choice: apply it on this run, even when it is "follow the browser"."""
    st.session_state[_APPLY_REQUEST] = True


def apply(theme: str | None, *, can_reload: bool) -> None:
    """Make the browser show `theme` (users.theme). Runs on every signed-in page; draws nothing when the
    active theme already matches. `can_reload` is False for a tab-lived session, which a reload would sign
    out: then the choice is stored for the browser's next visit."""
    stored = _STORED.get(theme, "System")
    active = st.context.theme.type  # "light" / "dark" as the browser shows it; None in AppTest
    requested = st.session_state.pop(_APPLY_REQUEST, False)
    mismatch = theme is not None and active is not None and active != theme
    if not (requested or mismatch):
        return
    st.html(_script(stored, reload=can_reload, fresh=requested), unsafe_allow_javascript=True)
