"""Admission of an API call: the presented key, its owner, and the route to the model asked for.

One database round trip per call. Every call re-reads, in one query, the key row, its owner, and a
fingerprint of everything routing depends on (the owner's role and updatedAt, the providers' count
and latest updatedAt, the owner's grants' count and latest updatedAt). So a revoked or expired key
or a deactivated owner is refused at once, by every app process. The routing itself (the model id
resolved to a provider, the access policy, the provider's decrypted key: several queries and a
decryption) is remembered per (key, model id) in this process while the fingerprint stays the
same, and for at most `MINDROUTE_API_ROUTE_CACHE_S` seconds (default 60; 0 turns the memory off)
as a bound against clocks that disagree between processes. An admin's change to a provider or a
grant changes the fingerprint, so the next call routes afresh.

The budgets and rate limits a call meets (limit_rules.rules_for_call: its owner's or the default
rule, its key's, its provider's) are found with the route and remembered with it; the fingerprint
holds the `limits` table's count and latest updatedAt, so an admin's change to any rule re-routes
at the next call in every process. Counting against them is services/limits.py's, after admission.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import anyio
import anyio.to_thread
from sqlalchemy import URL, Engine, bindparam, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mindroute.config import get_settings
from mindroute.db import make_engine, transaction
from mindroute.models import ApiKey, Limit, Provider, User, UserProvider, utcnow
from mindroute.observability import metrics
from mindroute.services import api_keys
from mindroute.services.db_threads import in_db_thread
from mindroute.services.limit_counters import Gate
from mindroute.services.limit_rules import LimitRule, rules_for_call
from mindroute.services.model_ids import resolve_model_id
from mindroute.services.pg_async import aclose_pg_pools, pg_pool
from mindroute.services.routing import ChatRefused, Route, route_call

log = logging.getLogger("mindroute.admission")

ROUTE_CACHE_ENV = "MINDROUTE_API_ROUTE_CACHE_S"
ROUTE_CACHE_MAX_ENTRIES = 10_000
READ_POOL_SIZE = 8  # the API's database threads (db_threads.DB_THREADS)
TOUCH_THREADS = 2  # lastUsedAt writes at once: a locked database never ties up the threads routing needs


def route_cache_seconds() -> float:
    return get_settings().api_route_cache_s


@dataclass(frozen=True)
class RouteRefusal:
    """The model id cannot be used by this key's owner: the status to answer and what to log."""

    status: int
    message: str
    provider_id: uuid.UUID | None
    # The bare model the provider answers to, when the id named one (a policy refusal): the Logs row's
    # model, as for the calls that are answered, so that one model is not listed under two names.
    model: str | None = None


@dataclass(frozen=True)
class Admitted:
    key_id: uuid.UUID
    user_id: uuid.UUID
    route: Route | RouteRefusal
    rules: tuple[LimitRule, ...] = ()  # the limits a routed call meets (none for a refusal)


def logged_model(route: Route | RouteRefusal, model_id: str | None) -> tuple[uuid.UUID | None, str | None]:
    """(provider id, model) for a refused call's Logs row: the provider and the bare model the provider
    answers to, as an answered call's row has them, when the route knows them; else the id as sent."""
    if isinstance(route, Route):
        return route.provider_id, route.model
    return route.provider_id, route.model or model_id


@dataclass(frozen=True)
class _Routed:
    """What the route cache keeps per (key, model id): the route or its refusal, and the rules it meets."""

    route: Route | RouteRefusal
    rules: tuple[LimitRule, ...]


@dataclass(frozen=True)
class KeyRefused:
    refusal: api_keys.KeyRefusal
    key_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None


def _fingerprint_query() -> Any:
    return (
        select(
            ApiKey.id.label("id"),
            ApiKey.key.label("key"),
            ApiKey.revoked_at.label("revoked_at"),
            ApiKey.expires_at.label("expires_at"),
            ApiKey.last_used_at.label("last_used_at"),
            User.id.label("user_id"),
            User.is_active.label("is_active"),
            User.role.label("role"),
            User.updated_at.label("updated_at"),
            # Labelled as KeyRow's fields: the row also comes back by name, as JSON (key_gate).
            select(func.count()).select_from(Provider).scalar_subquery().label("providers"),
            select(func.max(Provider.updated_at)).scalar_subquery().label("providers_changed"),
            select(func.count()).where(UserProvider.user_id == User.id).scalar_subquery().label("grants"),
            select(func.max(UserProvider.updated_at))
            .where(UserProvider.user_id == User.id)
            .scalar_subquery()
            .label("grants_changed"),
            select(func.count()).select_from(Limit).scalar_subquery().label("limits"),
            select(func.max(Limit.updated_at)).scalar_subquery().label("limits_changed"),
        )
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.key == bindparam("digest"))
    )


