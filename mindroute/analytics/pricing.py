"""The cost of facts in USD, from each model's price as `price_for` finds it (provider's own, else built-in)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from mindroute.models import Provider
from mindroute.provider_settings import price_for, read_settings


def as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class ProviderPricing:
    """What price_for needs of one provider: its own prices, its protocol and endpoint."""

    prices: dict[str, dict[str, float]]
    protocol: str
    endpoint_url: str


def _price_table(session: Session) -> dict[uuid.UUID, ProviderPricing]:
    rows = session.execute(select(Provider.id, Provider.settings, Provider.protocol, Provider.endpoint_url))
    return {
        provider_id: ProviderPricing(read_settings(settings)["prices"], protocol, endpoint_url or "")
        for provider_id, settings, protocol, endpoint_url in rows
    }


def _rates(providers: Mapping[uuid.UUID, ProviderPricing], provider: str, model: str) -> tuple[float, float, bool]:
    """USD per token in and out for (provider, model), and whether it has a price at all."""
    pricing = providers.get(as_uuid(provider)) if provider else None
    if pricing is None or not model:  # a deleted provider, or no model: nothing to price it by
        return 0.0, 0.0, False
    price = price_for(pricing.prices, model, pricing.protocol, pricing.endpoint_url)
    if not price.priced:
        return 0.0, 0.0, False
    return (price.input or 0.0) / 1_000_000, (price.output or 0.0) / 1_000_000, True


def add_cost(session: Session, frame: pd.DataFrame) -> None:
    """cost (USD) per fact from the model's price; `priced` False where there is none (its cost is 0 and
    must be reported as missing, see unpriced_models)."""
    providers = _price_table(session) if not frame.empty else {}
    keys = [
        (provider if isinstance(provider, str) else "", model if isinstance(model, str) else "")
        for provider, model in zip(frame["provider_id"].tolist(), frame["model"].tolist(), strict=True)
    ]
    # The cost is linear in the tokens, so the cost of a sum is the sum of the costs.
    rates = {key: _rates(providers, *key) for key in dict.fromkeys(keys)}
    rate_in_col = np.fromiter((rates[k][0] for k in keys), dtype="float64", count=len(keys))
    rate_out_col = np.fromiter((rates[k][1] for k in keys), dtype="float64", count=len(keys))
    frame["cost"] = (
        frame["prompt_tokens"].to_numpy() * rate_in_col + frame["completion_tokens"].to_numpy() * rate_out_col
    )
    frame["priced"] = np.fromiter((rates[k][2] for k in keys), dtype=bool, count=len(keys))


def unpriced_models(frame: pd.DataFrame) -> list[str]:
    """The models, sorted, whose facts carry tokens but no price: the cost leaves them out."""
    if frame.empty or "priced" not in frame:
        return []
    tokens = frame["prompt_tokens"].to_numpy() + frame["completion_tokens"].to_numpy()
    missing = frame.loc[~frame["priced"].to_numpy() & (tokens > 0), "model"]
    return sorted({m if isinstance(m, str) and m else "(no model)" for m in missing.tolist()})
