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
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from mindroute.validation import MODEL_ID_MAX, ValidationError, validate_model_id

SETTINGS_KEYS = ("models", "default_model", "prices")
PRICE_KEYS = ("input", "output")
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are USD per million tokens


def empty_settings() -> dict[str, Any]:
    return {"models": [], "default_model": None, "prices": {}}


class SettingsError(ValidationError):
    """Every problem found in a settings value; `field`/`message` are the first, `problems` all of them."""

    def __init__(self, problems: dict[str, str]) -> None:
        first_field, first_message = next(iter(problems.items()))
        more = len(problems) - 1
        super().__init__(first_field, first_message + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""))
        self.problems = problems


def _check_models(raw: object, problems: dict[str, str]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems["settings.models"] = 'Models must be a list of model ids, like ["gpt-4o", "gpt-4o-mini"]'
        return []
    models: list[str] = []
    for position, item in enumerate(raw, start=1):
        try:
            model = validate_model_id(item, "settings.models")
        except ValidationError as exc:
            problems.setdefault("settings.models", f"Model #{position}: {exc.message}")
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
        problems["settings.default_model"] = f"Default model: {exc.message}"
        return None
    if models and default not in models:
        problems["settings.default_model"] = f"Default model {default!r} is not one of the listed models"
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
        problems["settings.prices"] = (
            'Prices must map model ids to prices, like {"gpt-4o": {"input": 2.5, "output": 10}}'
        )
        return {}
    prices: dict[str, dict[str, float]] = {}
    for model, entry in raw.items():
        if not isinstance(model, str) or not model.strip() or len(model.strip()) > MODEL_ID_MAX:
            problems["settings.prices"] = f"Prices: {model!r} is not a model id"
            continue
        model = model.strip()
        where = f"settings.prices.{model}"
        if not isinstance(entry, Mapping):
            problems[where] = f'Price of {model} must look like {{"input": 2.5, "output": 10}}'
            continue
        unknown = sorted(str(k) for k in entry if k not in PRICE_KEYS)
        if unknown:
            problems[where] = f"Price of {model} has unknown key(s) {', '.join(unknown)}: use input and output"
        checked: dict[str, float] = {}
        for kind in PRICE_KEYS:
            if kind not in entry:
                problems[f"{where}.{kind}"] = f"Price of {model} needs {kind!r} (USD per million {kind} tokens)"
                continue
            price = _check_price(entry[kind])
            if price is None:
                problems[f"{where}.{kind}"] = (
                    f"{kind.capitalize()} price of {model} must be a number of 0 or more "
                    f"(USD per million tokens), got {entry[kind]!r}"
                )
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
        raise SettingsError({"settings": 'Settings must be a JSON object, like {"models": [], "prices": {}}'})
    problems: dict[str, str] = {}
    unknown = sorted(str(k) for k in value if k not in SETTINGS_KEYS)
    if unknown:
        problems["settings"] = f"Unknown setting(s) {', '.join(unknown)}: the settings hold {', '.join(SETTINGS_KEYS)}"
    models = _check_models(value.get("models"), problems)
    default = _check_default_model(value.get("default_model"), models, problems)
    prices = _check_prices(value.get("prices"), problems)
    if problems:
        raise SettingsError(problems)
    return {"models": models, "default_model": default, "prices": prices}


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in JSON; write a number")


def parse_settings_json(text: str | None) -> dict[str, Any]:
    """The raw JSON editor's text, parsed and validated; blank text means empty settings."""
    if not (text or "").strip():
        return empty_settings()
    try:
        value = json.loads(text or "", parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        message = f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise SettingsError({"settings": message}) from None
    except ValueError as exc:  # NaN or Infinity
        raise SettingsError({"settings": f"Not valid JSON: {exc}"}) from None
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


def estimate_cost(
    prices: dict[str, dict[str, float]], model: str, prompt_tokens: int | None, completion_tokens: int | None
) -> float | None:
    """USD from the provider's per-model prices; None when the model has no price or tokens are unknown."""
    price = prices.get(model)
    if not price or (prompt_tokens is None and completion_tokens is None):
        return None
    return (
        (prompt_tokens or 0) * price.get("input", 0.0) + (completion_tokens or 0) * price.get("output", 0.0)
    ) / TOKENS_PER_PRICE_UNIT
