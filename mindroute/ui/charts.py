"""The Usage page's plotly figures: light graph_objects traces, the active theme's palette, titled axes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from babel import dates

from mindroute import i18n
from mindroute.analytics.labels import UNKNOWN
from mindroute.analytics.shapes import OTHER, with_other
from mindroute.i18n import _, _l

# Ten colours that stay apart from one another on white and on near-black: no dark blue (unreadable on
# black), no red (that is the errors' colour), grey kept for "other".
PALETTES = {
    "light": [
        "#3B6FD8",
        "#F28E2B",
        "#59A14F",
        "#B07AA1",
        "#17A2B8",
        "#EDC948",
        "#FF9DA7",
        "#9C755F",
        "#7F3C8D",
        "#2CA58D",
    ],
    "dark": [
        "#6FA8FF",
        "#FFA94D",
        "#7DD87A",
        "#D9A6F5",
        "#4DD6E6",
        "#FFE066",
        "#FFB3C1",
        "#D0A98A",
        "#B28DFF",
        "#5FE0C0",
    ],
}
ERROR = {"light": "#C62828", "dark": "#FF6B6B"}
OTHER_COLOUR = {"light": "#9E9E9E", "dark": "#8A8F98"}
STATUS_CLASS_COLOURS = {
    "light": {"2xx": "#2E7D32", "3xx": "#6D7B8D", "4xx": "#EF6C00", "5xx": "#C62828", "unknown": "#9E9E9E"},
    "dark": {"2xx": "#66BB6A", "3xx": "#AAB4C3", "4xx": "#FFA726", "5xx": "#FF6B6B", "unknown": "#8A8F98"},
}
# Distinct colours in one chart: the top groups by their share, the rest summed as "other".
CHART_GROUPS = 8
HEIGHT = 340
BINS_PER_DECADE = 12  # the latency distribution's resolution: smooth lines, a few dozen points per model
# Readable ticks on a log axis of milliseconds (the words translated where drawn: ms_ticks()).
MS_TICKS = ([1, 10, 100, 1_000, 10_000, 100_000], ["1 ms", "10 ms", "100 ms", "1 s", "10 s", "100 s"])
# The names the analytics give groups that are no name from the data: shown in the reader's language.
GROUP_WORDS = {OTHER: _l("other"), UNKNOWN: _l("(unknown)"), "(no key)": _l("(no key)"), "unknown": _l("unknown")}


def ms_ticks() -> tuple[list[int], list[str]]:
    """MS_TICKS with their labels in the reader's language ("1 ms" .. "100 s"; "1초" in Korean)."""
    labels = [_("{n} ms", n=n) for n in (1, 10, 100)] + [_("{n} s", n=n) for n in (1, 10, 100)]
    return MS_TICKS[0], labels


# Plotly writes date ticks in English ("Dec 2") whatever the page's language: in Korean, d3 formats with
# the Korean units ("12월 2일"), per zoom level; the hover's header the same way.
DATE_TICKS = {
    "ko": (
        [
            {"dtickrange": [None, 86_400_000], "value": "%H:%M<br>%-m월 %-d일"},
            {"dtickrange": [86_400_000, "M1"], "value": "%-m월 %-d일"},
            {"dtickrange": ["M1", "M12"], "value": "%Y년 %-m월"},
            {"dtickrange": ["M12", None], "value": "%Y년"},
        ],
        "%Y년 %-m월 %-d일 %H:%M",
    )
}


def date_axis(fig: go.Figure) -> go.Figure:
    """The x axis of times written in the reader's language (plotly's own English for English)."""
    ticks = DATE_TICKS.get(i18n.current())
    if ticks is not None:
        fig.update_xaxes(tickformatstops=ticks[0], hoverformat=ticks[1])
    return fig


def theme() -> str:
    """'light' or 'dark': the theme the browser shows (light when unknown, as in AppTest)."""
    kind = getattr(getattr(st.context, "theme", None), "type", None)
    return kind if kind in PALETTES else "light"


def chart_text(value: Any) -> str:
    """A label for plotly, which renders a subset of HTML in text: no tag can come from user data."""
    return str(value).replace("<", "‹").replace(">", "›")


