"""Usage analytics on both databases, checked against an independent computation over raw rows."""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from mindroute.analytics.facts import load_facts
from mindroute.analytics.filter import UsageFilter, bucket_edges, custom_range, preset_range
from mindroute.analytics.histograms import exact_percentile, histogram_percentile, latency_bucket, latency_bucket_value
from mindroute.analytics.rollups import prune_logs, rebuild_rollups
from mindroute.cli.main import main
from mindroute.db import transaction
from mindroute.models import Log, Provider, UsageRollup, User
from mindroute.services.call_log import CallRecord, write_call_log
from mindroute.services.usage import usage_page

PRICES = {"m-big": {"input": 3.0, "output": 15.0}, "m-small": {"input": 0.5, "output": 1.5}}
T0 = datetime(2026, 10, 1)


@dataclass
class World:
    admin: User
    alice: User
    bob: User
    p1: Provider
    p2: Provider
    rows: list[dict]


def make_people(engine: Engine) -> tuple[User, User, User, Provider, Provider]:
    with transaction(engine) as session:
        admin = User(email="admin@example.com", name="Admin", password="!" * 60, role="admin")
        alice = User(email="alice@example.com", name="Alice", password="!" * 60)
        bob = User(email="bob@example.com", name="Bob", password="!" * 60)
        p1 = Provider(name="P1", settings={"models": list(PRICES), "default_model": None, "prices": PRICES})
        p2 = Provider(name="P2", settings={"models": ["m-free"], "default_model": None, "prices": {}})
        session.add_all([admin, alice, bob, p1, p2])
    return admin, alice, bob, p1, p2


def log_row(
    when: datetime,
    user: User | None,
    provider: Provider | None,
    model: str | None,
    *,
    status: int = 200,
    prompt: int | None = 10,
    completion: int | None = 5,
    duration: int | None = 500,
    source: str | None = None,
    api_key: str | None = None,
    error: str | None = None,
) -> dict:
    body: dict = {"model": model}
    if source:
        body["source"] = source
    if api_key:
        body["api_key_id"] = api_key
    tokens = None if prompt is None or completion is None else prompt + completion
    return {
        "id": uuid.uuid4(),
        "user_id": user.id if user else None,
        "provider_id": provider.id if provider else None,
        "model_id": model,
        "request_type": "chat",
        "request_body": body,
        "tokens_used": tokens,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "status_code": status,
        "error_message": error,
        "duration": duration,
        "created_at": when,
    }


def insert_rows(engine: Engine, rows: list[dict]) -> None:
    with transaction(engine) as session:
        session.execute(insert(Log), rows)


@pytest.fixture
def world(engine: Engine) -> World:
    """~3000 calls over 12 days from 2026-10-01, on minutes that are not whole hours; rollups rebuilt."""
    admin, alice, bob, p1, p2 = make_people(engine)
    rng = random.Random(7)
    key = str(uuid.uuid4())
    rows = []
    for _ in range(3000):
        when = T0 + timedelta(seconds=rng.randrange(12 * 86400))
        provider, model = rng.choice([(p1, "m-big"), (p1, "m-small"), (p2, "m-free"), (None, None)])
        status = rng.choice([200] * 12 + [429, 500, 499, None])
        ok = status == 200
        rows.append(
            log_row(
                when,
                rng.choice([alice, bob, admin, None]),
                provider,
                model,
                status=status,
                prompt=rng.randrange(1, 3000) if ok else (None if rng.random() < 0.5 else 0),
                completion=rng.randrange(1, 900) if ok else 0,
                duration=None if rng.random() < 0.03 else int(rng.lognormvariate(math.log(800), 0.9)),
                source=rng.choice(["playground", "api", None]),
                api_key=key if rng.random() < 0.3 else None,
                error="Rate limit exceeded" if status == 429 else None,
            )
        )
    insert_rows(engine, rows)
    rebuild_rollups(engine, progress=False)
    return World(admin, alice, bob, p1, p2, rows)


def expected(rows: list[dict], start: datetime, end: datetime, keep=lambda r: True) -> dict:
    """The independent computation: plain Python over the raw rows."""
    chosen = [r for r in rows if start <= r["created_at"] < end and keep(r)]
    cost = 0.0
    for r in chosen:
        price = PRICES.get(r["model_id"]) if r["model_id"] and r["provider_id"] is not None else None
        if price and r["provider_id"] is not None and r["model_id"] in PRICES:
            cost += ((r["prompt_tokens"] or 0) * price["input"] + (r["completion_tokens"] or 0) * price["output"]) / 1e6
    return {
        "rows": chosen,
        "requests": len(chosen),
        "tokens": sum(r["tokens_used"] or 0 for r in chosen),
        "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in chosen),
        "completion_tokens": sum(r["completion_tokens"] or 0 for r in chosen),
        "errors": sum(1 for r in chosen if r["status_code"] is not None and r["status_code"] >= 400),
        "cost": cost,
        "durations": [r["duration"] for r in chosen if r["duration"] is not None],
    }