_QUERY = _fingerprint_query()


class _RouteCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[tuple[Any, ...], float, _Routed]] = {}

    def get(self, digest: str, model_id: str, fingerprint: tuple[Any, ...]) -> _Routed | None:
        entry = self._entries.get((digest, model_id))
        if entry is None or entry[0] != fingerprint or entry[1] < time.monotonic():
            return None
        return entry[2]

    def peek(self, digest: str, model_id: str) -> tuple[tuple[Any, ...], _Routed] | None:
        """The entry in date and the fingerprint it holds, whatever the current fingerprint is."""
        entry = self._entries.get((digest, model_id))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0], entry[2]

    def put(self, digest: str, model_id: str, fingerprint: tuple[Any, ...], value: _Routed) -> None:
        ttl = route_cache_seconds()
        if ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= ROUTE_CACHE_MAX_ENTRIES:
                self._entries.clear()
            self._entries[(digest, model_id)] = (fingerprint, time.monotonic() + ttl, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_routes = _RouteCache()
_touch_lock = threading.Lock()
_touching: set[uuid.UUID] = set()


def clear_route_cache() -> None:
    """Forget every remembered route in this process (tests; after a bulk change by hand)."""
    _routes.clear()


_read_engines: dict[str, Engine] = {}
_read_engines_lock = threading.Lock()


def _read_engine(engine: Engine) -> Engine:
    """A small pool beside `engine`'s for the per-call read: autocommit (no BEGIN and ROLLBACK
    round trips) and no ping on checkout (a connection the server dropped is retried once instead)."""
    url = engine.url.render_as_string(hide_password=False)
    reader = _read_engines.get(url)
    if reader is None:
        with _read_engines_lock:
            reader = _read_engines.get(url)
            if reader is None:
                reader = make_engine(
                    engine.url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, pool_size=READ_POOL_SIZE
                )
                _read_engines[url] = reader
    return reader


def dispose_read_engines() -> None:
    """Close the read pools (shutdown, tests)."""
    with _read_engines_lock:
        for sqlite_reader in _sqlite_readers.values():
            sqlite_reader.close()  # this thread's; other threads' go with their thread
        _sqlite_readers.clear()
        for reader in _read_engines.values():
            reader.dispose()
        _read_engines.clear()


class KeyRow(NamedTuple):
    """The per-call read: the key, its owner, and the fingerprint of what routing depends on."""

    id: uuid.UUID
    key: str
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    user_id: uuid.UUID
    is_active: bool
    role: str
    updated_at: datetime
    providers: int
    providers_changed: datetime | None
    grants: int
    grants_changed: datetime | None
    limits: int
    limits_changed: datetime | None

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        return tuple(self[5:])


_UUID_FIELDS = frozenset({"id", "user_id"})
_TIME_FIELDS = frozenset(
    {"revoked_at", "expires_at", "last_used_at", "updated_at", "providers_changed", "grants_changed", "limits_changed"}
)


def _field_of(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _UUID_FIELDS:
        return uuid.UUID(value)
    if name in _TIME_FIELDS:
        return datetime.fromisoformat(value)
    return value


def key_row_of_json(text: str | None) -> KeyRow | None:
    """A KeyRow from the key query's row as PostgreSQL's row_to_json writes it (key_gate); None for no row."""
    if text is None:
        return None
    values = json.loads(text)
    return KeyRow(*(_field_of(name, values[name]) for name in KeyRow._fields))


# The key may be used now (api_keys.refusal_for's conditions, on the key query's columns): only then does the
# statement that reads it with the limits count the call.
_KEY_USABLE = (
    "(gate.revoked_at IS NULL OR gate.revoked_at > %(gate_now)s) "
    "AND (gate.expires_at IS NULL OR gate.expires_at > %(gate_now)s) AND gate.is_active"
)


def key_gate(engine: Engine, digest: str, now: datetime) -> Gate:
    """The per-call key read as a gate of the limits' one statement on PostgreSQL (limits.acheck_gated): the
    same query, the call counted only if the key may be used at `now`."""
    return Gate(_pg_sql(engine), _KEY_USABLE, {"digest": digest, "gate_now": now})


def remembered(digest: str, model_id: str) -> tuple[tuple[Any, ...], Route, tuple[LimitRule, ...]] | None:
    """The route remembered for (key digest, model id) in this process, with the fingerprint it was found
    under and its rules, before the key is read: a call can then read the key in the same statement as it
    counts against those rules, and check the fingerprint afterwards. None if there is none in date."""
    found = _routes.peek(digest, model_id)
    if found is None or not isinstance(found[1].route, Route):
        return None
    return found[0], found[1].route, found[1].rules


def accept_key(engine: Engine, row: KeyRow | None, digest: str, now: datetime) -> KeyRefused | KeyRow:
    """The key row read with the limits: refused as aadmit refuses it, else the row (lastUsedAt recorded
    behind the call when due)."""
    refused = _verdict(row, digest, now)
    if refused is not None:
        return refused
    assert row is not None
    if _touch_due(row, now):
        _touch_later(engine, row.id, now)
    return row


def read_key(engine: Engine, digest: str) -> KeyRow | None:
    """The per-call read, blocking (worker threads; SQLite)."""
    metrics.count_database_read("key")
    reader = _read_engine(engine)
    for attempt in (1, 2):
        try:
            with reader.connect() as connection:
                row = connection.execute(_QUERY, {"digest": digest}).first()
            return KeyRow(*row) if row is not None else None
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    return None


class _SqliteReader:
    """The per-call read on SQLite, on the calling thread itself: one indexed read of a WAL database
    takes tens of microseconds and never waits for the writer, so a hop to a worker thread would
    cost several times the read. One autocommit connection per thread, kept open; the statement is
    SQLAlchemy's, compiled once, and its columns converted by SQLAlchemy's own result processors."""

    BUSY_TIMEOUT_MS = 2000  # only a checkpoint's brief exclusive moment can make a WAL reader wait

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sql = str(_QUERY.compile(dialect=engine.dialect))
        self._convert = [
            column.type._cached_result_processor(engine.dialect, None) for column in _QUERY.selected_columns
        ]
        self._local = threading.local()

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            pooled = _read_engine(self._engine).raw_connection()  # the engine's connect settings
            pooled.detach()  # ours for the thread's life; the pool opens another in its place
            connection = pooled.dbapi_connection
            connection.isolation_level = None  # autocommit: a SELECT is its own read transaction
            connection.execute(f"PRAGMA busy_timeout={self.BUSY_TIMEOUT_MS}")
            self._local.connection = connection
        return connection

    def read(self, digest: str) -> KeyRow | None:
        for attempt in (1, 2):
            connection = self._connection()
            try:
                rows = connection.execute(self._sql, (digest,)).fetchall()  # all: ends the read at once
                break
            except sqlite3.ProgrammingError:  # closed under us (dispose): open another
                self._local.connection = None
                if attempt == 2:
                    raise
        if not rows:
            return None
        return KeyRow(*(value if f is None else f(value) for f, value in zip(self._convert, rows[0], strict=True)))

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()


_sqlite_readers: dict[URL, _SqliteReader] = {}


def _sqlite_reader(engine: Engine) -> _SqliteReader:
    url = engine.url  # immutable and hashable: equal URLs share a reader
    reader = _sqlite_readers.get(url)
    if reader is None:
        with _read_engines_lock:
            reader = _sqlite_readers.setdefault(url, _SqliteReader(engine))
    return reader


async def aread_key(engine: Engine, digest: str) -> KeyRow | None:
    """The per-call read from the event loop: on its own connections on PostgreSQL, on the loop's
    thread on SQLite (see _SqliteReader), else in a worker thread."""
    metrics.count_database_read("key")
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        return _sqlite_reader(engine).read(digest)
    if engine.dialect.name != "postgresql":
        return await in_db_thread(read_key, engine, digest)
    rows = await pg_pool(engine).fetch(_pg_sql(engine), {"digest": digest})
    return KeyRow(*rows[0]) if rows else None


@functools.cache
def _compiled(dialect: Any) -> str:
    return str(_QUERY.compile(dialect=dialect))


def _pg_sql(engine: Engine) -> str:
    return _compiled(engine.dialect)


async def aclose_async_readers() -> None:
    """Close the running loop's async read connections (the API's shutdown)."""
    await aclose_pg_pools()


def _resolve(session: Session, user_id: uuid.UUID, key_id: uuid.UUID, model_id: str, limits: int) -> _Routed:
    """The route for `model_id` and, when it is allowed and any rule exists (`limits`: the fingerprint's
    count of them), the rules the call meets."""
    user = session.get(User, user_id)
    assert user is not None
    provider_id, model = None, None
    try:
        provider_id, model = resolve_model_id(session, user, model_id)
        route = route_call(session, user, provider_id, model)
    except ChatRefused as refused:
        return _Routed(RouteRefusal(refused.status_code, refused.message, provider_id, model), ())
    rules = rules_for_call(session, user_id, key_id, route.provider_id) if limits else ()
    return _Routed(route, rules)


TOUCH_WARN_EVERY_S = 60.0
_touch_tasks: set[asyncio.Task[None]] = set()
_touch_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)
_touch_failures = 0
_touch_warned_at = -TOUCH_WARN_EVERY_S


def _touch(engine: Engine, key_id: uuid.UUID, now: datetime) -> None:
    with transaction(engine) as session:
        api_keys.touch_last_used(session, key_id, now)


async def _touch_quietly(engine: Engine, key_id: uuid.UUID, now: datetime) -> None:
    global _touch_failures, _touch_warned_at
    loop = asyncio.get_running_loop()
    limiter = _touch_limiters.get(loop)
    if limiter is None:
        limiter = _touch_limiters[loop] = anyio.CapacityLimiter(TOUCH_THREADS)
    try:
        await anyio.to_thread.run_sync(_touch, engine, key_id, now, limiter=limiter)
    except Exception as error:  # noqa: BLE001 - lastUsedAt is bookkeeping: it never fails a call
        _touch_failures += 1
        moment = time.monotonic()
        if moment - _touch_warned_at >= TOUCH_WARN_EVERY_S:
            _touch_warned_at = moment
            log.warning(
                "could not record an API key's lastUsedAt (%s); %d failures so far",
                type(error).__name__,
                _touch_failures,
            )
    finally:
        with _touch_lock:
            _touching.discard(key_id)


def _touch_later(engine: Engine, key_id: uuid.UUID, now: datetime) -> None:
    """Record the key's use behind the call (the caller saw it is due): the call never waits for it
    (a locked or absent database cannot hold it up) and never fails for it (a failure is a warning,
    at most one per TOUCH_WARN_EVERY_S). One write per key at a time in this process, and
    touch_last_used's own condition keeps it to once a minute across processes."""
    with _touch_lock:
        if key_id in _touching:
            return
        _touching.add(key_id)
    task = asyncio.get_running_loop().create_task(_touch_quietly(engine, key_id, now))
    _touch_tasks.add(task)  # held until done: the loop keeps only weak references to tasks
    task.add_done_callback(_touch_tasks.discard)


def _verdict(row: KeyRow | None, digest: str, now: datetime) -> KeyRefused | None:
    if not api_keys.digests_match(row.key if row is not None else None, digest) or row is None:
        return KeyRefused(api_keys.KeyRefusal.UNKNOWN)
    refusal = api_keys.refusal_for(row, row.is_active, now)
    return KeyRefused(refusal, row.id, row.user_id) if refusal is not None else None


def _route_now(engine: Engine, row: KeyRow, digest: str, model_id: str) -> _Routed:
    with transaction(engine) as session:
        routed = _resolve(session, row.user_id, row.id, model_id, row.limits)
    _routes.put(digest, model_id, row.fingerprint, routed)
    return routed


def _touch_due(row: KeyRow, now: datetime) -> bool:
    return row.last_used_at is None or row.last_used_at < now - api_keys.LAST_USED_RESOLUTION


async def aadmit(engine: Engine, presented_key: str | None, model_id: str | None) -> Admitted | KeyRefused:
    """Verify the key and route `model_id` for its owner (None: the key only). Writes only lastUsedAt,
    behind the call. A database that is away raises (call_log.is_database_outage tells which).

    One read on the event loop (PostgreSQL; a worker thread on SQLite), threads only for what the
    read cannot answer (a route not remembered, a lastUsedAt due)."""
    digest = api_keys.presented_digest(presented_key)
    if digest is None:
        return KeyRefused(api_keys.KeyRefusal.UNKNOWN)
    row = await aread_key(engine, digest)
    now = utcnow()
    refused = _verdict(row, digest, now)
    if refused is not None:
        return refused
    assert row is not None
    if _touch_due(row, now):
        _touch_later(engine, row.id, now)
    if model_id is None:
        return Admitted(row.id, row.user_id, RouteRefusal(400, "no model", None))
    routed = _routes.get(digest, model_id, row.fingerprint)
    if routed is None:
        routed = await in_db_thread(_route_now, engine, row, digest, model_id)
    return Admitted(row.id, row.user_id, routed.route, routed.rules)
