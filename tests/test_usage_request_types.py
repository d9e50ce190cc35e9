"""The request type (chat, completion, embedding) on the Usage page, on both databases: its filter and
breakdown against counts straight from Logs, tiles = charts = breakdown = CSV, the in-step rollups equal
to a rebuild, and migration 0006 on rollups written before it."""

from __future__ import annotations

import csv
import io
import random
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, case, func, insert, select
from sqlalchemy.orm import Session

from mindroute.analytics.filter import UsageFilter
from mindroute.analytics.histograms import decode_histogram
from mindroute.analytics.levels import HOURLY, LEVELS, REQUEST_TYPES, accumulate, roll_up
from mindroute.analytics.rollups import _without_request_type, add_logs_to_rollups, rebuild_rollups
from mindroute.db import current_revision, head_revision, make_engine, transaction, upgrade
from mindroute.models import Log, Provider, User
from mindroute.services.usage import filter_options, usage_page
from mindroute.ui.usage_view import csv_bytes
from tests.test_analytics import PRICES, T0, log_row, make_people


def people_on_an_old_schema(engine: Engine) -> tuple:
    """make_people's users and providers on a database migrated to an older revision: the users written
    with the columns every revision has (users.timezone and users.theme came with 0009)."""
    users = [
        User(id=uuid.uuid4(), email=f"{name.lower()}@example.com", name=name, password="!" * 60, role=role)
        for name, role in (("Admin", "admin"), ("Alice", "user"), ("Bob", "user"))
    ]
    columns = User.__table__.c
    with transaction(engine) as session:
        session.execute(
            insert(User.__table__),
            [
                {columns.id.key: u.id, columns.email.key: u.email, columns.name.key: u.name,
                 columns.password.key: u.password, columns.role.key: u.role}
                for u in users
            ],
        )  # fmt: skip
        p1 = Provider(name="P1", settings={"models": list(PRICES), "default_model": None, "prices": PRICES})
        p2 = Provider(name="P2", settings={"models": ["m-free"], "default_model": None, "prices": {}})
        session.add_all([p1, p2])
    return (*users, p1, p2)


START, END = T0 + timedelta(hours=30, minutes=5), T0 + timedelta(days=3, minutes=50)
KINDS = ("chat", "completion", "embedding")


def mixed_rows(people, count: int, seed: int, start: datetime = T0, days: int = 4) -> list[dict]:
    """Calls of all three types; embeddings have input tokens only, as the API logs them."""
    _admin, alice, bob, p1, p2 = people
    rng = random.Random(seed)
    key = str(uuid.UUID(int=seed))
    rows = []
    for _ in range(count):
        kind = rng.choice(["chat"] * 3 + ["completion", "embedding", "embedding"])
        provider, model = rng.choice([(p1, "m-big"), (p1, "m-small"), (p2, "m-free"), (None, None)])
        row = log_row(
            start + timedelta(seconds=rng.randrange(days * 86400)),
            rng.choice([alice, bob, None]),
            provider,
            model,
            status=rng.choice([200] * 6 + [400, 500]),
            prompt=rng.randrange(1, 2000),
            completion=0 if kind == "embedding" else rng.randrange(0, 500),
            duration=None if rng.random() < 0.05 else rng.randrange(1, 9000),
            source=rng.choice(["playground", "api", None]) if kind == "chat" else "api",
            api_key=key if rng.random() < 0.4 else None,
        )
        row["request_type"] = kind
        rows.append(row)
    return rows


def write_in_step(engine: Engine, rows: list[dict], batch: int = 300) -> None:
    """As the call logger does: INSERT a batch and count it in the rollups in one transaction; every
    other batch as Log objects, the rest as values keyed by Log attribute (call_log.log_values)."""
    for number, offset in enumerate(range(0, len(rows), batch)):
        chunk = rows[offset : offset + batch]
        with transaction(engine) as session:
            session.execute(insert(Log), chunk)
            add_logs_to_rollups(session, [Log(**row) for row in chunk] if number % 2 else chunk)


def rollup_rows(engine: Engine) -> dict[str, set]:
    """Every level's rows, all columns (histograms decoded: their byte order is no contract)."""
    out: dict[str, set] = {}
    with Session(engine) as session:
        for level in LEVELS:
            rows = set()
            for row in session.execute(select(level.table)).mappings():
                values = dict(row)
                values["latency"] = tuple(sorted(decode_histogram(values["latency"]).items()))
                rows.add(tuple(sorted(values.items(), key=lambda item: item[0])))
            out[level.name] = rows
    return out