def group_name(value: Any) -> str:
    """A group's name as shown: the analytics' own words ("other", "(unknown)") translated, data as it is."""
    word = GROUP_WORDS.get(value) if isinstance(value, str) else None
    return i18n.text(word) if word is not None else chart_text(value)


def colours(groups: Sequence[str], mode: str) -> dict[str, str]:
    """One palette colour per group, in order, never the same twice; "other" grey."""
    palette = PALETTES[mode]
    named = [g for g in groups if g != OTHER]
    out = {g: palette[i % len(palette)] for i, g in enumerate(named)}
    if OTHER in groups:
        out[OTHER] = OTHER_COLOUR[mode]
    return out


def layout(fig: go.Figure, *, x_title: str | None, y_title: str | None, legend: bool = True) -> go.Figure:
    fig.update_layout(
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "title": None, "traceorder": "normal"},
        showlegend=legend,
        height=HEIGHT,
        hovermode="closest",
    )
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title, rangemode="tozero")
    return fig


def stacked_tokens(series: pd.DataFrame, mode: str) -> tuple[go.Figure, pd.DataFrame]:
    """Tokens per bucket stacked by group (the top CHART_GROUPS, the rest as other); the figure and its data."""
    shown = with_other(series, "group", "tokens", CHART_GROUPS, keep=["start"])
    groups = list(dict.fromkeys(shown["group"]))
    palette = colours(groups, mode)
    fig = go.Figure(
        [
            go.Bar(
                x=part["start"],
                y=part["tokens"],
                name=group_name(group),
                marker_color=palette[group],
                hovertemplate=_("{value} tokens", value="%{y:,}") + "<extra>" + group_name(group) + "</extra>",
            )
            for group, part in shown.groupby("group", sort=False)
        ]
    )
    fig.update_layout(barmode="stack")
    return date_axis(layout(fig, x_title=None, y_title=_("tokens"))), shown


def requests_and_errors(frame: pd.DataFrame, mode: str) -> go.Figure:
    fig = go.Figure(
        [
            go.Scatter(x=frame["start"], y=frame["requests"], name=_("requests"), line_color=PALETTES[mode][0]),
            go.Scatter(x=frame["start"], y=frame["errors"], name=_("errors"), line_color=ERROR[mode]),
        ]
    )
    fig.update_traces(mode="lines+markers", hovertemplate="%{y:,}")
    fig.update_layout(hovermode="x unified")
    return date_axis(layout(fig, x_title=None, y_title=_("requests")))


def latency_lines(frame: pd.DataFrame, mode: str) -> go.Figure:
    palette = PALETTES[mode]
    fig = go.Figure(
        [
            go.Scatter(x=frame["start"], y=frame[name], name=name, line_color=palette[i])
            for i, name in enumerate(("p50", "p95", "p99"))
        ]
    )
    fig.update_traces(mode="lines+markers", hovertemplate=_("{value} ms", value="%{y:,.0f}"))
    fig.update_layout(hovermode="x unified")
    return date_axis(layout(fig, x_title=None, y_title=_("latency (ms)")))


def latency_distribution(histogram: pd.DataFrame, mode: str) -> tuple[go.Figure, pd.DataFrame]:
    """Calls per latency bin (BINS_PER_DECADE), one line per top model and "other", on a log axis of
    milliseconds; the figure and its data."""
    binned = histogram.assign(latency_ms=_log_bins(histogram["latency_ms"]))
    binned = binned.groupby(["model", "latency_ms"], as_index=False, sort=False)["calls"].sum()
    shown = with_other(binned, "model", "calls", CHART_GROUPS, keep=["latency_ms"]).sort_values(
        ["model", "latency_ms"], kind="stable"
    )
    order = list(dict.fromkeys(with_other(binned, "model", "calls", CHART_GROUPS)["model"]))
    palette = colours(order, mode)
    parts = dict(tuple(shown.groupby("model", sort=False)))
    fig = go.Figure(
        [
            go.Scatter(
                x=parts[model]["latency_ms"],
                y=parts[model]["calls"],
                name=group_name(model),
                mode="lines",
                line={"color": palette[model], "shape": "hvh", "width": 2},
                hovertemplate=_("{calls} calls near {ms} ms", calls="%{y:,}", ms="%{x:,.0f}")
                + "<extra>"
                + group_name(model)
                + "</extra>",
            )
            for model in order
            if model in parts
        ]
    )
    layout(fig, x_title=_("latency (ms, log scale)"), y_title=_("calls"))
    tickvals, ticktext = ms_ticks()
    fig.update_xaxes(type="log", tickvals=tickvals, ticktext=ticktext)
    return fig, shown


