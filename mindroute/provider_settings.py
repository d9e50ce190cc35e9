"""A provider's settings: the one shape of its models, default model and prices, and its one check.

The `settings` column (JSONB on PostgreSQL, JSON on SQLite) holds one documented shape::

    {
      "models": ["gpt-4o", "gpt-4o-mini"],       # model ids offered; [] means any model the provider accepts
      "default_model": "gpt-4o",                  # or null; when "models" lists any, one of them
      "prices": {                                 # USD per million tokens, each a number >= 0
        "gpt-4o": {"input": 2.5, "output": 10.0}
      }
    }

All three keys are optional when saving (missing means empty) and always present when read back.
Prices may name models that are no longer listed: old log rows still need their cost.
`validate_settings` is the one check, used by the form widgets and by the raw JSON editor
(`parse_settings_json`); it reports every problem, each under a field name such as
"settings.prices.gpt-4o.input".

Built-in prices: `mindroute/data/prices.json` (package data, read with importlib.resources) holds the
list prices of the well-known OpenAI, Anthropic and Google models, with the date they were read
(`as_of`) and the pricing pages they come from (`source`), in the same unit as the settings. `price_for`
is the one lookup every cost uses (the call's cost in the Logs, the Usage and Overview analytics):

1. the provider's own price for the model (its settings: an admin's override), matched as below;
2. else the built-in table of the provider's protocol: "openai", "anthropic", "google"; an
   "openai-compatible" provider gets the OpenAI table only when its endpoint is OpenAI's own
   (https://api.openai.com), since other servers (Ollama, vLLM, OpenRouter…) charge their own prices;
3. else unpriced: the result's `source` is None and callers count the model apart, never as $0.

Within each table the model id is matched exactly first, then by the snapshot rule: a leading
"models/" is dropped and one trailing version suffix is removed: a date ("-20250929", "-2024-08-06"),
a Gemini-style three-digit version ("-001") or "-latest". So "gpt-4o-2024-08-06" is priced as "gpt-4o"
and "claude-sonnet-4-5-20250929" as "claude-sonnet-4-5"; a snapshot priced differently from its
family (gpt-4o-2024-05-13) has its own exact entry, which wins.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any, Literal
from urllib.parse import urlsplit

from mindroute.i18n import N_, Message, _l, _ln
from mindroute.validation import MODEL_ID_MAX, FormValidationError, ValidationError, validate_model_id

SETTINGS_KEYS = ("models", "default_model", "prices")
PRICE_KEYS = ("input", "output")
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are USD per million tokens


def empty_settings() -> dict[str, Any]:
    return {"models": [], "default_model": None, "prices": {}}


class SettingsError(FormValidationError):
    """Every problem found in a settings value; `field`/`message` are the first, `problems` all of them
    (under "settings.models", "settings.prices.<model>.input" …)."""


def _check_models(raw: object, problems: dict[str, str]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems["settings.models"] = _l(
            "Models must be a list of model ids, like {example}", example='["gpt-4o", "gpt-4o-mini"]'
        )
        return []
    models: list[str] = []
    for position, item in enumerate(raw, start=1):
        try:
            model = validate_model_id(item, "settings.models")
        except ValidationError as exc:
            # Every bad entry is named, so one save shows them all.
            found = _l("Model #{position}: {problem}", position=position, problem=exc.message)
            earlier = problems.get("settings.models")
            problems["settings.models"] = _l("{earlier}; {found}", earlier=earlier, found=found) if earlier else found
            continue
        if model not in models:  # a duplicate is harmless; keep the first
            models.append(model)
    return models


def _check_default_model(raw: object, models: list[str], problems: dict[str, str]) -> str | None:
    if raw is None or raw == "":
        return None
    try:
        default = validate_model_id(raw, "settings.default_model")
    except ValidationError as exc:
        problems["settings.default_model"] = _l("Default model: {problem}", problem=exc.message)
        return None
    if models and default not in models:
        problems["settings.default_model"] = _l(
            "Default model {model} is not one of the listed models", model=repr(default)
        )
    return default


def _check_price(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _check_prices(raw: object, problems: dict[str, str]) -> dict[str, dict[str, float]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems["settings.prices"] = _l(
            "Prices must map model ids to prices, like {example}", example='{"gpt-4o": {"input": 2.5, "output": 10}}'
        )
        return {}
    prices: dict[str, dict[str, float]] = {}
    for model, entry in raw.items():
        if not isinstance(model, str) or not model.strip() or len(model.strip()) > MODEL_ID_MAX:
            problems["settings.prices"] = _l("Prices: {model} is not a model id", model=repr(model))
            continue
        model = model.strip()
        where = f"settings.prices.{model}"
        if not isinstance(entry, Mapping):
            problems[where] = _l(
                "Price of {model} must look like {example}", model=model, example='{"input": 2.5, "output": 10}'
            )
            continue
        unknown = sorted(str(k) for k in entry if k not in PRICE_KEYS)
        if unknown:
            problems[where] = _ln(
                "Price of {model} has an unknown key {keys}: use input and output",
                "Price of {model} has unknown keys {keys}: use input and output",
                len(unknown),
                model=model,
                keys=", ".join(unknown),
            )
        checked: dict[str, float] = {}
        for kind in PRICE_KEYS:
            if kind not in entry:
                problems[f"{where}.{kind}"] = (
                    _l("Price of {model} needs 'input' (USD per million input tokens)", model=model)
                    if kind == "input"
                    else _l("Price of {model} needs 'output' (USD per million output tokens)", model=model)
                )
                continue
            price = _check_price(entry[kind])
            if price is None:
                template = (
                    N_("Input price of {model} must be a number of 0 or more (USD per million tokens), got {value}")
                    if kind == "input"
                    else N_(
                        "Output price of {model} must be a number of 0 or more (USD per million tokens), got {value}"
                    )
                )
                problems[f"{where}.{kind}"] = Message(template, model=model, value=repr(entry[kind]))
                continue
            checked[kind] = price
        if len(checked) == len(PRICE_KEYS):
            prices[model] = checked
    return prices


def validate_settings(value: object) -> dict[str, Any]:
    """`value` in the documented shape (see the module docstring), or SettingsError naming each bad field."""
    if value is None:
        return empty_settings()
    if not isinstance(value, Mapping):
        raise SettingsError(
            {"settings": _l("Settings must be a JSON object, like {example}", example='{"models": [], "prices": {}}')}
        )
    problems: dict[str, str] = {}
    unknown = sorted(str(k) for k in value if k not in SETTINGS_KEYS)
    if unknown:
        problems["settings"] = _ln(
            "Unknown setting {names}: the settings hold {keys}",
            "Unknown settings {names}: the settings hold {keys}",
            len(unknown),
            names=", ".join(unknown),
            keys=", ".join(SETTINGS_KEYS),
        )
    models = _check_models(value.get("models"), problems)
    default = _check_default_model(value.get("default_model"), models, problems)
    prices = _check_prices(value.get("prices"), problems)
    if problems:
        raise SettingsError(problems)
    return {"models": models, "default_model": default, "prices": prices}


def _refuse_constant(name: str) -> float:
    raise ValueError(_l("{name} is not allowed in JSON; write a number", name=name))


def parse_settings_json(text: str | None) -> dict[str, Any]:
    """The raw JSON editor's text, parsed and validated; blank text means empty settings."""
    if not (text or "").strip():
        return empty_settings()
    try:
        value = json.loads(text or "", parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        message = _l(
            "Not valid JSON: {reason} at line {line}, column {column}",
            reason=exc.msg,
            line=exc.lineno,
            column=exc.colno,
        )
        raise SettingsError({"settings": message}) from None
    except ValueError as exc:  # NaN or Infinity
        raise SettingsError(
            {"settings": _l("Not valid JSON: {reason}", reason=exc.args[0] if exc.args else str(exc))}
        ) from None
    return validate_settings(value)


def settings_json(settings: Mapping[str, Any]) -> str:
    """The text the raw JSON editor starts from."""
    return json.dumps(settings, indent=2, ensure_ascii=False)


def read_settings(raw: object) -> dict[str, Any]:
    """Stored settings in the documented shape, skipping whatever is malformed (e.g. edited by hand in SQL)."""
    try:
        return validate_settings(raw)
    except SettingsError:
        pass
    raw = raw if isinstance(raw, Mapping) else {}
    models = _check_models(raw.get("models"), {})
    problems: dict[str, str] = {}
    default = _check_default_model(raw.get("default_model"), models, problems)
    return {
        "models": models,
        "default_model": None if problems else default,
        "prices": _check_prices(raw.get("prices"), {}),
    }


def settings_with_models(settings: Mapping[str, Any], models: Iterable[str]) -> dict[str, Any]:
    """`settings` with its model list replaced (e.g. after "refresh models"), keeping prices and,
    when it is still offered, the default model."""
    current = read_settings(settings)
    fresh = _check_models(list(models), {})
    default = current["default_model"] if current["default_model"] in fresh or not fresh else None
    return {"models": fresh, "default_model": default, "prices": current["prices"]}


# --- built-in prices and the one lookup ----------------------------------------------------

BUILTIN_TABLES = ("openai", "anthropic", "google")
OPENAI_HOSTS = frozenset({"api.openai.com"})
BUILTIN_PRICE_KEYS = ("input", "output", "cached_input")
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2}|\d{3}|latest)$")

