"""The Usage page's data shapes from labelled facts: tiles, series, latency tables, tops and breakdowns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mindroute.analytics.facts import Facts
from mindroute.analytics.filter import UsageFilter
from mindroute.analytics.frames import SUM_COLUMNS, group_codes, sum_by
from mindroute.analytics.histograms import (
    PERCENTILES,
    bucket_values,
    group_percentiles,
    grouped_counts,
    percentile_arrays,
)
from mindroute.analytics.labels import LABEL_COLUMNS

TOP_LIMIT = 10


def latency_percentiles(facts: Facts) -> dict[str, float | None]:
    """{'p50': ms, 'p95': ms, 'p99': ms} over all the facts; None without durations."""
    table = group_percentiles(facts.latency, [])
    if table.empty:
        return {f"p{p}": None for p in PERCENTILES}
    row = table.iloc[0]
    return {f"p{p}": None if math.isnan(row[f"p{p}"]) else float(row[f"p{p}"]) for p in PERCENTILES}


@dataclass(frozen=True)
class Tile:
    key: str
    label: str
    value: float | None
    previous: float | None
    approximate: bool = False

    @property
    def change(self) -> float | None:
        """Relative change against the previous period (0.1 = +10%); None when it had nothing."""
        if self.value is None or not self.previous:
            return None
        return (self.value - self.previous) / self.previous


def _totals(facts: Facts) -> dict[str, float | None]:
    frame = facts.frame

    def total(column: str) -> Any:
        return frame[column].to_numpy().sum()

    requests = int(total("requests"))
    errors = int(total("errors"))
    out: dict[str, float | None] = {
        "requests": requests,
        "tokens": int(total("tokens")),
        "prompt_tokens": int(total("prompt_tokens")),
        "completion_tokens": int(total("completion_tokens")),
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "cost": float(total("cost")),
    }
    out.update(latency_percentiles(facts))
    return out


TILE_LABELS = (
    ("requests", "Requests", False),
    ("tokens", "Total tokens", False),
    ("prompt_tokens", "Input tokens", False),
    ("completion_tokens", "Output tokens", False),
    ("error_rate", "Error rate", False),
    ("p50", "p50 latency (ms, approx.)", True),
    ("p95", "p95 latency (ms, approx.)", True),
    ("p99", "p99 latency (ms, approx.)", True),
    ("cost", "Estimated cost (USD)", False),
)


def tiles_from(current: Facts, previous: Facts) -> list[Tile]:
    now, before = _totals(current), _totals(previous)
    return [Tile(key, label, now[key], before[key], approx) for key, label, approx in TILE_LABELS]


def _bucket_frame(facts: Facts) -> pd.DataFrame:
    return pd.DataFrame({"bucket": range(len(facts.edges) - 1), "start": facts.bucket_labels()})


def tokens_over_time(facts: Facts, by: str = "provider") -> pd.DataFrame:
    """Long format: start (local bucket start), group (provider or model name), tokens; every bucket
    of every group present, zeros included. Needs add_labels()."""
    column = LABEL_COLUMNS[by]
    series = facts.series
    codes, groups = pd.factorize(series[column], sort=True)
    buckets = len(facts.edges) - 1
    sums = np.zeros(buckets * len(groups), dtype="int64")
    np.add.at(sums, series["bucket"].to_numpy() * len(groups) + codes, series["tokens"].to_numpy())
    starts = np.array(facts.bucket_labels(), dtype="datetime64[us]")
    return pd.DataFrame(
        {
            "start": np.repeat(starts, len(groups)),
            "group": np.tile(np.asarray(groups, dtype=object), buckets),
            "tokens": sums,
        }
    )


def requests_over_time(facts: Facts) -> pd.DataFrame:
    """start, requests, errors per bucket (zeros included)."""
    buckets = len(facts.edges) - 1
    out = {"start": np.array(facts.bucket_labels(), dtype="datetime64[us]")}
    for column in ("requests", "errors"):
        sums = np.zeros(buckets, dtype="int64")
        np.add.at(sums, facts.series["bucket"].to_numpy(), facts.series[column].to_numpy())
        out[column] = sums
    return pd.DataFrame(out)


def latency_over_time(facts: Facts) -> pd.DataFrame:
    """start, p50, p95, p99 (ms, approximate) per bucket; NaN where no call had a duration."""
    if facts.latency.frame.empty:
        table = group_percentiles(facts.latency, ["bucket"])
        return _bucket_frame(facts).merge(table, on="bucket", how="left").drop(columns="bucket")
    keys, counts = grouped_counts(facts.latency, ["bucket"])
    number = keys["bucket"].to_numpy().astype("int64")
    buckets = len(facts.edges) - 1
    inside = (number >= 0) & (number < buckets)
    out: dict[str, Any] = {"start": facts.bucket_labels()}
    for name, values in percentile_arrays(counts).items():
        column = np.full(buckets, np.nan)
        column[number[inside]] = values[inside]
        out[name] = column
    return pd.DataFrame(out)


def latency_by_model(facts: Facts) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(percentiles: model, calls, p50, p95, p99; histogram: model, latency_ms, calls) per model.
    Needs add_labels()."""
    if facts.latency.frame.empty:
        percentiles = group_percentiles(facts.latency, ["model_name"]).rename(columns={"model_name": "model"})
        models, counts = pd.DataFrame({"model_name": []}), np.zeros((0, 1), dtype="int64")
    else:
        models, counts = grouped_counts(facts.latency, ["model_name"])
        calls = counts.sum(axis=1)
        per_model = {
            "model": models["model_name"],
            "calls": calls if calls.all() else np.where(calls > 0, calls, np.nan),
        }
        by_model = pd.DataFrame({**per_model, **percentile_arrays(counts)})
    width = counts.shape[1]
    counts = counts.reshape(-1)
    models = models["model_name"]
    model_number, index = np.divmod(np.flatnonzero(counts), width)
    histogram = pd.DataFrame(
        {
            "model": np.asarray(models, dtype=object)[model_number],
            "latency_ms": bucket_values(width)[index],
            "calls": counts[counts > 0].astype("int64"),
        }
    )
    if facts.latency.frame.empty:
        per_model = histogram.groupby("model")["calls"].sum().rename("calls").reset_index()
        return per_model.merge(percentiles, on="model", how="right"), histogram
    return by_model, histogram