def tiles(page) -> dict:
    return {t.key: t.value for t in page.tiles}


def rollup_snapshot(engine: Engine) -> set:
    with Session(engine) as session:
        return {
            (
                r.bucket,
                r.dim_key,
                r.requests,
                r.errors,
                r.tokens,
                r.prompt_tokens,
                r.completion_tokens,
                r.duration_sum,
                r.duration_count,
                r.latency,
            )
            for r in session.scalars(select(UsageRollup))
        }


# --- rollups ----------------------------------------------------------------------------------


def test_write_call_log_keeps_the_rollups_in_step_with_logs(engine: Engine) -> None:
    _admin, alice, _bob, p1, _p2 = make_people(engine)
    for status, ms in ((200, 120), (200, 130), (429, 20), (200, 5000)):
        write_call_log(
            engine,
            CallRecord(
                user_id=alice.id,
                provider_id=p1.id,
                model="m-big",
                request=None,
                status_code=status,
                duration_ms=ms,
                prompt_tokens=10 if status == 200 else None,
                completion_tokens=4 if status == 200 else None,
            ),
        )
    write_call_log(
        engine,
        CallRecord(alice.id, p1.id, "m-big", None, 200, 90, source="api", api_key_id=uuid.uuid4(), total_tokens=3),
    )
    live = rollup_snapshot(engine)
    assert sum(r[2] for r in live) == 5
    rebuild_rollups(engine, progress=False)
    assert rollup_snapshot(engine) == live


def test_latency_buckets_are_within_one_percent() -> None:
    for ms in [0, 1, 2, 7, 15, 49, 50, 51, 99, 100, 733, 1000, 4096, 59_999, 60_000, 600_000]:
        value = latency_bucket_value(latency_bucket(ms))
        assert abs(value - ms) <= 0.01 * ms + 1e-9, ms
    assert latency_bucket_value(latency_bucket(15)) == 15  # small durations are exact


def test_percentiles_from_rollups_are_within_two_percent_of_exact(world: World, engine: Engine) -> None:
    start, end = T0 + timedelta(hours=5, minutes=17), T0 + timedelta(days=9, minutes=3)
    want = expected(world.rows, start, end)
    with Session(engine) as session:
        page = usage_page(session, world.admin, UsageFilter(start, end))
    got = tiles(page)
    for p in (50, 95, 99):
        exact = exact_percentile(want["durations"], p)
        assert got[f"p{p}"] == pytest.approx(exact, rel=0.02), p
    assert all(t.approximate for t in page.tiles if t.key in ("p50", "p95", "p99"))
    # p95 per provider × model too.
    for row in page.breakdown_provider_model.itertuples():
        durations = [
            r["duration"]
            for r in want["rows"]
            if (r["model_id"] or "(unknown)") == row.model and r["duration"] is not None
        ]
        if row.provider == "(unknown)" or not durations:
            continue
        assert row.p95_ms == pytest.approx(exact_percentile(durations, 95), rel=0.02)
    # The histogram helper agrees with the nearest-rank definition on its own.
    hist = Counter(latency_bucket(d) for d in want["durations"])
    assert histogram_percentile(hist, 99) == pytest.approx(exact_percentile(want["durations"], 99), rel=0.02)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Seoul", "America/New_York", "Asia/Kolkata"])
def test_totals_add_up_against_raw_rows(world: World, engine: Engine, zone: str) -> None:
    start, end = T0 + timedelta(days=1, minutes=40), T0 + timedelta(days=8, hours=3, minutes=10)
    want = expected(world.rows, start, end)
    with Session(engine) as session:
        page = usage_page(session, world.admin, UsageFilter(start, end, timezone=zone))
    got = tiles(page)
    for key in ("requests", "tokens", "prompt_tokens", "completion_tokens"):
        assert got[key] == want[key], key
    assert got["error_rate"] == pytest.approx(want["errors"] / want["requests"])
    assert got["cost"] == pytest.approx(want["cost"], rel=1e-9)
    # The chart buckets sum to the tiles.
    assert page.tokens_by_provider["tokens"].sum() == want["tokens"]
    assert page.tokens_by_model["tokens"].sum() == want["tokens"]
    assert page.requests["requests"].sum() == want["requests"]
    assert page.requests["errors"].sum() == want["errors"]
    assert page.status_codes["requests"].sum() == want["requests"]
    # The breakdown rows sum to the totals.
    for table in (page.breakdown_provider_model, page.breakdown_user):
        assert table["requests"].sum() == want["requests"]
        assert table["tokens"].sum() == want["tokens"]
        assert table["errors"].sum() == want["errors"]
        assert table["cost"].sum() == pytest.approx(want["cost"], rel=1e-9)
    # Daily buckets agree with the raw rows bucketed by their local date.
    with Session(engine) as session:
        facts = load_facts(session, world.admin, UsageFilter(start, end, timezone=zone))
    assert facts.granularity == "day"
    from zoneinfo import ZoneInfo

    local_days = Counter(
        r["created_at"].replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(zone)).date() for r in want["rows"]
    )
    by_day = {row.start.date(): row.requests for row in page.requests.itertuples() if row.requests}
    assert by_day == dict(local_days)


