"""Provider keys kept out of everything that leaves the process: answers, streams, Logs rows and errors.

Two kinds of redaction meet here, both writing the same marker, `[redacted]`:

- `redact_secrets`: key-SHAPED text (sk-..., AIza..., bearer tokens, masked echoes) and pieces of the
  called provider's key, for error messages (chat calls and model lists alike) and the prompts stored
  in Logs.
- `KeySet`: the EXACT values of the stored provider keys, wherever they appear: answer text (whole
  and streamed, API and playground), Logs rows (requestBody, responseBody, errorMessage) and errors.
  A stream is redacted by a `StreamRedactor`, which holds back only the tail of the text that could
  still become a key once the next piece arrives, so a key split across chunks never gets out and an
  ordinary answer is not delayed. A key cut off at the very end of a text (an answer that stopped
  mid-key) is redacted too once TRUNCATED_KEY_MIN_CHARS of it showed.

Which keys: the called provider's own key is always known on the route. Every other stored key comes
from a process-wide snapshot (`stored_keys()`), one per database, re-read when a fingerprint of the
providers table (row count, latest updatedAt) changes or after STORED_KEYS_MAX_AGE_S: checked by every
routing of a call (the playground's every call, the API's on a route not remembered) and by every Logs
write (each batch of the API's log writer). Values shorter than MIN_SECRET_CHARS ("ollama", "EMPTY":
what keyless local servers are given) are not secrets and are not searched for in answers.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import logging
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

__all__ = [
    "KEY_FRAGMENT_CHARS",
    "MIN_SECRET_CHARS",
    "REDACTED",
    "KeySet",
    "StreamRedactor",
    "answer_keys",
    "redact_record",
    "redact_secrets",
    "refresh_stored_keys",
    "stored_keys",
]

log = logging.getLogger("mindroute.redaction")

REDACTED = "[redacted]"
# Shapes of secrets that may show up in a provider's message even when they are not our key: an
# OpenAI 401 echoes the key it got ("sk-abc1***wxyz"), a proxy may echo a header or a URL.
_SECRET_RE = re.compile(
    r"(?<![\w-])sk-ant-[\w\-*.]{6,}"  # Anthropic
    r"|(?<![\w-])sk-[\w\-*.…]{6,}"  # OpenAI, project keys, masked echoes
    r"|(?<![\w-])AIza[\w\-]{10,}"  # Google API keys
    r"|(?<![\w-])mr-[\w\-]{10,}"  # MindRoute's own API keys
    r"|(?i:bearer)\s+[\w.~+/=\-]{8,}"  # a bearer token, whoever's it is
    r"|(?<=[?&]key=)[^&\s\"'<>]+"  # Gemini's ?key= in a quoted URL
    # Any masked secret, from the start of its word only: tried at every character of a long word,
    # this alternative took seconds for 16,000 characters with no space (quadratic).
    r"|(?<![^\s\"'`,;()<>\[\]{}])[^\s\"'`,;()<>\[\]{}]*[*•]{3,}[^\s\"'`,;()<>\[\]{}]*"
)
_TOKEN_RE = re.compile(r"[^\s\"'`,;()<>\[\]{}]+")
# A word sharing this many characters with the configured key counts as the key showing through.
KEY_FRAGMENT_CHARS = 8


def redact_secrets(text: str, api_key: str | None = None) -> str:
    """`text` with the configured key, pieces of it, and anything shaped like a key replaced by [redacted]."""
    if api_key:
        text = text.replace(api_key, REDACTED)
    text = _SECRET_RE.sub(REDACTED, text)
    if api_key and len(api_key) >= KEY_FRAGMENT_CHARS + 4:
        windows = {api_key[i : i + KEY_FRAGMENT_CHARS] for i in range(len(api_key) - KEY_FRAGMENT_CHARS + 1)}

        def scrub(match: re.Match[str]) -> str:
            token = match.group(0)
            if len(token) >= KEY_FRAGMENT_CHARS and any(window in token for window in windows):
                return REDACTED
            return token

        text = _TOKEN_RE.sub(scrub, text)
    return text


MIN_SECRET_CHARS = 12
# A text that ends with this much of a key's beginning (and no more of it) ends with a truncated key.
TRUNCATED_KEY_MIN_CHARS = 16
STORED_KEYS_MAX_AGE_S = 60.0


class KeySet:
    """Exact secret values to redact from text. Immutable; building one sorts and indexes the keys."""

    __slots__ = ("_shortest", "_sorted", "_starts", "_window", "keys")

    def __init__(self, keys: Iterable[str | None] = ()) -> None:
        unique = {k for k in keys if k and len(k) >= MIN_SECRET_CHARS}
        self.keys: tuple[str, ...] = tuple(sorted(unique, key=lambda k: (-len(k), k)))  # longest first
        self._sorted = tuple(sorted(unique))  # for finding the keys a text begins, by bisection
        firsts = sorted({k[0] for k in unique})
        # Where a held-back tail may start: a character some key starts with.
        self._starts = re.compile("[" + "".join(re.escape(c) for c in firsts) + "]") if firsts else None
        self._window = max((len(k) for k in unique), default=1) - 1  # the longest proper beginning
        self._shortest = min((len(k) for k in unique), default=0)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:  # never the keys themselves
        return f"KeySet({len(self.keys)} keys)"

    def with_key(self, key: str | None) -> KeySet:
        """This set and `key`."""
        if not key or len(key) < MIN_SECRET_CHARS or key in self.keys:
            return self
        return KeySet((*self.keys, key))

    def _replace_whole(self, text: str) -> str:
        if len(text) < self._shortest:  # most streamed pieces: too short to hold a key
            return text
        for key in self.keys:
            if key in text:
                text = text.replace(key, REDACTED)
        return text

    def _begins_a_key(self, tail: str) -> bool:
        """Whether some key is longer than `tail` and starts with it."""
        keys = self._sorted
        j = bisect.bisect_left(keys, tail)  # every key starting with tail sorts from here on
        while j < len(keys) and keys[j].startswith(tail):
            if len(keys[j]) > len(tail):
                return True
            j += 1
        return False

    def _held_from(self, text: str) -> int:
        """Where the longest tail of `text` that is a proper beginning of a key starts (len(text): none)."""
        if self._starts is None:
            return len(text)
        start = max(0, len(text) - self._window)
        marker = text.rfind(REDACTED, start)
        if marker >= 0:  # never hold back part of a marker
            start = marker + len(REDACTED)
        for match in self._starts.finditer(text, start):
            if self._begins_a_key(text[match.start() :]):
                return match.start()
        return len(text)

    def redact(self, text: str) -> str:
        """`text` with every key in it, and a key cut off at its end, replaced by [redacted]."""
        if not self.keys or not text:
            return text
        # StreamRedactor(self).feed(text) + .flush(), without building one: it runs on every answer
        text = self._replace_whole(text)
        cut = self._held_from(text)
        if cut == len(text):
            return text
        held = text[cut:]
        return text[:cut] + (REDACTED if len(held) >= TRUNCATED_KEY_MIN_CHARS else held)

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)


class StreamRedactor:
    """Redacts a text that arrives in pieces: `feed` each piece and send what it returns, then send
    `flush()` when the text ends. The concatenation of what it returns is `KeySet.redact` of the
    whole text, and no key ever leaves whole or in part, however the pieces split it: the tail that
    is a beginning of some key is held back until the next piece says whether it is one."""

    __slots__ = ("_held", "_keys")

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys
        self._held = ""

    def feed(self, piece: str) -> str:
        keys = self._keys
        if not keys.keys:
            return piece
        text = self._held + piece if self._held else piece
        if not text:
            return ""
        text = keys._replace_whole(text)
        cut = keys._held_from(text)
        self._held = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        """What is still held back: a beginning of a key, redacted if long enough to be a cut-off key."""
        held, self._held = self._held, ""
        return REDACTED if len(held) >= TRUNCATED_KEY_MIN_CHARS else held


# --- the stored keys ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    fingerprint: tuple[Any, ...]
    keys: tuple[str, ...]
    read_at: float


class _StoredKeys:
    """Per database (by URL), the decrypted keys of every provider, and their union across databases."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[URL, _Snapshot] = {}
        self._warned: dict[URL, float] = {}
        self.all = KeySet()

    def refresh(self, bind: Engine | Session) -> KeySet:
        from mindroute.models import Provider  # here: models imports nothing of ours, but keep start-up lean

        target = bind.get_bind() if isinstance(bind, Session) else bind
        url = target.engine.url
        try:
            if isinstance(bind, Session):
                self._refresh(url, bind.execute, Provider)
            else:
                with bind.connect() as connection:
                    self._refresh(url, connection.execute, Provider)
        except Exception as error:  # noqa: BLE001 - a failed refresh keeps the last snapshot; the work goes on
            now = time.monotonic()
            if now - self._warned.get(url, -STORED_KEYS_MAX_AGE_S) >= STORED_KEYS_MAX_AGE_S:  # once a minute
                self._warned[url] = now
                log.warning(
                    "could not re-read the stored provider keys for redaction (%s); using the last ones",
                    error.__class__.__name__,
                )
        return self.all

    def _refresh(self, url: URL, execute: Any, provider: Any) -> None:
        fingerprint = tuple(execute(select(func.count(), func.max(provider.updated_at))).one())
        known = self._snapshots.get(url)
        now = time.monotonic()
        if known is not None and known.fingerprint == fingerprint and now - known.read_at < STORED_KEYS_MAX_AGE_S:
            return
        ciphertexts = [c for (c,) in execute(select(provider.api_key).where(provider.api_key.is_not(None)))]
        keys = tuple(_decrypt_all(ciphertexts))
        with self._lock:
            self._snapshots[url] = _Snapshot(fingerprint, keys, now)
            if known is None or known.keys != keys:
                self.all = KeySet(k for snapshot in self._snapshots.values() for k in snapshot.keys)

    def clear(self) -> None:
        with self._lock:
            self._snapshots.clear()
            self.all = KeySet()


