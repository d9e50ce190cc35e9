"""The console's languages: every message a person reads comes from a gettext catalog (Babel), and numbers,
times and money are formatted for the reader's language.

- `_("Save")` translates now, into the language of this run (`use`); `_("Signed in as {name}", name=n)`
  fills the template after translating it (the catalog holds the template).
- `_n("{n} call", "{n} calls", n)` picks the plural form for the language (`n` is passed to the template).
- `_l("Choose a role", ...)` is a message for later: a `Message`, a str that reads as its English text (so
  the API's error bodies, the CLI and the logs stay English) and is translated at the page by `text()`.
  Services raise their errors with one (`ValidationError("email", _l("Enter an email address"))`).
- `N_("Overview")` only marks a constant for the catalog; the page translates it with `_(CONSTANT)`.

The English text is the message id. Catalogs live in `mindroute/locale/<lang>/LC_MESSAGES/*.po` (one file
per area; their union is the language's catalog) and are compiled in memory on first use in a process.
"""

from __future__ import annotations

import contextlib
import functools
import gettext
import io
import string
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from babel import Locale, dates, numbers
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LANGUAGES: dict[str, str] = {"en": "English", "ko": "한국어"}  # code -> the language's own name
DEFAULT_LANGUAGE = "en"
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN_GLOB = "*.po"

_current: ContextVar[str | None] = ContextVar("mindroute_language", default=None)
# Where the language comes from when this context set none: the app registers the browser session's
# (a Streamlit fragment's rerun runs in a fresh thread, without the full run's context).
_source: Callable[[], str | None] | None = None


# --- the language of this run ----------------------------------------------------------------------------


def language_of(tag: object) -> str | None:
    """The supported language a locale tag names ("ko-KR", "ko_KR", "en-US" -> "ko", "en"), else None."""
    if not isinstance(tag, str) or not tag.strip():
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LANGUAGES else None


def resolve(choice: str | None, browser: object = None) -> str:
    """The language to show: the user's choice, else the browser's (st.context.locale), else English."""
    return language_of(choice) or language_of(browser) or DEFAULT_LANGUAGE


def use(language: str | None) -> str:
    """Make `language` the one this context (thread) translates into; returns it. The app sets the session's
    language through `set_source` instead; `use` is for scripts, the CLI and tests."""
    lang = language_of(language) or DEFAULT_LANGUAGE
    _current.set(lang)
    return lang


@contextlib.contextmanager
def using(language: str | None) -> Iterator[str]:
    """`use(language)` for a block, then back to what was there (tests, one CLI command)."""
    token = _current.set(language_of(language) or DEFAULT_LANGUAGE)
    try:
        yield _current.get() or DEFAULT_LANGUAGE
    finally:
        _current.reset(token)


def set_source(source: Callable[[], str | None] | None) -> None:
    """Register where the language is read when no `use` was made in this context (the app's session)."""
    global _source
    _source = source


def current() -> str:
    lang = _current.get()
    if lang is None and _source is not None:
        lang = language_of(_source())
    return lang or DEFAULT_LANGUAGE


# --- catalogs ----------------------------------------------------------------------------------------------


def catalog_files(language: str) -> list[Path]:
    return sorted((LOCALE_DIR / language / "LC_MESSAGES").glob(DOMAIN_GLOB))


def read_catalog(language: str) -> Catalog:
    """The union of the language's .po files (a message id in two files is a defect the tests report)."""
    merged = Catalog(locale=language, domain="mindroute")
    for path in catalog_files(language):
        with path.open("rb") as handle:
            part = read_po(handle, locale=language)
        for message in part:
            if message.id and message.id not in merged:
                merged[message.id] = message
    return merged


@functools.cache
def _translations(language: str) -> gettext.NullTranslations:
    if language == DEFAULT_LANGUAGE or language not in LANGUAGES:
        return gettext.NullTranslations()
    buffer = io.BytesIO()
    write_mo(buffer, read_catalog(language))  # fuzzy and empty entries are left out: they read as English
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


class _Formatter(string.Formatter):
    """Fills a template: a nested Message is translated, a bare int gets the language's digit grouping."""

    def __init__(self, language: str) -> None:
        self.language = language

    def format_field(self, value: Any, format_spec: str) -> Any:
        if isinstance(value, Message):
            value = value.translated(self.language)
        elif isinstance(value, int) and not isinstance(value, bool) and not format_spec:
            return numbers.format_decimal(value, locale=self.language)
        return super().format_field(value, format_spec)


def _fill(template: str, params: Mapping[str, Any], language: str) -> str:
    return _Formatter(language).vformat(template, (), params) if params else template


def _(msgid: str, /, **params: Any) -> str:
    """`msgid` in the language of this run, its `{placeholders}` filled from `params`."""
    language = current()
    return _fill(_translations(language).gettext(msgid), params, language)


def _n(singular: str, plural: str, n: int, /, **params: Any) -> str:
    """The plural form for `n` in the language of this run; `{n}` is filled with `n` unless given."""
    language = current()
    return _fill(_translations(language).ngettext(singular, plural, n), {"n": n, **params}, language)


def N_(msgid: str, /) -> str:  # noqa: N802 - gettext's name for "mark only"
    """Mark `msgid` for the catalog without translating it (a constant translated later with `_`)."""
    return msgid


