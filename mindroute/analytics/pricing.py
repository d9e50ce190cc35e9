"""The cost of facts in USD, from each provider's per-model prices."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from mindroute.models import Provider
from mindroute.provider_settings import estimate_cost, read_settings


def as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _price_table(session: Session) -> dict[uuid.UUID, dict[str, dict[str, float]]]:
    rows = session.execute(select(Provider.id, Provider.settings))
    return {provider_id: read_settings(settings)["prices"] for provider_id, settings in rows}


def add_cost(session: Session, frame: pd.DataFrame) -> None:
    """cost (USD) per fact from the provider's per-model prices; `priced` False where there is none."""
    prices = _price_table(session) if not frame.empty else {}
    keys = [
        (provider if isinstance(provider, str) else "", model if isinstance(model, str) else "")
        for provider, model in zip(frame["provider_id"].tolist(), frame["model"].tolist(), strict=True)
    ]
    per_input: dict[tuple[str, str], float] = {}
    per_output: dict[tuple[str, str], float] = {}
    priced: dict[tuple[str, str], bool] = {}
    for provider, model in dict.fromkeys(keys):
        table = prices.get(as_uuid(provider), {}) if provider else {}
        # estimate_cost is linear in the tokens, so the cost of a sum is the sum of the costs.
        rate_in = estimate_cost(table, model, 1, 0) if model else None
        rate_out = estimate_cost(table, model, 0, 1) if model else None
        per_input[(provider, model)] = rate_in or 0.0
        per_output[(provider, model)] = rate_out or 0.0
        priced[(provider, model)] = rate_in is not None
    rate_in_col = np.fromiter((per_input[k] for k in keys), dtype="float64", count=len(keys))
    rate_out_col = np.fromiter((per_output[k] for k in keys), dtype="float64", count=len(keys))
    frame["cost"] = (
        frame["prompt_tokens"].to_numpy() * rate_in_col + frame["completion_tokens"].to_numpy() * rate_out_col
    )
    frame["priced"] = np.fromiter((priced[k] for k in keys), dtype=bool, count=len(keys))