def _decrypt_all(ciphertexts: list[str]) -> Iterable[str]:
    from mindroute.config import get_settings
    from mindroute.security import DecryptionError, SecretBox

    if not ciphertexts:
        return
    box = SecretBox(get_settings().secret_keys)
    for ciphertext in ciphertexts:
        try:
            yield box.decrypt(ciphertext)
        except DecryptionError:  # a key nobody can read cannot be sent anywhere either
            continue


_stored = _StoredKeys()


def refresh_stored_keys(bind: Engine | Session) -> KeySet:
    """Re-read the stored provider keys of `bind`'s database if the providers changed; the keys of every
    database this process has seen. Never raises: on a database error the last snapshot stays."""
    return _stored.refresh(bind)


def stored_keys() -> KeySet:
    """The stored provider keys as last read (no database work)."""
    return _stored.all


def forget_stored_keys() -> None:
    """Drop every snapshot (tests)."""
    _stored.clear()
    _with_key.cache_clear()


@functools.lru_cache(maxsize=256)
def _with_key(keys: KeySet, key: str) -> KeySet:
    return keys.with_key(key)


def answer_keys(api_key: str | None) -> KeySet:
    """What to redact from the answer of a call made with `api_key`: that key and every stored one."""
    keys = _stored.all
    if not api_key or api_key in keys or len(api_key) < MIN_SECRET_CHARS:
        return keys
    return _with_key(keys, api_key)


