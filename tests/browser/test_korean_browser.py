"""The console in Korean in a real Chromium (issue 19): a browser that asks for Korean (locale ko-KR) gets
the sign-in page and, once signed in, every page in Korean, drawn with the app's own Hangul font (nothing
fetched from another host) and with no Korean label cut short in the sidebar or the tiles at 1400 px; the
account's Language switched to English makes the pages English.

tests/pages/test_korean_pages.py reads what each page script draws (AppTest); this reads what the browser
shows, Streamlit's own frontend included."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from mindroute.cli.seed import seed_demo
from mindroute.db import transaction
from mindroute.i18n import Message
from mindroute.models import User
from mindroute.services.users import create_user
from mindroute.ui.navigation import pages_for
from tests.browser.shell_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, USER_EMAIL, USER_PASSWORD, cookie_sign_in, settle
from tests.browser.test_first_run_browser import create_first_admin
from tests.pages.korean import data_terms, english_leftovers

pytestmark = pytest.mark.browser

HANGUL = re.compile("[\uac00-\ud7a3]")
FONT = "MindRoute Hangul"
# Streamlit's own frontend words, which no catalog of ours reaches: the date input's placeholder.
FRONTEND_WORDS = {"yyyy", "mm", "dd"}

# The visible text of the elements `root` selects, one string per text node: icons (Material Symbols
# ligatures such as "visibility"), code, charts (Plotly's SVG, read by _CHART_TEXTS), the data grid (a
# canvas) and the sidebar's "View N more" button, Streamlit's own (expanded=True navigation has none).
_TEXTS = """(root) => {
  const skip = "[data-testid='stIconMaterial'], code, pre, svg, style, script, [aria-hidden='true'], "
    + "[data-testid='stDataFrame'], .js-plotly-plot, [data-testid='stSidebarNavViewButton']";
  const out = [];
  for (const base of document.querySelectorAll(root)) {
    const walker = document.createTreeWalker(base, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const text = node.textContent.trim();
      const parent = node.parentElement;
      if (!text || !parent || parent.closest(skip)) continue;
      if (!parent.checkVisibility({visibilityProperty: true})) continue;
      out.push(text);
    }
  }
  return out;
}"""

# What Plotly draws in its SVG: titles, axis titles, legend entries, annotations and tick labels.
_CHART_TEXTS = """() => Array.from(document.querySelectorAll([".gtitle", ".xtitle", ".ytitle", ".legendtext",
    ".annotation-text", ".xtick text", ".ytick text"].map(c => ".js-plotly-plot " + c).join(", ")))
  .filter(e => e.checkVisibility()).map(e => e.textContent.trim()).filter(t => t)"""

# Labels whose text is wider than their box (cut short with an ellipsis or hidden by overflow).
_CUT = """(selector) => Array.from(document.querySelectorAll(selector))
  .filter(e => e.checkVisibility() && e.textContent.trim() && e.scrollWidth > e.clientWidth + 1)
  .map(e => e.textContent.trim())"""
SIDEBAR_LABELS = (
    "[data-testid='stSidebarNavLink'] [data-testid='stMarkdownContainer'], [data-testid='stSidebarNavLink'] p"
)
TILE_LABELS = "[data-testid='stMetricLabel'], [data-testid='stMetricLabel'] *"
# Every page's widget labels, tabs, chosen options, buttons, expanders, tile values and captions.
PAGE_LABELS = ", ".join(
    [
        "[data-testid='stWidgetLabel'] p",
        "[data-baseweb='tab'] p",
        "[data-baseweb='select'] div",
        "button p",
        "[data-testid='stExpander'] summary p",
        "[data-testid='stMetricValue'] *",
        "[data-testid='stCaptionContainer'] p",
    ]
)


def korean(title: str) -> str:
    return Message(title).translated("ko")


def texts(page, root: str = "[data-testid='stMain']") -> list[str]:
    return page.evaluate(_TEXTS, root)


def leftovers(page, data: set[str], root: str = "[data-testid='stMain']") -> list[str]:
    """English left in the page's text and, once they are drawn, in its charts."""
    found = [("text", t) for t in texts(page, root)]
    if root == "[data-testid='stMain']" and page.locator("[data-testid='stPlotlyChart']").count():
        page.locator(".js-plotly-plot .main-svg").first.wait_for()
        page.wait_for_timeout(500)
        found += [("chart", t) for t in page.evaluate(_CHART_TEXTS)]
    return english_leftovers(found, data, FRONTEND_WORDS)


def heading(page) -> str:
    return page.locator("[data-testid='stMain'] h1").first.inner_text().strip()


def open_page(page, base: str, url_path: str) -> None:
    page.goto(f"{base}/{url_path}")
    settle(page)
    page.locator("[data-testid='stMain'] h1").first.wait_for()
    page.wait_for_timeout(300)  # metrics and charts draw just after the script run


def hangul_font_in_use(page) -> bool:
    """The shipped face has loaded (the page holds Hangul in its font stack) and draws Hangul."""
    return page.evaluate(
        """async (family) => {
          await document.fonts.ready;
          const faces = Array.from(document.fonts).filter(f => f.family.replaceAll('"', '') === family);
          return faces.some(f => f.status === 'loaded') && document.fonts.check(`16px "${family}"`, '한국어');
        }""",
        FONT,
    )