@pytest.fixture
def people(engine: Engine):
    return make_people(engine)


@pytest.fixture
def mixed(engine: Engine, people) -> list[dict]:
    rows = mixed_rows(people, 1800, seed=11)
    write_in_step(engine, rows)
    return rows


def logs_by_type(engine: Engine, start: datetime, end: datetime, where=()) -> dict[str, tuple[int, int, int, int]]:
    """Straight from Logs: per request type, (calls, errors, tokens, input tokens) in [start, end)."""
    errors = func.sum(case((Log.status_code >= 400, 1), else_=0))
    stmt = (
        select(
            Log.request_type,
            func.count(),
            errors,
            func.sum(func.coalesce(Log.tokens_used, 0)),
            func.sum(func.coalesce(Log.prompt_tokens, 0)),
        )
        .where(Log.created_at >= start, Log.created_at < end, *where)
        .group_by(Log.request_type)
    )
    with Session(engine) as session:
        return {kind: (int(n), int(e), int(t), int(p)) for kind, n, e, t, p in session.execute(stmt)}


def page_numbers(page) -> dict:
    tiles = {t.key: t.value for t in page.tiles}
    return {
        "tiles": (tiles["requests"], tiles["tokens"]),
        "requests_chart": (int(page.requests["requests"].sum()), int(page.requests["errors"].sum())),
        "tokens_chart": int(page.tokens_by_provider["tokens"].sum()),
        "tokens_by_model_chart": int(page.tokens_by_model["tokens"].sum()),
        "breakdown_pm": (
            int(page.breakdown_provider_model["requests"].sum()),
            int(page.breakdown_provider_model["tokens"].sum()),
        ),
        "breakdown_user": (int(page.breakdown_user["requests"].sum()), int(page.breakdown_user["tokens"].sum())),
        "breakdown_type": (
            int(page.breakdown_request_type["requests"].sum()),
            int(page.breakdown_request_type["tokens"].sum()),
        ),
    }


FILTERS = [
    ("all", {}, ()),
    ("embedding", {"request_types": ("embedding",)}, ("embedding",)),
    ("completion", {"request_types": ("completion",)}, ("completion",)),
    ("chat+embedding", {"request_types": ("chat", "embedding")}, ("chat", "embedding")),
    # a dimension the per-model level lacks: the charts come from the hourly level
    ("embedding, api", {"request_types": ("embedding",), "source": "api"}, ("embedding",)),
    ("chat, errors", {"request_types": ("chat",), "outcome": "error"}, ("chat",)),
]


@pytest.mark.parametrize(("name", "extra", "kinds"), FILTERS, ids=[f[0] for f in FILTERS])
def test_filter_and_breakdown_agree_with_logs(engine: Engine, people, mixed, name, extra, kinds) -> None:
    admin = people[0]
    conds = [Log.request_type.in_(kinds)] if kinds else []
    if extra.get("source") == "api":
        conds.append(func.coalesce(Log.request_body["source"].as_string(), "") != "playground")
    if extra.get("outcome") == "error":
        conds.append(Log.status_code >= 400)
    want = logs_by_type(engine, START, END, conds)
    assert want, name  # the filter has calls
    previous = logs_by_type(engine, START - (END - START), START, conds)
    with Session(engine) as session:
        page = usage_page(session, admin, UsageFilter(START, END, timezone="Asia/Seoul", **extra))
    calls, tokens = sum(v[0] for v in want.values()), sum(v[2] for v in want.values())
    numbers = page_numbers(page)
    assert numbers["tiles"] == (calls, tokens), name
    assert numbers["requests_chart"] == (calls, sum(v[1] for v in want.values()))
    assert {k: v for k, v in numbers.items() if k != "requests_chart"} == dict.fromkeys(
        ["tiles", "breakdown_pm", "breakdown_user", "breakdown_type"], (calls, tokens)
    ) | dict.fromkeys(["tokens_chart", "tokens_by_model_chart"], tokens)
    by_type = page.breakdown_request_type
    got = {
        row.request_type: (row.requests, row.errors, row.tokens, row.prompt_tokens)
        for row in by_type.itertuples(index=False)
    }
    assert got == want
    assert list(by_type["request_type"]) == sorted(want)
    assert by_type["error_rate"].tolist() == pytest.approx([want[k][1] / want[k][0] for k in sorted(want)])
    assert {t.key: t.previous for t in page.tiles}["requests"] == sum(v[0] for v in previous.values())
    # The CSV the page offers is the table as shown.
    exported = list(csv.DictReader(io.StringIO(csv_bytes(by_type).decode())))
    assert [(r["request_type"], int(r["requests"]), int(r["tokens"])) for r in exported] == [
        (k, want[k][0], want[k][2]) for k in sorted(want)
    ]


