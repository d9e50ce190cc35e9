"""Records as pandas frames, and per-group numbers and sums over them (the analytics' array helpers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

SUM_COLUMNS = ["requests", "errors", "tokens", "prompt_tokens", "completion_tokens", "duration_sum", "duration_count"]


def records_frame(records: list[tuple[Any, ...]], columns: list[str]) -> pd.DataFrame:
    """Records as a frame: sums and bucket numbers int64, the rest object (built column by column,
    several times faster than from_records)."""
    values = list(zip(*records, strict=True)) if records else [()] * len(columns)
    numbers = {*SUM_COLUMNS, "bucket"}
    return pd.DataFrame(
        {
            column: np.array(values[n], dtype="int64") if column in numbers else pd.Series(values[n], dtype=object)
            for n, column in enumerate(columns)
        }
    )


def group_codes(frame: pd.DataFrame, by: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """(group number of each row, the groups' keys sorted) for the `by` columns of frame."""
    if not by:
        return np.zeros(len(frame), dtype="int64"), pd.DataFrame(index=[0])
    if len(by) == 1:  # every factorized value is present: the codes are the group numbers already
        codes, uniques = pd.factorize(frame[by[0]], sort=True, use_na_sentinel=False)
        return codes.astype("int64"), pd.DataFrame({by[0]: pd.Series(np.asarray(uniques, dtype=object), dtype=object)})
    factorized = [pd.factorize(frame[column], sort=True, use_na_sentinel=False) for column in by]
    # One integer per row (mixed radix over the columns' codes), numbered in sorted order.
    combined = np.zeros(len(frame), dtype="int64")
    for codes, uniques in factorized:
        combined = combined * len(uniques) + codes
    combos, inverse = np.unique(combined, return_inverse=True)
    columns = {}
    for column, (_codes, uniques) in reversed(list(zip(by, factorized, strict=True))):
        combos, digit = np.divmod(combos, len(uniques))
        columns[column] = pd.Series(np.asarray(uniques, dtype=object)[digit], dtype=object)
    keys = pd.DataFrame({column: columns[column] for column in by})
    return inverse.reshape(-1), keys


def sum_rows(codes: np.ndarray, groups: int, values: np.ndarray) -> np.ndarray:
    """Sums of the rows of `values` (1-D or 2-D) per group number in `codes` (one per row), where every
    group 0..groups-1 has rows (as group_codes numbers them)."""
    if len(codes) == groups and np.array_equal(codes, np.arange(groups)):
        return values
    if not len(codes):
        return np.zeros((groups, *values.shape[1:]), dtype=values.dtype)
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return np.add.reduceat(values[order], starts, axis=0)


def sum_by(frame: pd.DataFrame, codes: np.ndarray, groups: int, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Sums of `columns` per group number (`codes`, one per row of frame); integers stay exact."""
    integers = [column for column in columns if column in SUM_COLUMNS]
    others = [column for column in columns if column not in SUM_COLUMNS]
    out = {}
    if integers:
        stacked = np.column_stack([frame[column].to_numpy(dtype="int64") for column in integers])
        sums = sum_rows(codes, groups, stacked)
        out.update({column: sums[:, n] for n, column in enumerate(integers)})
    for column in others:
        out[column] = sum_rows(codes, groups, frame[column].to_numpy())
    return {column: out[column] for column in columns}
