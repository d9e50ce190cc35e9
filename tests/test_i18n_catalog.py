"""The message catalogs against the code (issue 19): every message the code uses has a Korean translation,
every catalog entry is used, placeholders agree, and the gettext layer translates, pluralises and formats."""

from __future__ import annotations

import pickle
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mindroute import i18n
from mindroute.errors import NotFound
from mindroute.validation import ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import messages


def test_every_message_in_the_code_has_a_korean_translation() -> None:
    lacking = messages.missing("ko")
    listed = [f"{where[0]}: {key!r}" for key, where in sorted(lacking.items(), key=lambda kv: kv[1][0])]
    assert listed == [], f"{len(listed)} untranslated; run: python scripts/messages.py"


def test_every_catalog_entry_is_used() -> None:
    assert messages.unused("ko") == []


def test_no_message_is_in_two_catalog_files() -> None:
    assert messages.duplicated("ko") == []


def test_translations_keep_their_placeholders() -> None:
    assert messages.placeholder_mismatches("ko") == []


def test_every_message_is_a_literal_the_extractor_can_read() -> None:
    assert [p for f in messages.source_files() for p in messages.non_literal_calls(f)] == []


def test_the_code_uses_many_messages() -> None:
    """A guard on the extractor itself: were the keywords lost, every check above would pass on nothing."""
    assert len(messages.used_messages()) > 300


def test_translate_now_later_and_in_plural() -> None:
    with i18n.using("ko"):
        assert i18n._("never") == "없음"
        assert i18n._("Times are in {zone}.", zone="Asia/Seoul") == "시간은 Asia/Seoul 기준입니다."
        assert i18n._("A message with no entry") == "A message with no entry"  # English is the fallback
    later = i18n._l("Times are in {zone}.", zone="UTC")
    assert later == "Times are in UTC." and isinstance(later, str)  # the API and the CLI read English
    with i18n.using("ko"):
        assert i18n.text(later) == "시간은 UTC 기준입니다."
        assert i18n.text(ValidationError("zone", later)) == "시간은 UTC 기준입니다."
        assert i18n.text(NotFound(later)) == "시간은 UTC 기준입니다."
        assert i18n.text("a user's name") == "a user's name"  # plain text is never looked up
    assert pickle.loads(pickle.dumps(later)).translated("ko") == "시간은 UTC 기준입니다."
    assert i18n._n("{n} call", "{n} calls", 1) == "1 call"
    assert i18n._n("{n} call", "{n} calls", 12345) == "12,345 calls"
    assert str(i18n._ln("{n} call", "{n} calls", 2)) == "2 calls"


def test_language_resolution() -> None:
    assert i18n.resolve("ko", "en-US") == "ko"
    assert i18n.resolve(None, "ko-KR") == "ko"
    assert i18n.resolve(None, "ko_KR") == "ko"
    assert i18n.resolve(None, "fr-FR") == "en"
    assert i18n.resolve("xx", None) == "en"
    with i18n.using("ko"):
        assert i18n.current() == "ko"
    assert i18n.current() == "en"


@pytest.mark.parametrize(
    ("language", "number", "money", "moment", "ago"),
    [
        ("en", "1,234,567", "$1,234.50", "Dec 2, 2026, 3:04 PM", "3 minutes ago"),
        ("ko", "1,234,567", "US$1,234.50", "2026. 12. 2. 오후 3:04", "3분 전"),
    ],
)
def test_formats_for_the_language(language: str, number: str, money: str, moment: str, ago: str) -> None:
    with i18n.using(language):
        assert i18n.number(1234567) == number
        assert i18n.money(1234.5) == money
        assert i18n.moment(datetime(2026, 12, 2, 15, 4, tzinfo=UTC)) == moment
        assert i18n.relative(datetime.now(UTC) - timedelta(minutes=3, seconds=1)) == ago
        assert i18n.money(0.000008, digits=8).endswith("0.000008")


def test_a_labeller_keeps_the_language_it_was_made_in() -> None:
    """A widget's format_func may be called outside the run (AppTest does): it answers in the run's language."""
    words = {"day": i18n._l("never"), "raw": "as it is"}
    with i18n.using("ko"):
        label = i18n.labeller(words)
    assert label("day") == "없음" and label("raw") == "as it is" and label("other") == "other"