def test_every_type_is_counted_once_across_the_filters(engine: Engine, people, mixed) -> None:
    """One filter per type adds up to the unfiltered page, tile by tile and in the breakdown."""
    admin = people[0]
    with Session(engine) as session:
        whole = page_numbers(usage_page(session, admin, UsageFilter(START, END)))
        parts = [page_numbers(usage_page(session, admin, UsageFilter(START, END, request_types=(k,)))) for k in KINDS]
    assert (
        whole["tiles"][0]
        == sum(p["tiles"][0] for p in parts)
        == len([r for r in mixed if START <= r["created_at"] < END])
    )
    assert whole["tiles"][1] == sum(p["tiles"][1] for p in parts)


def test_a_user_sees_only_their_own_calls_by_type(engine: Engine, people, mixed) -> None:
    _admin, alice, *_ = people
    want = logs_by_type(engine, START, END, [Log.user_id == alice.id, Log.request_type == "embedding"])
    with Session(engine) as session:
        page = usage_page(session, alice, UsageFilter(START, END, request_types=("embedding",)))
        options = filter_options(session, alice)
    assert page_numbers(page)["tiles"] == (want["embedding"][0], want["embedding"][2])
    assert list(page.breakdown_request_type["request_type"]) == ["embedding"]
    assert options["request_types"][: len(REQUEST_TYPES)] == list(REQUEST_TYPES)


def test_in_step_rollups_equal_a_rebuild_from_logs(engine: Engine, people, mixed) -> None:
    live = rollup_rows(engine)
    for level in LEVELS:
        assert {dict(row)["requesttype"] for row in live[level.name]} == set(KINDS), level.name
        assert sum(dict(row)["requests"] for row in live[level.name]) == len(mixed), level.name
    rebuild_rollups(engine, progress=False)
    assert rollup_rows(engine) == live


def test_an_unknown_type_is_its_own_row_and_choice(engine: Engine, people) -> None:
    admin, alice, _bob, p1, _p2 = people
    rows = [log_row(T0 + timedelta(minutes=10 * i), alice, p1, "m-big") for i in range(5)]
    rows[0]["request_type"] = "rerank"
    write_in_step(engine, rows)
    with Session(engine) as session:
        page = usage_page(session, admin, UsageFilter(T0, T0 + timedelta(days=1)))
        options = filter_options(session, admin)
    table = page.breakdown_request_type
    assert dict(zip(table["request_type"], table["requests"], strict=True)) == {
        "chat": 4,
        "rerank": 1,
    }
    assert options["request_types"] == [*REQUEST_TYPES, "rerank"]


# --- migration 0006 ---------------------------------------------------------------------------------


def _old_rollups(rows: list[dict]) -> dict:
    """The rollups as the code before 0006 wrote them: every call counted without its type."""
    facts = [
        (
            r["created_at"],
            r["user_id"],
            r["provider_id"],
            r["model_id"],
            r["request_body"].get("source"),
            r["request_body"].get("api_key_id"),
            r["status_code"],
            r["tokens_used"],
            r["prompt_tokens"],
            r["completion_tokens"],
            r["duration"],
            None,
        )
        for r in rows
    ]
    return accumulate(facts)


def chat_day_keys(engine: Engine) -> dict[str, set]:
    """(bucket, dimkey) of every level's rows of the first two days (chat calls only)."""
    with Session(engine) as session:
        return {
            level.name: set(
                session.execute(
                    select(level.table.c.bucket, level.table.c.dimkey).where(
                        level.table.c.bucket < T0 + timedelta(days=2)
                    )
                )
            )
            for level in LEVELS
        }