def top_tables(facts: Facts, dimensions: Sequence[str], limit: int = TOP_LIMIT) -> dict[str, pd.DataFrame]:
    out = {}
    if facts.frame.empty:
        for dimension in dimensions:
            for metric in ("tokens", "cost"):
                out[f"{dimension}_by_{metric}"] = top(facts, dimension, metric, limit)
        return out
    for dimension in dimensions:
        codes, uniques = pd.factorize(facts.frame[LABEL_COLUMNS[dimension]], sort=True, use_na_sentinel=False)
        names = np.asarray(uniques, dtype=object)  # sorted: a group's number is its name's rank
        sums = sum_by(facts.frame, codes.astype("int64"), len(names), ["tokens", "cost", "requests"])
        for metric in ("tokens", "cost"):
            ranked = np.lexsort((np.arange(len(names)), -sums[metric]))[:limit]
            table = {"name": pd.Series(names[ranked])}  # inferred, as a grouped index is
            table.update({column: values[ranked] for column, values in sums.items()})
            out[f"{dimension}_by_{metric}"] = pd.DataFrame(table)
    return out


def top(facts: Facts, dimension: str, metric: str = "tokens", limit: int = TOP_LIMIT) -> pd.DataFrame:
    """The top `limit` users / models / providers / api_keys by 'tokens' or 'cost': name, tokens, cost,
    requests. Needs add_labels()."""
    sums = facts.frame.groupby(LABEL_COLUMNS[dimension])[["tokens", "cost", "requests"]].sum()
    sums = sums.rename_axis("name").reset_index()
    return sums.sort_values([metric, "name"], ascending=[False, True]).head(limit).reset_index(drop=True)


def status_class(status: Any) -> str:
    """'2xx', '4xx', '5xx' … for a status code; 'unknown' without one."""
    if status is None or pd.isna(status):
        return "unknown"
    return f"{int(status) // 100}xx"


def status_codes(facts: Facts) -> pd.DataFrame:
    """status (None for unknown), requests, status_class ('2xx' …), status_label (the code as text) and
    share (of all requests); by status code."""
    frame = facts.frame.assign(status=facts.frame["status"].astype("Int64"))
    out = frame.groupby("status", dropna=False)["requests"].sum().reset_index()
    out = out.sort_values("status").reset_index(drop=True)
    total = int(out["requests"].sum())
    out["status_class"] = [status_class(s) for s in out["status"]]
    out["status_label"] = ["unknown" if pd.isna(s) else str(int(s)) for s in out["status"]]
    out["share"] = out["requests"] / total if total else 0.0
    return out


OTHER = "other"