def _log_bins(values: pd.Series) -> np.ndarray:
    """Each latency rounded to the nearest of BINS_PER_DECADE steps per power of ten (1 ms at least)."""
    logs = np.log10(np.maximum(pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64"), 1.0))
    return np.round(10 ** (np.round(logs * BINS_PER_DECADE) / BINS_PER_DECADE))


def top_bars(table: pd.DataFrame, metric: str, mode: str) -> go.Figure:
    shown = table.iloc[::-1]
    unit = "USD" if metric == "cost" else _("tokens")
    hover = "%{x:$,.6f}" if metric == "cost" else _("{value} tokens", value="%{x:,}")
    fig = go.Figure(
        go.Bar(
            x=shown[metric],
            y=[group_name(name) for name in shown["name"]],
            orientation="h",
            marker_color=PALETTES[mode][0],
            hovertemplate=hover + "<extra></extra>",
        )
    )
    fig = layout(fig, x_title=unit, y_title=None, legend=False)
    fig.update_yaxes(automargin=True)
    return fig


def status_classes(codes: pd.DataFrame, mode: str) -> go.Figure:
    """Requests per status code, coloured by class (2xx / 4xx / 5xx), on a log axis so a handful of errors
    beside many successes still shows; each bar labelled with its count and share."""
    palette = STATUS_CLASS_COLOURS[mode]
    fig = go.Figure(
        [
            go.Bar(
                x=[group_name(label) for label in part["status_label"]],
                y=part["requests"],
                name=group_name(status_class),
                marker_color=palette.get(status_class, palette["unknown"]),
                text=[
                    f"{i18n.number(int(n))} ({i18n.percent(s, digits=1)})"
                    for n, s in zip(part["requests"], part["share"], strict=True)
                ],
                textposition="outside",
                cliponaxis=False,
                hovertemplate=_("{code}: {value} requests", code="%{x}", value="%{y:,}") + "<extra></extra>",
            )
            for status_class, part in codes.groupby("status_class", sort=True)
        ]
    )
    layout(fig, x_title=_("status code"), y_title=_("requests (log scale)"))
    top = float(np.log10(max(int(codes["requests"].max()), 1))) + 0.6  # room for the labels above the bars
    labels = [group_name(label) for label in codes["status_label"]]
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=labels)
    fig.update_yaxes(type="log", range=[-0.1, top], rangemode=None)
    return fig


def daily_requests(frame: pd.DataFrame, mode: str) -> go.Figure:
    """Requests per day, the failed ones stacked on top in the error colour; tokens in the hover."""
    days = [dates.format_skeleton("MMMEd", d, locale=i18n.current()) for d in pd.to_datetime(frame["start"])]
    errors = frame["errors"].to_numpy()
    fig = go.Figure(
        [
            go.Bar(
                x=days,
                y=frame["requests"].to_numpy() - errors,
                name=_("succeeded"),
                marker_color=PALETTES[mode][0],
                customdata=frame["tokens"].to_numpy(),
                hovertemplate=_("{value} succeeded, {tokens} tokens", value="%{y:,}", tokens="%{customdata:,}")
                + "<extra></extra>",
            ),
            go.Bar(
                x=days,
                y=errors,
                name=_("failed"),
                marker_color=ERROR[mode],
                hovertemplate=_("{value} failed", value="%{y:,}") + "<extra></extra>",
            ),
        ]
    )
    fig.update_layout(barmode="stack")
    fig = layout(fig, x_title=None, y_title=_("requests"))
    fig.update_layout(height=260)
    fig.update_xaxes(type="category")
    return fig
