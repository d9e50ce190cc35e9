"""The Usage page's rollup check runs beside the page (a thread of its own): off the script's thread, while
the page goes on with its reads; its warning still above the tiles, in the reader's language, and still
written when the page stops early (no call matches the filters)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import Engine, update

from mindroute.db import transaction
from mindroute.models import User, utcnow
from mindroute.services import overview, usage
from tests.pages.helpers import app_for, sign_in, texts
from tests.pages.test_usage_pages import USAGE, calls, metric, open_page, people  # noqa: F401 - fixtures
from tests.test_analytics import insert_rows, log_row

WAIT_S = 10.0
SLOW_S = 1.0


def warnings(at) -> list[str]:
    return [w.value for w in at.warning]


def walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def test_the_check_runs_beside_the_page(engine: Engine, monkeypatch, calls, people) -> None:  # noqa: F811
    _admin, alice, _bob, p1, _p2 = people
    insert_rows(engine, [log_row(utcnow() - timedelta(hours=5, minutes=i), alice, p1, "m-big") for i in range(3)])
    budgets_read = threading.Event()
    seen: dict[str, object] = {}
    real_check, real_budgets = usage.rollup_check, overview.budget_figures

    def slow_check(*args, **kwargs):
        # Waits for the page to read the budgets, which it does after the tiles, below the notice: run in
        # the script's thread this would wait the whole WAIT_S and see nothing.
        seen["check_thread"] = threading.get_ident()
        seen["budgets_first"] = budgets_read.wait(WAIT_S)
        return real_check(*args, **kwargs)

    def budgets(*args, **kwargs):
        seen["script_thread"] = threading.get_ident()
        budgets_read.set()
        return real_budgets(*args, **kwargs)

    at = sign_in(app_for(engine, monkeypatch).run(), "admin@example.com")  # the Overview reads budgets too
    monkeypatch.setattr(usage, "rollup_check", slow_check)
    monkeypatch.setattr(overview, "budget_figures", budgets)
    at.switch_page(USAGE).run()
    assert not at.exception, at.exception

    assert seen["budgets_first"] is True
    assert seen["check_thread"] != seen["script_thread"]
    (warning,) = warnings(at)
    assert "behind the logs" in warning and "13 calls" in warning and "count 10" in warning
    assert metric(at, "Requests") == "10"
    order = [n for n in walk(at.main) if getattr(n, "type", None) in ("warning", "metric")]
    assert order[0].type == "warning", [n.type for n in order]  # above the tiles, where it was


def test_an_empty_period_still_says_the_rollups_are_behind(engine: Engine, monkeypatch, people) -> None:  # noqa: F811
    # Calls loaded straight into the logs of a new install: no rollup yet, so no call matches on the page,
    # which stops early; the notice is written before the stop.
    _admin, alice, _bob, p1, _p2 = people
    insert_rows(engine, [log_row(utcnow() - timedelta(hours=3, minutes=i), alice, p1, "m-big") for i in range(3)])
    real_check = usage.rollup_check

    def slow_check(*args, **kwargs):
        time.sleep(SLOW_S)  # still running when the page reaches its stop
        return real_check(*args, **kwargs)

    monkeypatch.setattr(usage, "rollup_check", slow_check)
    at = open_page(engine, monkeypatch, "admin@example.com", USAGE)
    assert "No calls match these filters in this period." in texts(at)
    (warning,) = warnings(at)
    assert "behind the logs" in warning and "3 calls" in warning and "count 0" in warning


def test_the_notice_is_in_the_readers_language(engine: Engine, monkeypatch, calls, people) -> None:  # noqa: F811
    _admin, alice, _bob, p1, _p2 = people
    with transaction(engine) as session:
        session.execute(update(User).where(User.email == "alice@example.com").values(language="ko"))
    insert_rows(engine, [log_row(utcnow() - timedelta(hours=5, minutes=i), alice, p1, "m-big") for i in range(3)])

    (warning,) = warnings(open_page(engine, monkeypatch, "alice@example.com", USAGE))
    assert "이 수치는 로그보다 늦습니다" in warning and "내 호출이 9건" in warning and "6건" in warning
    assert "관리자에게 로그로 집계를 다시 만들어 달라고 요청하세요." in warning
    (warning,) = warnings(open_page(engine, monkeypatch, "admin@example.com", USAGE))  # English, his choice
    assert "13 calls" in warning and "rebuild-rollups" in warning
