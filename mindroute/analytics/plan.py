"""Which rollup levels and raw Logs intervals a filter's range is read from, as a list of reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mindroute.analytics.filter import (
    UsageFilter,
    Viewer,
    bucket_edges,
    needs_all_dims,
    pick_granularity,
    scoped,
    split_range,
)
from mindroute.analytics.levels import BY_MODEL, DAILY, HOURLY, Level, day_of
from mindroute.analytics.reads import Read, read_raw, read_series, read_window


def window_pieces(first_hour: datetime, last_hour: datetime) -> list[tuple[Level, datetime, datetime]]:
    """The whole hours [first_hour, last_hour) as rollup reads: the whole UTC days inside from the
    daily level, the hours before and after them from the hourly level."""
    first_day = day_of(first_hour) + (timedelta(days=1) if first_hour != day_of(first_hour) else timedelta(0))
    last_day = day_of(last_hour)
    if first_day >= last_day:
        return [(HOURLY, first_hour, last_hour)] if first_hour < last_hour else []
    pieces = [(HOURLY, first_hour, first_day), (DAILY, first_day, last_day), (HOURLY, last_day, last_hour)]
    return [(level, low, high) for level, low, high in pieces if low < high]


def _window_pieces(flt: UsageFilter, first_hour: datetime, last_hour: datetime, detail: bool) -> list[Any]:
    """The rollup reads of the whole hours of a range, from as few rollup rows as the filter allows."""
    if not detail and not needs_all_dims(flt):
        return [(BY_MODEL, first_hour, last_hour)]
    return window_pieces(first_hour, last_hour)


@dataclass
class Plan:
    """What load_facts reads for one filter: independent reads, each filling its own Parts."""

    flt: UsageFilter
    edges: list[datetime]
    granularity: str
    detail: bool
    reads: list[Read]


def make_plan(viewer: Viewer, flt: UsageFilter, granularity: str | None, detail: bool) -> Plan:
    """The reads of `flt` as `viewer` may run it: rollup pieces for the whole hours, raw rows for the rest."""
    flt = scoped(flt, viewer)
    granularity = granularity or pick_granularity(flt.start, flt.end)
    edges = bucket_edges(flt.start, flt.end, flt.zone, granularity)
    first_hour, last_hour, cut, raw_intervals = split_range(flt.start, flt.end, edges)
    if not detail:
        cut = set()
        raw_intervals = [(low, high) for low, high in raw_intervals if low < first_hour or high > last_hour]
    reads: list[Read] = []
    if first_hour < last_hour:
        # The biggest read first: reads are started in this order, side by side.
        for piece in sorted(_window_pieces(flt, first_hour, last_hour, detail), key=lambda p: p[1] - p[2]):
            reads.append(lambda s, parts, piece=piece: read_window(s, flt, piece, detail=detail, parts=parts))
        if detail:
            reads.append(lambda s, parts: read_series(s, flt, (first_hour, last_hour, cut), edges, parts=parts))
    if raw_intervals:
        whole = (first_hour, last_hour)
        reads.append(lambda s, parts: read_raw(s, flt, edges, raw_intervals, whole, detail=detail, parts=parts))
    return Plan(flt, edges, granularity, detail, reads)
