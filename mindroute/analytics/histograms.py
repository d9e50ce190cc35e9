"""Latency histograms: the packed form rollup rows keep, log-spaced buckets, and percentiles from them.

Buckets are log-spaced with ratio LATENCY_BUCKET_RATIO, so a bucket's representative value is within
1% of every duration in it (durations are whole ms). A packed histogram is (uint16 bucket index,
uint32 calls) little-endian pairs, so concatenated histograms are still a valid histogram.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mindroute.analytics.frames import group_codes, records_frame, sum_rows

PERCENTILES = (50, 95, 99)


LATENCY_BUCKET_RATIO = 1.02
_LOG_RATIO = math.log(LATENCY_BUCKET_RATIO)


HISTOGRAM_ENTRY = struct.Struct("<HI")


def encode_histogram(histogram: Mapping[int, int]) -> bytes:
    """Packed (index, calls) pairs, sorted by index; zero counts left out."""
    pack = HISTOGRAM_ENTRY.pack
    return b"".join(pack(index, calls) for index, calls in sorted(histogram.items()) if calls > 0)


def decode_histogram(blob: bytes | None) -> dict[int, int]:
    out: dict[int, int] = {}
    for index, calls in HISTOGRAM_ENTRY.iter_unpack(blob or b""):
        out[index] = out.get(index, 0) + calls
    return out


def latency_bucket(duration_ms: int) -> int:
    """The histogram bucket of a duration: floor(log(1 + ms) / log(ratio))."""
    return math.floor(math.log1p(max(0, duration_ms)) / _LOG_RATIO + 1e-9)


def latency_bucket_bounds(index: int) -> tuple[float, float]:
    """[low, high) in ms of a bucket."""
    return math.expm1(index * _LOG_RATIO), math.expm1((index + 1) * _LOG_RATIO)


def latency_bucket_value(index: int) -> float:
    """The value reported for a bucket: its only whole ms if it holds one, else its log-midpoint."""
    low, high = latency_bucket_bounds(index)
    first, last = math.ceil(low - 1e-9), math.ceil(high - 1e-9) - 1
    if first == last:
        return float(first)
    return math.expm1((index + 0.5) * _LOG_RATIO)


def histogram_percentile(histogram: Mapping[int, int], percentile: float) -> float | None:
    """Nearest-rank percentile (the ceil(p/100 * n)-th smallest call) of a histogram; approximate (1%)."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(percentile / 100 * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return latency_bucket_value(index)
    return latency_bucket_value(max(histogram))


HISTOGRAM_DTYPE = np.dtype([("index", "<u2"), ("calls", "<u4")])


@dataclass
class Histograms:
    """Latency histograms of groups: `frame` holds the groups' key columns, one row per group (sorted);
    `counts` the calls of each group per latency bucket, dense (groups x buckets)."""

    frame: pd.DataFrame
    counts: np.ndarray

    @classmethod
    def build(cls, keys: list[str], records: list[tuple[Any, ...]], blobs: list[bytes]) -> Histograms:
        """From packed histograms (`blobs`), one per record of key values; records may repeat."""
        frame = records_frame(records, keys)
        if frame.empty:
            return cls(frame, np.zeros((0, 1), dtype="int64"))
        entries = np.frombuffer(b"".join(blobs), dtype=HISTOGRAM_DTYPE)
        lengths = np.fromiter((len(b) for b in blobs), dtype="int64", count=len(blobs)) // HISTOGRAM_DTYPE.itemsize
        codes, groups = group_codes(frame, keys)
        width = int(entries["index"].max()) + 1 if len(entries) else 1
        rows = np.repeat(codes, lengths)
        # bincount adds in float64: exact, as no count of calls comes near 2**53.
        flat = np.bincount(rows * width + entries["index"].astype("int64"), entries["calls"], len(groups) * width)
        return cls(groups, flat.astype("int64").reshape(len(groups), width))


_BUCKET_VALUES = np.zeros(0)


def bucket_values(width: int) -> np.ndarray:
    """latency_bucket_value of buckets 0..width-1, as an array (computed once)."""
    global _BUCKET_VALUES
    if len(_BUCKET_VALUES) < width:
        _BUCKET_VALUES = np.array([latency_bucket_value(i) for i in range(max(width, 1024))])
    return _BUCKET_VALUES[:width]


def grouped_counts(hist: Histograms, by: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """(keys, calls per latency bucket) per group of `by` columns of hist.frame."""
    codes, keys = group_codes(hist.frame, by)
    if not by:
        return keys, hist.counts.sum(axis=0, keepdims=True)
    return keys, sum_rows(codes, len(keys), hist.counts)


def group_percentiles(hist: Histograms, by: Sequence[str]) -> pd.DataFrame:
    """p50/p95/p99 (ms, approximate) per group of `by` columns of hist.frame (nearest rank)."""
    columns = [*by, *(f"p{p}" for p in PERCENTILES)]
    if hist.frame.empty:
        return pd.DataFrame(columns=columns)
    keys, counts = grouped_counts(hist, by)
    out: dict[str, Any] = {column: keys[column] for column in by}
    out.update(percentile_arrays(counts))
    return pd.DataFrame({column: out[column] for column in columns})


def percentile_arrays(counts: np.ndarray) -> dict[str, np.ndarray]:
    """{'p50': ..., 'p95': ..., 'p99': ...} (ms, nearest rank, NaN without calls) per row of counts."""
    seen = counts.cumsum(axis=1)
    total = seen[:, -1]
    values = bucket_values(counts.shape[1])
    out = {}
    for p in PERCENTILES:
        rank = np.maximum(1, np.ceil(total * p / 100))
        position = np.argmax(seen >= rank[:, None], axis=1)
        out[f"p{p}"] = np.where(total > 0, values[position], np.nan)
    return out


def exact_percentile(values: Iterable[float], percentile: float) -> float | None:
    """Nearest-rank percentile of raw values (the reference the approximate ones are tested against)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return float(ordered[max(1, math.ceil(percentile / 100 * len(ordered))) - 1])