def test_a_korean_browser_reads_korean_until_the_account_says_english(server, browser_context) -> None:
    base = server.base_url
    seed_demo(server.engine, rows=200, days=7, seed=19, progress=False)  # users, providers, calls; no admin
    context = browser_context.browser.new_context(locale="ko-KR", viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    elsewhere: list[str] = []
    fonts: list[str] = []
    context.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else elsewhere.append(r.url))
    context.on("request", lambda r: fonts.append(r.url) if "/app/static/fonts/" in r.url else None)
    try:
        page = context.new_page()
        data = data_terms(server.engine)
        # Signed out, no user's choice: the browser's language (st.context.locale).
        page.goto(base)
        page.locator(".st-key-first_admin_name input").wait_for()
        settle(page)
        assert heading(page) and HANGUL.search(heading(page)), heading(page)
        assert leftovers(page, data) == []
        create_first_admin(page, base)
        settle(page)
        assert HANGUL.search(page.locator("form[data-testid='mr-signin-form']").inner_text())
        assert leftovers(page, data) == []
        assert hangul_font_in_use(page)
        data = data_terms(server.engine)  # with the new administrator's name
        cookie_sign_in(page, ADMIN_EMAIL, "not the password")  # refused: said in Korean
        page.locator("[data-testid='stAlert']").first.wait_for()
        assert HANGUL.search(page.locator("[data-testid='stAlert']").first.inner_text())
        assert leftovers(page, data) == []
        cookie_sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
        page.wait_for_url(f"{base}/overview*")
        settle(page)
        assert heading(page) == korean("Overview") != "Overview"
        assert hangul_font_in_use(page)
        assert any(url.endswith(".woff2") for url in fonts), fonts

        # The sidebar: Korean, and every page's name whole at 1400 px.
        more = page.locator("[data-testid='stSidebarNavViewButton']")
        if more.count():
            more.click()
        sidebar = texts(page, "[data-testid='stSidebar']")
        for spec in pages_for("admin"):
            assert any(t.startswith(korean(spec.title)) for t in sidebar), (spec.title, sidebar)
        assert english_leftovers([("sidebar", t) for t in sidebar], data) == []
        assert page.evaluate(_CUT, SIDEBAR_LABELS) == []

        # Every administrator's page: no English outside names and data, Streamlit's frontend included.
        found: dict[str, list[str]] = {}
        for spec in pages_for("admin"):
            open_page(page, base, spec.url_path)
            assert heading(page).startswith(korean(spec.title)), (spec.title, heading(page))
            if spec.url_path in ("overview", "usage"):  # the tiles: drawn, and none of their labels cut short
                page.locator("[data-testid='stMetricLabel']").first.wait_for()
                settle(page)
                assert page.evaluate(_CUT, TILE_LABELS) == [], spec.url_path
            if left := leftovers(page, data):
                found[spec.url_path] = left
            if cut := page.evaluate(_CUT, PAGE_LABELS):
                found[spec.url_path] = [*found.get(spec.url_path, []), *(f"cut short: {c!r}" for c in cut)]
        assert found == {}

        # Account: Language -> English; the next run is English, and so is every page after a reload.
        open_page(page, base, "account")
        page.locator(".st-key-account_language label").filter(has_text="English").click()
        page.locator(".st-key-account_language_save button").click()
        page.get_by_role("heading", name="Account", exact=True).wait_for()
        page.get_by_text("Language saved.").wait_for()
        page.reload()
        settle(page)
        page.get_by_role("heading", name="Account", exact=True).wait_for()
        open_page(page, base, "usage")
        assert heading(page) == "Usage"
        assert [t for t in texts(page) + texts(page, "[data-testid='stSidebar']") if HANGUL.search(t)] == []
        with transaction(server.engine) as session:
            assert session.scalar(select(User.language).where(User.email == ADMIN_EMAIL)) == "en"
            create_user(session, None, email=USER_EMAIL, name="Plain", password=USER_PASSWORD, role="user")

        # A user's pages (Calls is theirs alone), in another Korean browser: Korean, whatever the admin chose.
        other = browser_context.browser.new_context(locale="ko-KR", viewport={"width": 1400, "height": 900})
        other.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else elsewhere.append(r.url))
        try:
            mine = other.new_page()
            mine.goto(base)
            cookie_sign_in(mine, USER_EMAIL, USER_PASSWORD)
            data = data_terms(server.engine)
            for spec in pages_for("user"):
                if "admin" in spec.roles and spec.url_path not in ("overview", "usage"):
                    continue  # read above as the administrator
                open_page(mine, base, spec.url_path)
                assert heading(mine).startswith(korean(spec.title)), (spec.title, heading(mine))
                if left := leftovers(mine, data):
                    found[spec.url_path] = left
            assert found == {}
            assert english_leftovers([("sidebar", t) for t in texts(mine, "[data-testid='stSidebar']")], data) == []
        finally:
            other.close()
        assert elsewhere == []
    finally:
        context.close()


def test_an_english_browser_gets_english_and_no_hangul_font(server, browser_context) -> None:
    """The Hangul face is declared for Hangul only (unicodeRange): an English page never downloads it."""
    context = browser_context.browser.new_context(locale="en-US", viewport={"width": 1400, "height": 900})
    fonts: list[str] = []
    context.on("request", lambda r: fonts.append(r.url) if "/app/static/fonts/" in r.url else None)
    try:
        page = context.new_page()
        create_first_admin(page, server.base_url)
        assert [t for t in texts(page) if HANGUL.search(t)] == []
        assert page.evaluate("document.fonts.ready.then(() => document.fonts.size)") > 0
        assert fonts == []
    finally:
        context.close()
