"""Display names for the ids in facts: users, providers, models and API keys."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from mindroute.analytics.facts import Facts
from mindroute.analytics.levels import SOURCE_PLAYGROUND
from mindroute.analytics.pricing import as_uuid
from mindroute.models import ApiKey, Provider, User

UNKNOWN = "(unknown)"


def add_labels(session: Session, facts: Facts) -> None:
    """Add display-name columns to the facts and their histograms: user, provider, model_name,
    api_key (or 'playground')."""
    frame = facts.frame
    user_ids = {v: as_uuid(v) for v in frame["user_id"].dropna().unique()}
    users: dict[Any, str] = {}
    wanted = [u for u in user_ids.values() if u]
    if wanted:
        stmt = select(User.id, User.name, User.email).where(User.id.in_(wanted))
        users = {uid: f"{name} <{email}>" for uid, name, email in session.execute(stmt)}
    providers = {pid: name for pid, name in session.execute(select(Provider.id, Provider.name))}
    key_ids = {v: as_uuid(v) for v in frame["api_key_id"].dropna().unique()}
    keys: dict[Any, str] = {}
    if any(key_ids.values()):
        stmt = select(ApiKey.id, ApiKey.name, ApiKey.prefix).where(ApiKey.id.in_([k for k in key_ids.values() if k]))
        keys = {kid: f"{name} ({prefix}…)" if prefix else name for kid, name, prefix in session.execute(stmt)}

    def named(column: pd.Series, names: dict[Any, str]) -> pd.Series:
        codes, uniques = pd.factorize(column.to_numpy(dtype=object))
        lookup = np.array([*(names.get(as_uuid(v), str(v)) for v in uniques), UNKNOWN], dtype=object)
        return pd.Series(lookup[codes], index=column.index, dtype=object)  # code -1 (missing): UNKNOWN

    frame["user"] = named(frame["user_id"], users)
    frame["provider"] = named(frame["provider_id"], providers)
    frame["model_name"] = frame["model"].astype(object).fillna(UNKNOWN)
    key_names = named(frame["api_key_id"], keys)
    no_key = np.where(frame["source"] == SOURCE_PLAYGROUND, "playground", "(no key)")
    frame["api_key"] = pd.Series(np.where(frame["api_key_id"].isna(), no_key, key_names), dtype=object)
    for by_model in (facts.series, facts.latency.frame):
        by_model["provider"] = named(by_model["provider_id"], providers)
        by_model["model_name"] = by_model["model"].astype(object).fillna(UNKNOWN)
    facts.user_latency.frame["user"] = named(facts.user_latency.frame["user_id"], users)


LABEL_COLUMNS = {"user": "user", "provider": "provider", "model": "model_name", "api_key": "api_key"}