@pytest.mark.parametrize("fresh_db_url", ["sqlite", "postgresql"], indirect=True)
def test_migration_keeps_rollups_of_chat_days_and_rebuilds_days_with_other_types(fresh_db_url) -> None:
    engine = make_engine(fresh_db_url)
    try:
        upgrade(engine, "0005")
        people = people_on_an_old_schema(engine)
        chat_days = mixed_rows(people, 400, seed=3, start=T0, days=2)
        for row in chat_days:
            row["request_type"] = "chat"
        imported = mixed_rows(people, 300, seed=4, start=T0 + timedelta(days=2), days=2)
        old = _old_rollups(chat_days + imported)
        with transaction(engine) as session:
            session.execute(insert(Log), chat_days + imported)
            for level in LEVELS:
                values = [level.row(b, dims, t) for (b, _k), (dims, t) in roll_up(level, old).items()]
                for value in values:
                    del value["requesttype"]
                session.execute(insert(_without_request_type(level.table)), values)
        before = chat_day_keys(engine)
        assert all(before.values())
        upgrade(engine)
        assert current_revision(engine) == head_revision(engine)
        migrated = rollup_rows(engine)
        # Days of chat calls only keep their rows (and keys); every level now equals a rebuild.
        assert chat_day_keys(engine) == before
        rebuild_rollups(engine, progress=False)
        assert rollup_rows(engine) == migrated
        with Session(engine) as session:
            page = usage_page(session, people[0], UsageFilter(T0, T0 + timedelta(days=4), request_types=("embedding",)))
        embeddings = [r for r in imported if r["request_type"] == "embedding"]
        assert {t.key: t.value for t in page.tiles}["requests"] == len(embeddings)
    finally:
        engine.dispose()


@pytest.mark.parametrize("fresh_db_url", ["sqlite"], indirect=True)
def test_migration_0005_still_derives_its_levels_before_0006(fresh_db_url) -> None:
    """0005 fills the daily and per-model levels from usagerollups with the code of today, on its own
    schema (no request type yet); 0006 then finds them in step."""
    engine = make_engine(fresh_db_url)
    try:
        upgrade(engine, "0004")
        people = people_on_an_old_schema(engine)
        rows = mixed_rows(people, 300, seed=5, days=2)
        for row in rows:
            row["request_type"] = "chat"
        values = [HOURLY.row(b, dims, t) for (b, _k), (dims, t) in roll_up(HOURLY, _old_rollups(rows)).items()]
        for value in values:
            del value["requesttype"]
        with transaction(engine) as session:
            session.execute(insert(Log), rows)
            session.execute(insert(_without_request_type(HOURLY.table)), values)
        upgrade(engine)
        migrated = rollup_rows(engine)
        assert all(sum(dict(r)["requests"] for r in migrated[level.name]) == len(rows) for level in LEVELS)
        rebuild_rollups(engine, progress=False)
        assert rollup_rows(engine) == migrated
    finally:
        engine.dispose()


def test_types_changed_behind_the_rollups_back_are_found_and_rebuilt(engine: Engine, people, mixed) -> None:
    """Same counts per hour, other types (an UPDATE by hand): the check names that day only, and
    bringing the rollups in step makes the filter right again."""
    from sqlalchemy import update

    from mindroute.analytics.in_step import bring_rollups_in_step, days_out_of_step
    from mindroute.analytics.levels import day_of

    chat = sorted((r for r in mixed if r["request_type"] == "chat"), key=lambda r: r["created_at"])[:3]
    with transaction(engine) as session:
        assert days_out_of_step(session) == []
        session.execute(update(Log).where(Log.id.in_([r["id"] for r in chat])).values(request_type="embedding"))
    with Session(engine) as session:
        assert days_out_of_step(session) == sorted({day_of(r["created_at"]) for r in chat})
    assert bring_rollups_in_step(engine, progress=False) == sorted({day_of(r["created_at"]) for r in chat})
    want = logs_by_type(engine, T0, T0 + timedelta(days=4), [Log.request_type == "embedding"])
    with Session(engine) as session:
        page = usage_page(session, people[0], UsageFilter(T0, T0 + timedelta(days=4), request_types=("embedding",)))
        assert days_out_of_step(session) == []
    assert page_numbers(page)["tiles"] == (want["embedding"][0], want["embedding"][2])