def test_previous_period_is_the_same_length_just_before(world: World, engine: Engine) -> None:
    start, end = T0 + timedelta(days=6), T0 + timedelta(days=9)
    before = expected(world.rows, T0 + timedelta(days=3), start)
    with Session(engine) as session:
        page = usage_page(session, world.admin, UsageFilter(start, end))
    requests = next(t for t in page.tiles if t.key == "requests")
    assert requests.previous == before["requests"]
    assert requests.change == pytest.approx((requests.value - before["requests"]) / before["requests"])


def test_a_call_at_2330_utc_is_on_the_next_day_in_seoul(engine: Engine) -> None:
    admin, alice, _bob, p1, _p2 = make_people(engine)
    insert_rows(engine, [log_row(datetime(2026, 10, 1, 23, 30), alice, p1, "m-big")])
    rebuild_rollups(engine, progress=False)
    seoul = custom_range(date(2026, 10, 1), date(2026, 10, 2), "Asia/Seoul")
    utc = custom_range(date(2026, 10, 1), date(2026, 10, 2), "UTC")
    with Session(engine) as session:
        in_seoul = usage_page(session, admin, UsageFilter(*seoul, timezone="Asia/Seoul")).requests
        in_utc = usage_page(session, admin, UsageFilter(*utc, timezone="UTC")).requests
    assert [(r.start.date(), r.requests) for r in in_seoul.itertuples()] == [
        (date(2026, 10, 1), 0),
        (date(2026, 10, 2), 1),
    ]
    assert [(r.start.date(), r.requests) for r in in_utc.itertuples()] == [
        (date(2026, 10, 1), 1),
        (date(2026, 10, 2), 0),
    ]


def test_half_hour_zones_split_an_hour_at_local_midnight(engine: Engine) -> None:
    """Kolkata is UTC+5:30: 18:15 UTC is 23:45 on the 1st, 18:45 UTC is 00:15 on the 2nd. The hour
    a local midnight cuts is read from the raw rows, so each call lands on its own day."""
    admin, alice, _bob, p1, _p2 = make_people(engine)
    insert_rows(
        engine,
        [
            log_row(datetime(2026, 10, 1, 18, 15), alice, p1, "m-big"),
            log_row(datetime(2026, 10, 1, 18, 45), alice, p1, "m-big"),
        ],
    )
    rebuild_rollups(engine, progress=False)
    start, end = custom_range(date(2026, 10, 1), date(2026, 10, 2), "Asia/Kolkata")
    assert bucket_edges(start, end, UsageFilter(start, end, "Asia/Kolkata").zone, "day")[1] == datetime(
        2026, 10, 1, 18, 30
    )
    with Session(engine) as session:
        page = usage_page(session, admin, UsageFilter(start, end, timezone="Asia/Kolkata"))
    assert [(r.start.date(), r.requests) for r in page.requests.itertuples()] == [
        (date(2026, 10, 1), 1),
        (date(2026, 10, 2), 1),
    ]


def test_presets_start_at_the_viewers_midnight() -> None:
    now = datetime(2026, 10, 10, 16, 0)  # 01:00 on the 11th in Seoul
    start, end = preset_range("7d", "Asia/Seoul", now)
    assert end == now
    assert start == datetime(2026, 10, 4, 15, 0)  # midnight of the 5th in Seoul
    assert preset_range("24h", "Asia/Seoul", now) == (now - timedelta(hours=24), now)
    with pytest.raises(ValueError, match="preset"):
        preset_range("1y", "UTC", now)