PriceSource = Literal["provider", "built-in"]


@dataclass(frozen=True)
class BuiltinPrices:
    """The shipped price table: when it was read, from where, and each protocol's model prices."""

    as_of: date
    sources: tuple[str, ...]
    models: dict[str, dict[str, dict[str, float]]]  # table ("openai", ...) -> model id -> {"input", "output", ...}


def parse_builtin_prices(raw: object) -> BuiltinPrices:
    """The price file's content checked: ValueError naming the first bad part."""
    if not isinstance(raw, Mapping):
        raise ValueError("the price file must hold a JSON object")
    try:
        as_of = date.fromisoformat(str(raw.get("as_of")))
    except ValueError:
        raise ValueError(f"as_of must be a date like 2026-12-03, got {raw.get('as_of')!r}") from None
    sources = raw.get("source")
    if (
        not isinstance(sources, list)
        or not sources
        or not all(isinstance(u, str) and u.startswith("https://") for u in sources)
    ):
        raise ValueError("source must list the https addresses of the pricing pages")
    tables = raw.get("models")
    if not isinstance(tables, Mapping) or set(tables) != set(BUILTIN_TABLES):
        raise ValueError(f"models must hold exactly the tables {', '.join(BUILTIN_TABLES)}")
    models: dict[str, dict[str, dict[str, float]]] = {}
    for table, entries in tables.items():
        if not isinstance(entries, Mapping):
            raise ValueError(f"models.{table} must map model ids to prices")
        models[table] = {}
        for model, entry in entries.items():
            where = f"models.{table}.{model}"
            if not isinstance(entry, Mapping) or not {"input", "output"} <= set(entry):
                raise ValueError(f"{where} needs input and output")
            if set(entry) - set(BUILTIN_PRICE_KEYS):
                raise ValueError(f"{where} has keys other than {', '.join(BUILTIN_PRICE_KEYS)}")
            checked = {kind: _check_price(value) for kind, value in entry.items()}
            bad = [kind for kind, value in checked.items() if value is None]
            if bad:
                raise ValueError(f"{where}.{bad[0]} must be a number of 0 or more")
            models[table][model] = {kind: float(value) for kind, value in checked.items() if value is not None}
    return BuiltinPrices(as_of=as_of, sources=tuple(sources), models=models)


