"""What a page shows a reader, for the Korean-pages test: every text of every element (titles, Markdown,
captions, messages, widget labels, help, options, placeholders, tab and expander labels, metric labels,
table headers, chart titles and axis titles), and the English words left in it once names and data are
taken out."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from zoneinfo import available_timezones

from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

# Names of products, protocols and units that stay as they are in Korean text.
ALLOWED = {
    "mindroute", "openai", "anthropic", "google", "gemini", "ollama", "vllm", "lm", "studio", "openrouter",
    "claude", "gpt", "api", "apis", "csv", "url", "urls", "json", "id", "ids", "http", "https", "sse", "rpm",
    "tpm", "usd", "utc", "sdk", "sso", "oidc", "oauth", "p50", "p90", "p95", "p99", "ms", "curl", "python",
    "node", "javascript", "js", "bearer", "markdown", "postgresql", "sqlite", "redis", "iana", "base", "v1",
    "us", "kb", "mb", "gb", "ok", "ip", "tls", "uuid", "iso", "md", "txt", "pdf", "png", "www", "com", "io",
    "dev", "ai", "llm", "openai-compatible", "compatible", "chat", "completions", "embeddings", "models",
    "max_tokens", "temperature", "top_p", "stream", "system", "user", "assistant", "tool", "tools", "admin",
    "light", "dark", "english", "gmt", "kst", "am", "pm", "xx", "2xx", "3xx", "4xx", "5xx", "sk", "mr",
    "webhook", "prometheus", "k", "m", "x", "ascii", "utf", "bcrypt", "jpeg", "jpg", "gif", "webp", "heic",
    "heif", "fe", "input", "output", "messages",
}  # fmt: skip
# Streamlit's colour and badge directives (":orange-badge[…]", ":red[…]"): markup, not words.
DIRECTIVE = re.compile(r":(?:red|orange|yellow|green|blue|violet|gray|grey|rainbow|primary)(?:-badge|-background)?\[")
# IANA zone names ("Asia/Seoul", "America/Argentina/Buenos_Aires") are data.
ZONE = re.compile(r"\b(?:Africa|America|Antarctica|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc)/[A-Za-z_/+-]+")
ZONE_NAMES = frozenset(available_timezones()) | {"UTC"}
WORD = re.compile(r"[A-Za-z][A-Za-z'’]*[A-Za-z]")
URLISH = re.compile(
    r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|https?://\S+|\S+@\S+|`[^`]*`|:material/[a-z_]+:|\b[\w.-]+\.(py|toml|md|json|csv)\b|\{[^}]*\})"
)
TEXT_TYPES = {
    "markdown", "caption", "title", "header", "subheader", "text", "error", "warning", "info", "success",
    "toast", "alert", "latex", "exception",
}  # fmt: skip
SKIP_TYPES = {"code", "json"}  # code blocks and JSON are data


def _nodes(node: object) -> Iterator[object]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _nodes(child)


def _chart_texts(spec: str) -> Iterator[str]:
    try:
        figure = json.loads(spec)
    except ValueError:
        return
    layout = figure.get("layout", {})
    for key, value in layout.items():
        if isinstance(value, dict) and (key == "title" or key.startswith(("xaxis", "yaxis", "legend"))):
            title = value.get("title", value) if key != "title" else value
            if isinstance(title, dict) and isinstance(title.get("text"), str):
                yield title["text"]
            elif isinstance(title, str):
                yield title
    for annotation in layout.get("annotations", []) or []:
        if isinstance(annotation, dict) and isinstance(annotation.get("text"), str):
            yield annotation["text"]


def readable_texts(at: AppTest) -> list[tuple[str, str]]:
    """(element type, text) of everything a reader sees on the page, sidebar included."""
    found: list[tuple[str, str]] = []
    for node in _nodes(at._tree):
        kind = getattr(node, "type", type(node).__name__)
        if kind in SKIP_TYPES:
            continue
        if kind in TEXT_TYPES:
            value = getattr(node, "value", None)
            if isinstance(value, str):
                found.append((kind, value))
        for attribute in ("label", "help", "placeholder"):
            value = getattr(node, attribute, None)
            if isinstance(value, str) and value:
                found.append((f"{kind}.{attribute}", value))
        options = getattr(node, "options", None)
        if isinstance(options, list | tuple):
            found += [(f"{kind}.option", str(o)) for o in options]
        proto = getattr(node, "proto", None)
        if kind == "plotly_chart" and proto is not None:
            found += [("chart", t) for t in _chart_texts(proto.spec)]
        if kind in ("arrow_data_frame", "dataframe", "table"):
            value = getattr(node, "value", None)
            columns = getattr(value, "columns", None)
            if columns is not None:
                found += [("table.header", str(c)) for c in columns]
        if kind == "metric" and proto is not None:
            found.append(("metric.label", proto.label))
    return found


def data_terms(engine: Engine) -> set[str]:
    """Every name and value of the database a page may show as data (names, emails, models, subjects)."""
    queries = [
        "SELECT name FROM users",
        "SELECT email FROM users",
        "SELECT name FROM providers",
        "SELECT modelid FROM logs",
        "SELECT name FROM apikeys",
        "SELECT subject FROM tickets",
    ]
    terms: set[str] = set()
    with engine.connect() as connection:
        # The models and priced models of every provider's settings, and the keys' public prefixes.
        for (settings,) in connection.execute(text("SELECT settings FROM providers")):
            value = json.loads(settings) if isinstance(settings, str) else (settings or {})
            terms |= {str(m) for m in value.get("models", []) or []}
            terms |= {str(m) for m in (value.get("prices", {}) or {})}
            if value.get("default_model"):
                terms.add(str(value["default_model"]))
        try:
            terms |= {str(v) for (v,) in connection.execute(text("SELECT prefix FROM apikeys")) if v}
        except Exception:  # noqa: BLE001 - an older schema without prefixes
            connection.rollback()
        for query in queries:
            try:
                terms |= {str(v) for (v,) in connection.execute(text(query)) if v}
            except Exception:  # noqa: BLE001 - a table the page's data does not use
                connection.rollback()
    return terms


def english_leftovers(
    texts: Iterable[tuple[str, str]], data: Iterable[str] = (), allowed: Iterable[str] = ()
) -> list[str]:
    """The texts that still hold English words once data, URLs, code and allowed names are taken out."""
    ok = ALLOWED | {a.lower() for a in allowed}
    terms = sorted({d for d in data if d}, key=len, reverse=True)
    leftovers = []
    for kind, value in texts:
        reading = re.sub(r"\\(.)", r"\1", value)
        if reading.strip() in ZONE_NAMES:  # a time zone offered by its name ("Japan", "EST5EDT")
            continue
        for term in terms:
            reading = reading.replace(term, " ")
        reading = URLISH.sub(" ", ZONE.sub(" ", DIRECTIVE.sub(" ", reading)))
        words = [w for w in WORD.findall(reading) if w.lower() not in ok]
        if words:
            leftovers.append(f"{kind}: {value!r} (English: {' '.join(words[:6])})")
    return leftovers