class Message(str):
    """A message translated where it is shown: reads as its English text; `text()` gives the reader's."""

    msgid: str
    plural: str | None
    count: int | None
    params: dict[str, Any]

    def __new__(cls, msgid: str, /, plural: str | None = None, count: int | None = None, **params: Any) -> Message:
        values = {"n": count, **params} if plural is not None else params
        english = plural if plural is not None and count != 1 else msgid
        self = super().__new__(cls, _fill(english, values, DEFAULT_LANGUAGE))
        self.msgid, self.plural, self.count, self.params = msgid, plural, count, values
        return self

    def translated(self, language: str | None = None) -> str:
        lang = language or current()
        table = _translations(lang)
        if self.plural is not None:
            template = table.ngettext(self.msgid, self.plural, self.count or 0)
        else:
            template = table.gettext(self.msgid)
        return _fill(template, self.params, lang)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.msgid, self.plural, self.count, self.params))


def _rebuild(msgid: str, plural: str | None, count: int | None, params: dict[str, Any]) -> Message:
    params = {k: v for k, v in params.items() if not (plural is not None and k == "n")}
    return Message(msgid, plural, count, **params)


def _l(msgid: str, /, **params: Any) -> Message:
    """A message for later (a service's error): English as a str, translated at the page by `text()`."""
    return Message(msgid, **params)


def _ln(singular: str, plural: str, n: int, /, **params: Any) -> Message:
    """A plural message for later."""
    return Message(singular, plural, n, **params)


def text(value: object) -> str:
    """What a person reads: a Message (or an exception carrying one) in the run's language; other text as it
    is (names and data are never looked up in the catalog)."""
    if isinstance(value, Message):
        return value.translated()
    if isinstance(value, BaseException):
        message = getattr(value, "message", None)
        if isinstance(message, Message):
            return message.translated()
        first = value.args[0] if len(value.args) == 1 else None
        if isinstance(first, Message):
            return first.translated()
    return str(value)


def choice(words: Mapping[Any, Any], code: Any, language: str | None = None) -> str:
    """An option code's words (a Message, or plain text) in `language` (default: this run's); the code itself
    when `words` has none."""
    word = words.get(code, code)
    return word.translated(language) if isinstance(word, Message) else str(word)


def labeller(words: Mapping[Any, Any]) -> Callable[[Any], str]:
    """A widget's format_func for option codes: their words in this run's language. The language is taken
    now, since Streamlit may call the function outside the run (AppTest does, to match a value)."""
    return functools.partial(_choose, words, language=current())


def _choose(words: Mapping[Any, Any], code: Any, *, language: str) -> str:
    return choice(words, code, language)


# --- numbers, money, times -------------------------------------------------------------------------------


def locale() -> Locale:
    return Locale.parse(current())


def number(value: int | float | Decimal, *, digits: int | None = None) -> str:
    """1234567 -> "1,234,567"; `digits` fixes the decimals (1234.5, digits=1 -> "1,234.5")."""
    if digits is None:
        return numbers.format_decimal(value, locale=current())
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return numbers.format_decimal(value, format=pattern, locale=current(), decimal_quantization=True)


def compact(value: int | float, *, digits: int = 1) -> str:
    """A large count short: 1234567 -> "1.2M" (en), "123.5만" (ko); below 10,000 written out in full."""
    if abs(value) < 10_000:
        return number(value)
    return numbers.format_compact_decimal(value, locale=current(), fraction_digits=digits)


def percent(value: float, *, digits: int = 0) -> str:
    """0.253 -> "25%" ("25.3%" with digits=1)."""
    pattern = "#,##0" + ("." + "0" * digits if digits else "") + "%"
    return numbers.format_percent(value, format=pattern, locale=current())


def money(value: float | Decimal, currency: str = "USD", *, digits: int = 2) -> str:
    """An amount in `currency` for the language ("$1,234.50", "US$1,234.50"); `digits` up to 8 keeps tiny
    amounts readable ($0.0000080)."""
    pattern = "¤#,##0." + "0" * 2 + "#" * max(0, digits - 2)
    return numbers.format_currency(value, currency, format=pattern, locale=current(), currency_digits=False)


def moment(value: datetime, *, seconds: bool = False) -> str:
    """An aware datetime as the language writes it: "2026. 12. 2. 오후 3:04", "Dec 2, 2026, 3:04 PM"."""
    lang = current()
    day = dates.format_date(value, "medium", locale=lang)
    clock = dates.format_time(value, "medium" if seconds else "short", tzinfo=value.tzinfo, locale=lang)
    # CLDR puts a narrow no-break space before AM/PM: a plain one reads the same and can be searched for.
    return dates.get_datetime_format("medium", locale=lang).format(clock, day).replace("\u202f", " ")


def day(value: date) -> str:
    """A date as the language writes it: "2026. 12. 2.", "Dec 2, 2026"."""
    return dates.format_date(value, "medium", locale=current())


def relative(value: datetime, now: datetime | None = None) -> str:
    """How long ago (or ahead) `value` is: "3분 전", "in 2 hours". Naive values are UTC."""
    moment_ = value if value.tzinfo else value.replace(tzinfo=UTC)
    base = now or datetime.now(UTC)
    base = base if base.tzinfo else base.replace(tzinfo=UTC)
    return dates.format_timedelta(moment_ - base, add_direction=True, threshold=1, locale=current())


def duration(value: timedelta) -> str:
    """A span without direction: "3 minutes", "3분"."""
    return dates.format_timedelta(value, threshold=1, locale=current())