# --- Logs rows ---------------------------------------------------------------------------------


def _redact_value(keys: KeySet, value: Any) -> Any:
    if isinstance(value, str):
        return keys.redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(keys, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(keys, v) for v in value)
    return value


def redact_record(record: Any, keys: KeySet | None = None, *, messages: bool = True) -> Any:
    """A call_log.CallRecord with every stored key taken out of what its Logs row stores: the prompt's
    messages, the answer, the error, the model asked for, the extra request fields and the user agent.
    The same record when there is nothing to take out. With messages=False the prompt's messages are
    left as they are: call_log redacts only the ones the row keeps (a capped requestBody keeps the
    newest), so that the cost is bounded by what is stored, not by what the caller sent."""
    keys = stored_keys() if keys is None else keys
    if not keys:
        return record
    changes: dict[str, Any] = {}
    for name in ("text", "error_message", "user_agent", "model"):
        value = getattr(record, name)
        if value:
            redacted = keys.redact(value)
            if redacted != value:
                changes[name] = redacted
    if record.extra:
        extra = _redact_value(keys, record.extra)
        if extra != record.extra:
            changes["extra"] = extra
    request = record.request
    if request is not None:
        kept, changed = request.messages, False
        if messages:
            kept = []
            for message in request.messages:
                text = keys.redact(message.text) if message.text else message.text
                if text != message.text:
                    message, changed = dataclasses.replace(message, text=text), True
                kept.append(message)
        model = keys.redact(request.model) if request.model else request.model
        if changed or model != request.model:
            changes["request"] = dataclasses.replace(request, messages=kept, model=model)
    return dataclasses.replace(record, **changes) if changes else record
