"""The built-in price table: the data file, the one lookup, and costs priced from it on both databases."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta
from importlib import resources

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mindroute.analytics.facts import load_facts
from mindroute.analytics.filter import UsageFilter
from mindroute.analytics.pricing import unpriced_models
from mindroute.analytics.rollups import rebuild_rollups
from mindroute.db import transaction
from mindroute.models import Provider, User
from mindroute.provider_settings import (
    BUILTIN_TABLES,
    builtin_prices,
    builtin_table,
    estimate_cost,
    parse_builtin_prices,
    price_for,
    snapshot_base,
)
from mindroute.services.usage import usage_page
from mindroute.ui.usage_view import cost_note
from tests.test_analytics import insert_rows, log_row

T0 = datetime(2026, 11, 2)


def raw_file() -> dict:
    return json.loads(resources.files("mindroute").joinpath("data", "prices.json").read_text(encoding="utf-8"))


# --- the data file ----------------------------------------------------------------------------


def test_the_data_file_ships_in_the_package_and_is_well_formed() -> None:
    raw = raw_file()
    table = builtin_prices()
    assert table.as_of == date.fromisoformat(raw["as_of"])
    assert table.as_of <= date.today()
    assert table.sources and all(url.startswith("https://") for url in table.sources)
    hosts = " ".join(table.sources)
    for host in ("openai.com", "claude.com", "ai.google.dev"):  # each provider's own pricing page
        assert host in hosts
    assert set(table.models) == set(BUILTIN_TABLES)
    for protocol, models in raw["models"].items():
        assert models, protocol
        for model, price in models.items():
            assert {"input", "output"} <= set(price) <= {"input", "output", "cached_input"}, model
            for value in price.values():
                assert isinstance(value, int | float) and not isinstance(value, bool), model
                assert math.isfinite(value) and value >= 0, model
            # A snapshot listed next to its family is there only because its price differs from it.
            base = snapshot_base(model)
            if base in models:
                assert models[base] != price, model


def test_well_known_models_are_covered_in_usd_per_million_tokens() -> None:
    models = builtin_prices().models
    for name in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3", "o4-mini", "gpt-5"):
        assert name in models["openai"], name
    for name in ("text-embedding-3-small", "text-embedding-3-large"):
        assert models["openai"][name]["output"] == 0.0
    for name in ("claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-3-5-haiku", "claude-3-haiku"):
        assert name in models["anthropic"], name
    for name in ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.0-flash"):
        assert name in models["google"], name
    # The unit is the provider settings' one, USD per million tokens: gpt-4o is $2.50 in, $10 out.
    assert models["openai"]["gpt-4o"] == {"input": 2.5, "output": 10.0, "cached_input": 1.25}
    assert estimate_cost({}, "gpt-4o", 1_000_000, 0, protocol="openai") == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(as_of="December"), "as_of"),
        (lambda r: r.update(source=[]), "source"),
        (lambda r: r.update(source=["http://example.com"]), "source"),
        (lambda r: r["models"].pop("google"), "models"),
        (lambda r: r["models"]["openai"]["gpt-4o"].update(input=-1), "models.openai.gpt-4o.input"),
        (lambda r: r["models"]["openai"]["gpt-4o"].update(output="10"), "models.openai.gpt-4o.output"),
        (lambda r: r["models"]["openai"]["gpt-4o"].pop("output"), "models.openai.gpt-4o"),
        (lambda r: r["models"]["anthropic"]["claude-3-haiku"].update(batch=1), "models.anthropic.claude-3-haiku"),
    ],
)
def test_a_malformed_price_file_is_refused_naming_the_part(change, message: str) -> None:
    raw = raw_file()
    change(raw)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        parse_builtin_prices(raw)


# --- the lookup -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("gpt-4o", None),
        ("claude-opus-4-1", None),  # a minor version is not a snapshot
        ("gemini-2.5-flash-preview-05-20", None),
    ],
)
def test_the_snapshot_rule(model: str, base: str | None) -> None:
    assert snapshot_base(model) == base


def test_lookup_order_provider_then_built_in_then_unpriced() -> None:
    own = {"gpt-4o": {"input": 1.0, "output": 2.0}}
    mine = price_for(own, "gpt-4o", "openai")
    assert (mine.input, mine.output, mine.source) == (1.0, 2.0, "provider")
    snapshot = price_for(own, "gpt-4o-2024-08-06", "openai")  # the override covers its snapshots too
    assert (snapshot.input, snapshot.source, snapshot.matched) == (1.0, "provider", "gpt-4o")
    shipped = price_for(own, "gpt-4o-mini", "openai")
    assert (shipped.input, shipped.output, shipped.source) == (0.15, 0.6, "built-in")
    dated = price_for({}, "claude-sonnet-4-5-20250929", "anthropic")
    assert (dated.input, dated.output, dated.source, dated.matched) == (3.0, 15.0, "built-in", "claude-sonnet-4-5")
    # An exact entry wins over the rule: the first gpt-4o snapshot kept its launch price.
    assert price_for({}, "gpt-4o-2024-05-13", "openai").input == 5.0
    nothing = price_for(own, "my-local-model", "openai")
    assert (nothing.input, nothing.output, nothing.source, nothing.priced) == (None, None, None, False)
    assert estimate_cost(own, "my-local-model", 100, 100, protocol="openai") is None  # never $0


def test_each_protocol_reads_its_own_table_only() -> None:
    assert price_for({}, "gemini-2.5-flash", "google").source == "built-in"
    assert price_for({}, "gemini-2.5-flash", "anthropic").source is None
    assert price_for({}, "claude-haiku-4-5", "openai").source is None
    assert price_for({}, "gpt-4o", None).source is None  # no protocol given: the provider's own prices only


@pytest.mark.parametrize(
    ("endpoint", "table"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://API.OpenAI.com/v1/", "openai"),
        ("http://localhost:11434/v1", None),
        ("https://openrouter.ai/api/v1", None),
        ("https://api.openai.com.evil.example/v1", None),
        ("", None),
    ],
)
def test_openai_compatible_gets_built_in_prices_only_on_openais_endpoint(endpoint: str, table: str | None) -> None:
    assert builtin_table("openai-compatible", endpoint) == table
    assert price_for({}, "gpt-4o", "openai-compatible", endpoint).priced is (table is not None)


def test_a_provider_price_without_both_halves_does_not_count() -> None:
    assert price_for({"gpt-4o": {"input": 9.0}}, "gpt-4o", "openai").source == "built-in"


def test_the_cost_note_names_unpriced_models() -> None:
    assert cost_note([]) is None
    assert cost_note(["m-local"]) == "Cost excludes 1 unpriced model: m-local."
    note = cost_note(["a", "b"])
    assert note is not None and note.startswith("Cost excludes 2 unpriced models: a, b.")


# --- analytics on both databases --------------------------------------------------------------


def test_analytics_cost_with_built_in_prices_equals_the_hand_computed_sum(engine: Engine) -> None:
    with transaction(engine) as session:
        admin = User(email="admin@example.com", name="Admin", password="!" * 60, role="admin")
        openai = Provider(name="OpenAI", protocol="openai", endpoint_url="https://api.openai.com/v1", settings={})
        claude = Provider(
            name="Claude",
            protocol="anthropic",
            endpoint_url="https://api.anthropic.com",
            settings={"prices": {"claude-haiku-4-5": {"input": 2.0, "output": 4.0}}},  # an override
        )
        ollama = Provider(name="Ollama", protocol="openai-compatible", endpoint_url="http://localhost:11434/v1")
        session.add_all([admin, openai, claude, ollama])
    calls = [
        (openai, "gpt-4o", 1000, 200),
        (openai, "gpt-4o-2024-08-06", 3000, 100),
        (openai, "gpt-4.1-mini", 500, 50),
        (openai, "my-fine-tune", 400, 40),  # unpriced
        (claude, "claude-sonnet-4-5-20250929", 2000, 300),
        (claude, "claude-haiku-4-5", 100, 10),  # the override wins
        (ollama, "gpt-4o", 700, 70),  # same id on someone else's server: unpriced
    ]
    rows = [
        log_row(T0 + timedelta(hours=i), admin, provider, model, prompt=p, completion=c)
        for i, (provider, model, p, c) in enumerate(calls)
    ]
    insert_rows(engine, rows)
    rebuild_rollups(engine, progress=False)
    by_hand = (
        (1000 * 2.5 + 200 * 10.0)
        + (3000 * 2.5 + 100 * 10.0)
        + (500 * 0.4 + 50 * 1.6)
        + (2000 * 3.0 + 300 * 15.0)
        + (100 * 2.0 + 10 * 4.0)
    ) / 1_000_000
    flt = UsageFilter(T0, T0 + timedelta(days=1), timezone="UTC")
    with Session(engine) as session:
        page = usage_page(session, admin, flt)
        facts = load_facts(session, admin, flt)
    cost = next(t.value for t in page.tiles if t.key == "cost")
    assert cost == pytest.approx(by_hand, rel=1e-12)
    assert page.breakdown_provider_model["cost"].sum() == pytest.approx(by_hand, rel=1e-12)
    assert unpriced_models(facts.frame) == ["gpt-4o", "my-fine-tune"]  # Ollama's gpt-4o, and the fine-tune
    assert page.unpriced_models == ["gpt-4o", "my-fine-tune"]  # what the Usage page's cost note names
    priced = facts.frame.groupby("model")["priced"].all().to_dict()
    assert priced["gpt-4o-2024-08-06"] and priced["claude-sonnet-4-5-20250929"]
    assert not priced["my-fine-tune"]