@functools.cache
def builtin_prices() -> BuiltinPrices:
    """The price table shipped in the package (mindroute/data/prices.json), read once per process."""
    text = resources.files("mindroute").joinpath("data", "prices.json").read_text(encoding="utf-8")
    return parse_builtin_prices(json.loads(text))


def builtin_table(protocol: str | None, endpoint_url: str | None = None) -> str | None:
    """Which built-in table prices a provider's models: its protocol's, or for an OpenAI-compatible
    provider the OpenAI one only when the endpoint is OpenAI's own; None when none applies."""
    if protocol in BUILTIN_TABLES:
        return protocol
    if protocol == "openai-compatible" and endpoint_url:
        host = (urlsplit(endpoint_url.strip()).hostname or "").lower()
        return "openai" if host in OPENAI_HOSTS else None
    return None


def snapshot_base(model: str) -> str | None:
    """The family id the snapshot rule prices a model id as, or None when the rule does not apply."""
    bare = model.removeprefix("models/")
    base = _SNAPSHOT_SUFFIX.sub("", bare)
    return base if base != model else None


def _match(table: Mapping[str, dict[str, float]], model: str) -> tuple[str, dict[str, float]] | None:
    if model in table:
        return model, table[model]
    base = snapshot_base(model)
    if base is not None and base in table:
        return base, table[base]
    return None


@dataclass(frozen=True)
class ModelPrice:
    """A model's price as used, and where it came from: the provider's settings, the built-in table, or
    nowhere (`source` None: unpriced, never $0). `matched` is the price entry's model id."""

    input: float | None
    output: float | None
    source: PriceSource | None
    matched: str | None = None

    @property
    def priced(self) -> bool:
        return self.source is not None


UNPRICED = ModelPrice(None, None, None)


def price_for(
    prices: Mapping[str, Mapping[str, float]] | None,
    model: str,
    protocol: str | None = None,
    endpoint_url: str | None = None,
) -> ModelPrice:
    """The one price lookup (see the module docstring): the provider's own price, else the built-in
    table for its protocol, else unpriced."""
    if not model:
        return UNPRICED
    own = _match(dict(prices or {}), model)
    if own is not None and {"input", "output"} <= set(own[1]):
        return ModelPrice(float(own[1]["input"]), float(own[1]["output"]), "provider", own[0])
    table = builtin_table(protocol, endpoint_url)
    if table is not None:
        shipped = _match(builtin_prices().models.get(table, {}), model)
        if shipped is not None:
            return ModelPrice(shipped[1]["input"], shipped[1]["output"], "built-in", shipped[0])
    return UNPRICED


def estimate_cost(
    prices: dict[str, dict[str, float]],
    model: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    *,
    protocol: str | None = None,
    endpoint_url: str | None = None,
) -> float | None:
    """USD from the model's price (price_for: the provider's own, else built-in for `protocol`); None
    when the model has no price or tokens are unknown."""
    price = price_for(prices, model, protocol, endpoint_url)
    if not price.priced or (prompt_tokens is None and completion_tokens is None):
        return None
    return ((prompt_tokens or 0) * (price.input or 0.0) + (completion_tokens or 0) * (price.output or 0.0)) / (
        TOKENS_PER_PRICE_UNIT
    )