def with_other(frame: pd.DataFrame, group: str, value: str, limit: int, keep: Sequence[str] = ()) -> pd.DataFrame:
    """`frame` with its `limit` largest groups (by the sum of `value`) kept and the others summed into one
    group named "other" per `keep` key (when more than one would go there): the same total, at most
    limit + 1 groups; largest first, "other" last."""
    sums = frame.groupby(group, sort=False)[value].sum()
    ranked = sums.reset_index().sort_values([value, group], ascending=[False, True], kind="stable")[group].tolist()
    kept = ranked if len(ranked) <= limit + 1 else ranked[:limit]
    order = {name: i for i, name in enumerate(kept)}
    named = frame[group].where(frame[group].isin(kept), OTHER)
    out = frame.assign(**{group: named}).groupby([*keep, group], sort=False, as_index=False)[value].sum()
    out["_order"] = out[group].map(order).fillna(len(kept))
    return out.sort_values(["_order", *keep], kind="stable").drop(columns="_order").reset_index(drop=True)


BREAKDOWN_DIMS = {"provider_model": ["provider", "model_name"], "user": ["user"], "request_type": ["request_type"]}


def breakdown(facts: Facts, by: str = "provider_model") -> pd.DataFrame:
    """One row per provider × model (by='provider_model'), per user (by='user') or per request type
    (by='request_type'): requests, tokens, input/output tokens, errors, error_rate, avg_latency_ms,
    p95_ms (approx.), cost. Needs add_labels()."""
    dims = BREAKDOWN_DIMS[by]
    if not facts.frame.empty:
        return _breakdown(facts, by, dims)
    sums = facts.frame.groupby(dims)[[*SUM_COLUMNS, "cost"]].sum().reset_index()
    sums["error_rate"] = sums["errors"] / sums["requests"]
    sums["avg_latency_ms"] = sums["duration_sum"] / sums["duration_count"].replace(0, np.nan)
    hist = facts.latency if by == "provider_model" else facts.user_latency
    p95 = group_percentiles(hist, dims)[[*dims, "p95"]].rename(columns={"p95": "p95_ms"})
    out = sums.merge(p95, on=dims, how="left").rename(columns={"model_name": "model"})
    dims = ["model" if d == "model_name" else d for d in dims]
    columns = [*dims, "requests", "tokens", "prompt_tokens", "completion_tokens", "errors", "error_rate"]
    return out[[*columns, "avg_latency_ms", "p95_ms", "cost"]].sort_values(dims).reset_index(drop=True)


def _breakdown(facts: Facts, by: str, dims: list[str]) -> pd.DataFrame:
    """breakdown() of non-empty facts, on arrays: the groups come sorted, p95 looked up per group."""
    codes, keys = group_codes(facts.frame, dims)
    sums = sum_by(facts.frame, codes, len(keys), [*SUM_COLUMNS, "cost"])
    hist = facts.latency if by == "provider_model" else facts.user_latency
    p95_table = group_percentiles(hist, dims)
    found = dict(zip(zip(*(p95_table[d].tolist() for d in dims), strict=True), p95_table["p95"].tolist(), strict=True))
    group_keys = zip(*(keys[d].tolist() for d in dims), strict=True)
    p95 = np.fromiter((found.get(k, np.nan) for k in group_keys), dtype="float64", count=len(keys))
    with np.errstate(divide="ignore", invalid="ignore"):
        error_rate = sums["errors"] / sums["requests"]
        count = sums["duration_count"]
        avg = sums["duration_sum"] / np.where(count == 0, np.nan, count)
    out: dict[str, Any] = {("model" if d == "model_name" else d): keys[d] for d in dims}
    out.update({c: sums[c] for c in ("requests", "tokens", "prompt_tokens", "completion_tokens", "errors")})
    out.update({"error_rate": error_rate, "avg_latency_ms": avg, "p95_ms": p95, "cost": sums["cost"]})
    return pd.DataFrame(out)


@dataclass
class UsagePage:
    """Everything the Usage page draws for one filter."""

    filter: UsageFilter
    granularity: str
    tiles: list[Tile]
    tokens_by_provider: pd.DataFrame
    tokens_by_model: pd.DataFrame
    requests: pd.DataFrame
    latency: pd.DataFrame
    latency_by_model: pd.DataFrame
    latency_histogram: pd.DataFrame
    top: dict[str, pd.DataFrame]
    status_codes: pd.DataFrame
    breakdown_provider_model: pd.DataFrame
    breakdown_user: pd.DataFrame
    breakdown_request_type: pd.DataFrame
    unpriced_models: list[str] = field(default_factory=list)  # used in the period, with no price: not in the cost

    @property
    def empty(self) -> bool:
        return not self.tiles[0].value
