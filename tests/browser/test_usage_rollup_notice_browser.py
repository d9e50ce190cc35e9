"""The Usage page's rollup warning in a real server and browser: written by its parallel fragment (a thread of
Streamlit's own beside the script), above the tiles, in the language of a Korean browser, with no error in
the server's log. tests/pages/test_usage_rollup_notice.py checks the same in AppTest, and that it runs beside."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mindroute.analytics.rollups import rebuild_rollups
from mindroute.cli.seed import seed_demo
from mindroute.db import transaction
from mindroute.i18n import Message
from mindroute.models import Provider, User, utcnow
from mindroute.services.users import create_user
from tests.browser.test_auth_browser import ADMIN_EMAIL, ADMIN_PASSWORD, settle, sign_in
from tests.test_analytics import insert_rows, log_row

pytestmark = pytest.mark.browser

BEHIND = (
    "These numbers are behind the logs: in this period the logs hold {logs} calls, the usage rollups this page reads "
    "count {rolled}."
)
FIX = "Run `python -m mindroute rebuild-rollups --only-changed` to recompute the days that differ from the logs."


def test_the_rollup_warning_in_a_korean_browser(server, browser_context) -> None:
    seed_demo(server.engine, rows=300, days=7, seed=20261205, progress=False)
    rebuild_rollups(server.engine, progress=False)
    with transaction(server.engine) as session:
        create_user(session, None, email=ADMIN_EMAIL, name="Root", password=ADMIN_PASSWORD, role="admin")
    with transaction(server.engine) as session:
        admin = session.scalar(select(User).where(User.email == ADMIN_EMAIL))
        provider = session.scalars(select(Provider)).first()
        session.expunge_all()
    now = utcnow()
    insert_rows(server.engine, [log_row(now - timedelta(hours=2, minutes=i), admin, provider, "m") for i in range(4)])

    context = browser_context.browser.new_context(locale="ko-KR", viewport={"width": 1400, "height": 900})
    context.set_default_timeout(60_000)
    try:
        page = context.new_page()
        sign_in(page, server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
        page.goto(f"{server.base_url}/usage")
        settle(page)
        warning = page.locator("[data-testid='stAlertContentWarning']")
        warning.first.wait_for()
        page.locator("[data-testid='stMetric']").first.wait_for()
        text = " ".join(warning.first.inner_text().split())
        start = Message(BEHIND).translated("ko").split("{")[0].strip()  # "이 수치는 로그보다 늦습니다. ..."
        assert start and start in text, text
        assert "rebuild-rollups" in text and Message(FIX).translated("ko").split("`")[-1].strip() in text, text
        assert "behind the logs" not in text
        # Above the tiles, where the page keeps it.
        above = page.evaluate(
            """() => {
                const w = document.querySelector("[data-testid='stAlertContentWarning']");
                const m = document.querySelector("[data-testid='stMetric']");
                return !!(w.compareDocumentPosition(m) & Node.DOCUMENT_POSITION_FOLLOWING);
            }"""
        )
        assert above
        log = server.log()
        assert "Traceback" not in log and "parallel fragment" not in log, log
    finally:
        context.close()