@pytest.mark.parametrize(
    ("name", "make_filter", "keep"),
    [
        ("provider", lambda w: {"provider_ids": (w.p1.id,)}, lambda w: lambda r: r["provider_id"] == w.p1.id),
        ("model", lambda w: {"models": ("m-small",)}, lambda w: lambda r: r["model_id"] == "m-small"),
        (
            "playground",
            lambda w: {"source": "playground"},
            lambda w: lambda r: r["request_body"].get("source") == "playground",
        ),
        ("api", lambda w: {"source": "api"}, lambda w: lambda r: r["request_body"].get("source") != "playground"),
        (
            "errors",
            lambda w: {"outcome": "error"},
            lambda w: lambda r: r["status_code"] is not None and r["status_code"] >= 400,
        ),
        (
            "successes",
            lambda w: {"outcome": "success"},
            lambda w: lambda r: r["status_code"] is None or r["status_code"] < 400,
        ),
        (
            "api key",
            lambda w: {
                "api_key_ids": (
                    next(r["request_body"]["api_key_id"] for r in w.rows if "api_key_id" in r["request_body"]),
                )
            },
            lambda w: lambda r: "api_key_id" in r["request_body"],
        ),
        ("user", lambda w: {"user_ids": (w.bob.id,)}, lambda w: lambda r: r["user_id"] == w.bob.id),
    ],
)
def test_filters_match_the_raw_rows(world: World, engine: Engine, name: str, make_filter, keep) -> None:
    start, end = T0 + timedelta(hours=30, minutes=5), T0 + timedelta(days=11, minutes=50)
    want = expected(world.rows, start, end, keep(world))
    with Session(engine) as session:
        page = usage_page(session, world.admin, UsageFilter(start, end, **make_filter(world)))
    got = tiles(page)
    assert (got["requests"], got["tokens"]) == (want["requests"], want["tokens"]), name
    assert got["cost"] == pytest.approx(want["cost"], rel=1e-9)


def test_a_user_only_ever_sees_their_own_calls(world: World, engine: Engine) -> None:
    start, end = T0, T0 + timedelta(days=12)
    own = expected(world.rows, start, end, lambda r: r["user_id"] == world.alice.id)
    with Session(engine) as session:
        # Asking for Bob's calls, or everyone's, still gives Alice's own.
        for flt in (UsageFilter(start, end, user_ids=(world.bob.id,)), UsageFilter(start, end)):
            page = usage_page(session, world.alice, flt)
            assert tiles(page)["requests"] == own["requests"]
            assert page.filter.user_ids == (world.alice.id,)
            assert "user_by_tokens" not in page.top
            assert set(page.breakdown_user["user"]) == {"Alice <alice@example.com>"}


def test_rebuild_after_bulk_load_and_prune_keep_rollups_consistent(world: World, engine: Engine) -> None:
    now = T0 + timedelta(days=12)
    deleted = prune_logs(engine, 5, batch_rows=250, now=now, progress=False)
    cutoff = now - timedelta(days=5)
    assert deleted == sum(1 for r in world.rows if r["created_at"] < cutoff)
    after_prune = rollup_snapshot(engine)
    rebuild_rollups(engine, progress=False)
    assert rollup_snapshot(engine) == after_prune
    with Session(engine) as session:
        page = usage_page(session, world.admin, UsageFilter(T0, now))
    assert tiles(page)["requests"] == len(world.rows) - deleted


def test_cli_rebuild_rollups_and_prune_logs(world: World, engine: Engine, monkeypatch, capsys) -> None:
    from mindroute import config, db

    monkeypatch.setenv("MINDROUTE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    config.get_settings.cache_clear()
    monkeypatch.setattr(db, "_engine", None)
    try:
        assert main(["rebuild-rollups"]) == 0
        assert "3,000 log rows" in capsys.readouterr().out
        assert main(["prune-logs", "--older-than-days", "30"]) == 0
        assert "deleted 3,000 log rows" in capsys.readouterr().out
        assert main(["prune-logs", "--older-than-days", "-1"]) == 1
    finally:
        if db._engine is not None:
            db._engine.dispose()
    assert rollup_snapshot(engine) == set()


def test_empty_range_gives_zero_tiles_and_empty_tables(engine: Engine) -> None:
    admin, *_ = make_people(engine)
    with Session(engine) as session:
        page = usage_page(session, admin, UsageFilter(T0, T0 + timedelta(days=3)))
    assert page.empty
    assert tiles(page)["requests"] == 0
    assert tiles(page)["p95"] is None
    assert page.breakdown_provider_model.empty
    assert len(page.requests) == 3


def test_filter_options_and_empty_state_are_scoped_to_the_viewer(world: World, engine: Engine) -> None:
    from mindroute.services.usage import filter_options, has_calls

    with Session(engine) as session:
        admin_options = filter_options(session, world.admin)
        alice_options = filter_options(session, world.alice)
        assert has_calls(session, world.alice)
        newcomer = User(email="new@example.com", name="New", password="!" * 60)
        session.add(newcomer)
        session.flush()
        assert not has_calls(session, newcomer)
    assert {name for _, name in admin_options["providers"]} == {"P1", "P2"}
    assert set(admin_options["models"]) == {"m-big", "m-small", "m-free"}
    assert len(admin_options["users"]) == 3
    assert alice_options["users"] == []
