"""The minute counters behind RPM and TPM, and the budget reads: in the database (SQLite or PostgreSQL) or,
with MINDROUTE_REDIS_URL, in Redis.

`CounterStore.take` (`atake` on the event loop) checks every counter a call counts on against its limits
and counts the call on all of them or on none, atomically across processes:

- Database: one conditional upsert for all counters, `INSERT ... VALUES (...), (...) ON CONFLICT (counterkey)
  DO UPDATE ... WHERE <the window moved on> OR (requests < rpm AND tokens < tpm) RETURNING ...` (each row's
  limits by a CASE on its key). A counter missing from RETURNING refused. On SQLite the table is in its own
  file (mindroute.db.counters_file, attached as `counters`), so the statement takes that file's write lock
  only, never the one the Logs writer holds; it runs in a transaction begun by the statement itself (a
  deferred BEGIN: IMMEDIATE would lock every attached file) that is rolled back on refusal; on PostgreSQL it
  runs in autocommit (one round trip) and a refusal undoes the returned rows' increments in a second
  statement. Every statement that updates several counters locks their rows in key order (lock_counters).
  PostgreSQL serialises the upserts of one row, so no more than RPM calls are ever admitted per minute per
  counter (0 over); while an increment of a refused call is not yet undone, another call may be refused that
  would have fitted (an under-count only, never an over-count). A window is restarted only by a newer window:
  a process whose clock is behind counts into the newer window instead of restarting it.
- Redis: keys `mindroute:rl:<counterkey>:<minute>` (hashes with fields r and t, expiring after 120 s), one
  Lua script that reads every counter and increments all or none; Redis runs a script alone, so the same
  exact bound holds. A Redis that does not answer makes that call use the database's counters instead (and
  the next ones, for REDIS_RETRY_S, before Redis is tried again), with a warning logged at most once a
  minute; a call never fails because Redis is away. While Redis is away the database counts apart from
  Redis, so in the minute Redis goes or comes back up to twice the limit can be admitted.

From the event loop: PostgreSQL through a few autocommit psycopg async connections per loop (no worker
thread); SQLite on the loop's own thread with no busy wait, and in a database thread when the database is
locked by a writer (a WAL write of one small row takes tens of microseconds).

Why one multi-row statement rather than one upsert per counter in a transaction: measured with 3 counters,
the one statement took a median 76 us on PostgreSQL against 267 us (BEGIN, 3 upserts, COMMIT: 5 round trips),
and 13 us against 17 us on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from sqlalchemy import Engine, bindparam, text
from sqlalchemy.orm import Session

from mindroute.db import make_engine
from mindroute.services.db_threads import in_db_thread
from mindroute.services.pg_async import aclose_pg_pools, pg_pool

log = logging.getLogger("mindroute.limits")

NO_LIMIT = 2**62  # an absent RPM or TPM, as a number no count reaches
SQLITE_BUSY_TIMEOUT_MS = 5000
REDIS_TTL_S = 120
REDIS_TIMEOUT_S = 2.0
REDIS_RETRY_S = 1.0  # after Redis failed, the database counts this long before Redis is tried again
WARN_EVERY_S = 60.0
REDIS_PREFIX = "mindroute:rl:"


@dataclass(frozen=True)
class CounterLimit:
    """One counter a call counts on, with the tightest RPM and TPM of the rules that share it."""

    key: str
    rpm: int | None
    tpm: int | None


@dataclass(frozen=True)
class CounterOutcome:
    """Whether the call was counted, and each counter's requests and tokens this minute (after counting the
    call when admitted; as they stand when refused)."""

    admitted: bool
    counts: dict[str, tuple[int, int]]


class CounterStore(Protocol):
    name: str

    def take(self, limits: Sequence[CounterLimit], window: int) -> CounterOutcome: ...

    async def atake(self, limits: Sequence[CounterLimit], window: int) -> CounterOutcome: ...

    def add_tokens(self, session: Session, keys: Sequence[str], window: int, tokens: int) -> None: ...


def refused_by(limit: CounterLimit, counts: tuple[int, int]) -> str | None:
    """ "requests" or "tokens" when `counts` leave no room under `limit`, else None."""
    requests, tokens = counts
    if limit.rpm is not None and requests >= limit.rpm:
        return "requests"
    if limit.tpm is not None and tokens >= limit.tpm:
        return "tokens"
    return None


# --- SQL ------------------------------------------------------------------------------------------------


Placeholder = Callable[[str], str]


def _named(name: str) -> str:
    return f":{name}"


def _pyformat(name: str) -> str:
    return f"%({name})s"


def _count_clause(count: int, p: Placeholder, cast: str = "") -> str:
    """upsert_sql's ON CONFLICT part: a counter of an older minute restarts at this call; one of this minute
    counts it only while under its RPM and TPM (parameters k<i>, r<i>, t<i>; `cast` e.g. "::bigint")."""
    rpm = " ".join(f"WHEN {p(f'k{i}')} THEN {p(f'r{i}')}{cast}" for i in range(count))
    tpm = " ".join(f"WHEN {p(f'k{i}')} THEN {p(f't{i}')}{cast}" for i in range(count))
    newer = "limitcounters.windowstart < excluded.windowstart"
    return (
        "ON CONFLICT (counterkey) DO UPDATE SET "
        f"requests = CASE WHEN {newer} THEN 1 ELSE limitcounters.requests + 1 END, "
        f"tokens = CASE WHEN {newer} THEN 0 ELSE limitcounters.tokens END, "
        f"windowstart = CASE WHEN {newer} THEN excluded.windowstart ELSE limitcounters.windowstart END "
        f"WHERE {newer} OR (limitcounters.requests < CASE excluded.counterkey {rpm} END "
        f"AND limitcounters.tokens < CASE excluded.counterkey {tpm} END) "
        "RETURNING counterkey, windowstart, requests, tokens"
    )


@functools.lru_cache(maxsize=256)
def upsert_sql(count: int, p: Placeholder) -> str:
    """The check-and-count statement for `count` counters (parameters w, k<i>, r<i>, t<i>)."""
    values = ", ".join(f"({p(f'k{i}')}, {p('w')}, 1, 0)" for i in range(count))
    return (
        f"INSERT INTO limitcounters (counterkey, windowstart, requests, tokens) VALUES {values} "  # noqa: S608
        + _count_clause(count, p)
    )


def _keys_in(count: int, p: Placeholder, prefix: str = "k") -> str:
    return ", ".join(p(f"{prefix}{i}") for i in range(count))


@functools.lru_cache(maxsize=256)
def undo_sql(count: int, p: Placeholder, postgresql: bool = True) -> str:
    """Take back one request from counters still in the window they were counted in (parameters k<i>, w<i>).
    On PostgreSQL the rows are locked in key order first, as every upsert locks them (lock_counters says why)."""

    def pairs(table: str) -> str:
        return " OR ".join(
            f"({table}.counterkey = {p(f'k{i}')} AND {table}.windowstart = {p(f'w{i}')})" for i in range(count)
        )

    if not postgresql:
        return f"UPDATE limitcounters SET requests = requests - 1 WHERE requests > 0 AND ({pairs('limitcounters')})"  # noqa: S608
    return (
        "WITH locked AS MATERIALIZED (SELECT c.counterkey FROM limitcounters AS c "  # noqa: S608 - placeholders only
        f"WHERE {pairs('c')} ORDER BY c.counterkey FOR UPDATE) "
        "UPDATE limitcounters SET requests = limitcounters.requests - 1 FROM locked "
        "WHERE limitcounters.counterkey = locked.counterkey AND limitcounters.requests > 0 "
        f"AND ({pairs('limitcounters')})"
    )


@functools.lru_cache(maxsize=256)
def read_sql(count: int, p: Placeholder) -> str:
    keys = _keys_in(count, p)
    return f"SELECT counterkey, windowstart, requests, tokens FROM limitcounters WHERE counterkey IN ({keys})"  # noqa: S608


def _params(limits: Sequence[CounterLimit], window: int) -> dict[str, Any]:
    params: dict[str, Any] = {"w": window}
    for i, limit in enumerate(limits):
        params[f"k{i}"] = limit.key
        params[f"r{i}"] = NO_LIMIT if limit.rpm is None else limit.rpm
        params[f"t{i}"] = NO_LIMIT if limit.tpm is None else limit.tpm
    return params


def _counts_of(rows: Sequence[Sequence[Any]], window: int) -> dict[str, tuple[int, int]]:
    """counterkey -> (requests, tokens) in `window` (a row of an older window counts as nothing yet)."""
    return {row[0]: (int(row[2]), int(row[3])) if int(row[1]) >= window else (0, 0) for row in rows}


def _outcome(
    limits: Sequence[CounterLimit], window: int, returned: Sequence[Sequence[Any]], current: Sequence[Sequence[Any]]
) -> CounterOutcome:
    if len(returned) == len(limits):
        return CounterOutcome(True, _counts_of(returned, window))
    counts = _counts_of(current, window)
    return CounterOutcome(False, {limit.key: counts.get(limit.key, (0, 0)) for limit in limits})


def _undo_params(returned: Sequence[Sequence[Any]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for i, row in enumerate(returned):
        params[f"k{i}"] = row[0]
        params[f"w{i}"] = int(row[1])
    return params


def _sorted(limits: Sequence[CounterLimit]) -> list[CounterLimit]:
    """One row per key, in key order: concurrent upserts lock rows in the same order (no deadlock)."""
    return sorted({limit.key: limit for limit in limits}.values(), key=lambda limit: limit.key)


ADD_TOKENS = text(
    "UPDATE limitcounters SET tokens = tokens + :tokens WHERE windowstart = :window AND counterkey IN :keys"
).bindparams(bindparam("keys", expanding=True))


LOCK_IN_KEY_ORDER = text(
    "SELECT counterkey FROM limitcounters WHERE counterkey IN :keys ORDER BY counterkey FOR UPDATE"
).bindparams(bindparam("keys", expanding=True))


def lock_counters(session: Session, keys: Sequence[str]) -> None:
    """PostgreSQL: lock the counters' rows of `keys` in key order, in the caller's transaction, before it updates
    them. Every upsert takes its rows in key order (_sorted); an UPDATE takes them in the order it finds them,
    and two orders deadlock: PostgreSQL then holds both for deadlock_timeout (1 s), a stall every call on those
    counters waits out, before it aborts one (found at 600 calls/s on one user and key: p95 770 ms)."""
    if keys and session.get_bind().dialect.name == "postgresql":
        session.execute(LOCK_IN_KEY_ORDER, {"keys": sorted(set(keys))})


def add_tokens_in_database(session: Session, keys: Sequence[str], window: int, tokens: int) -> None:
    """Add a finished call's tokens to its counters, in the caller's transaction (rows locked in key order
    first); a counter already in a later minute is left alone."""
    if keys and tokens > 0:
        lock_counters(session, keys)
        session.execute(ADD_TOKENS, {"tokens": tokens, "window": window, "keys": list(keys)})


# --- PostgreSQL on the event loop -----------------------------------------------------------------------


async def aclose_pools() -> None:
    """Close the running loop's connections and Redis clients (the API's shutdown; tests)."""
    await aclose_pg_pools()
    for client, _script in _async_redis.pop(asyncio.get_running_loop(), {}).values():
        with contextlib.suppress(Exception):
            await client.aclose()


# --- the database store ---------------------------------------------------------------------------------


class _SqliteConnections:
    """One autocommit sqlite3 connection per thread (the engine's connect settings), kept open."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []

    def get(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            pooled = self._engine.raw_connection()
            pooled.detach()  # ours for the thread's life
            connection = pooled.dbapi_connection
            connection.isolation_level = None  # we say BEGIN ourselves
            self._local.connection = connection
            self._local.busy = None
            with self._lock:
                self._all.append(connection)
        return connection

    def busy_timeout(self, connection: sqlite3.Connection, ms: int) -> None:
        if self._local.busy != ms:
            connection.execute(f"PRAGMA busy_timeout={ms}")
            self._local.busy = ms

    def close(self) -> None:
        with self._lock:
            for connection in self._all:
                with contextlib.suppress(Exception):
                    connection.close()
            self._all.clear()
        self._local = threading.local()


class DatabaseStore:
    """The counters in `limitcounters` (see the module's docstring)."""

    name = "database"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        database = engine.url.database
        self._sqlite = (
            _SqliteConnections(engine) if self.dialect == "sqlite" and database not in (None, "", ":memory:") else None
        )
        self._sync_engine: Engine | None = None
        self._sync_lock = threading.Lock()

    # SQLite: a short write transaction on this thread.
    def _sqlite_take(self, limits: list[CounterLimit], window: int, busy_ms: int) -> CounterOutcome:
        assert self._sqlite is not None
        connection = self._sqlite.get()
        self._sqlite.busy_timeout(connection, busy_ms)
        connection.execute("BEGIN")  # the upsert is the first statement: a write on the counters' file only
        try:
            returned = connection.execute(upsert_sql(len(limits), _named), _params(limits, window)).fetchall()
            if len(returned) == len(limits):
                connection.execute("COMMIT")
                return CounterOutcome(True, _counts_of(returned, window))
            connection.execute("ROLLBACK")  # a refused call never counts
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        keys = {f"k{i}": limit.key for i, limit in enumerate(limits)}
        current = connection.execute(read_sql(len(limits), _named), keys).fetchall()
        return _outcome(limits, window, returned, current)

    def _autocommit_engine(self) -> Engine:
        if self._sync_engine is None:
            with self._sync_lock:
                if self._sync_engine is None:
                    self._sync_engine = make_engine(
                        self.engine.url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, pool_size=4
                    )
        return self._sync_engine

    def _engine_take(self, limits: list[CounterLimit], window: int) -> CounterOutcome:
        """Through SQLAlchemy in autocommit (PostgreSQL from a thread; a SQLite in memory)."""
        with self._autocommit_engine().connect() as connection:
            returned = connection.execute(text(upsert_sql(len(limits), _named)), _params(limits, window)).all()
            if len(returned) == len(limits):
                return CounterOutcome(True, _counts_of(returned, window))
            if returned:
                undo = undo_sql(len(returned), _named, self.dialect == "postgresql")
                connection.execute(text(undo), _undo_params(returned))
            keys = {f"k{i}": limit.key for i, limit in enumerate(limits)}
            current = connection.execute(text(read_sql(len(limits), _named)), keys).all()
        return _outcome(limits, window, returned, current)

    def take(self, limits: Sequence[CounterLimit], window: int) -> CounterOutcome:
        ordered = _sorted(limits)
        if self._sqlite is not None:
            return self._sqlite_take(ordered, window, SQLITE_BUSY_TIMEOUT_MS)
        return self._engine_take(ordered, window)

    async def atake(self, limits: Sequence[CounterLimit], window: int) -> CounterOutcome:
        ordered = _sorted(limits)
        if self._sqlite is not None:
            try:
                return self._sqlite_take(ordered, window, 0)  # on the loop, when nobody holds the lock
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise
            return await in_db_thread(self._sqlite_take, ordered, window, SQLITE_BUSY_TIMEOUT_MS)
        if self.dialect != "postgresql":
            return await in_db_thread(self._engine_take, ordered, window)
        return await pg_pool(self.engine).run(lambda connection: self._pg_take(connection, ordered, window))

    async def _pg_take(
        self, connection: psycopg.AsyncConnection[Any], limits: list[CounterLimit], window: int
    ) -> CounterOutcome:
        cursor = await connection.execute(upsert_sql(len(limits), _pyformat), _params(limits, window), prepare=True)
        returned = await cursor.fetchall()
        if len(returned) == len(limits):
            return CounterOutcome(True, _counts_of(returned, window))
        if returned:
            await connection.execute(undo_sql(len(returned), _pyformat), _undo_params(returned))
        keys = {f"k{i}": limit.key for i, limit in enumerate(limits)}
        cursor = await connection.execute(read_sql(len(limits), _pyformat), keys)
        return _outcome(limits, window, returned, await cursor.fetchall())

    def add_tokens(self, session: Session, keys: Sequence[str], window: int, tokens: int) -> None:
        add_tokens_in_database(session, keys, window, tokens)

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._sync_engine is not None:
            self._sync_engine.dispose()


# --- budget reads ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def spend_sql(targets: int, periods: int, p: Placeholder) -> str:
    return (
        "SELECT target, periodkey, spentusd, tokens FROM budgetspend "  # noqa: S608 - placeholders only
        f"WHERE target IN ({_keys_in(targets, p, 'g')}) AND periodkey IN ({_keys_in(periods, p, 'p')})"
    )


Spend = dict[tuple[str, str], tuple[float, int]]


def _spend_params(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str], dict[str, Any]]:
    targets = sorted({target for target, _ in pairs})
    periods = sorted({period for _, period in pairs})
    params = {f"g{i}": target for i, target in enumerate(targets)}
    params.update({f"p{i}": period for i, period in enumerate(periods)})
    return targets, periods, params


def _spend_of(rows: Sequence[Sequence[Any]], pairs: Sequence[tuple[str, str]]) -> Spend:
    wanted = set(pairs)
    return {(row[0], row[1]): (float(row[2]), int(row[3])) for row in rows if (row[0], row[1]) in wanted}


def read_spend(store: DatabaseStore, pairs: Sequence[tuple[str, str]]) -> Spend:
    """(target, periodkey) -> (spent USD, tokens) for the pairs that have a row; one query."""
    targets, periods, params = _spend_params(pairs)
    sql = spend_sql(len(targets), len(periods), _named)
    if store._sqlite is not None:
        rows = store._sqlite.get().execute(sql, params).fetchall()
    else:
        with store._autocommit_engine().connect() as connection:
            rows = list(connection.execute(text(sql), params).all())
    return _spend_of(rows, pairs)


async def aread_spend(store: DatabaseStore, pairs: Sequence[tuple[str, str]]) -> Spend:
    """read_spend from the event loop: on the loop's thread on SQLite (a WAL read never waits for the
    writer), on the loop's connections on PostgreSQL."""
    if store.dialect == "postgresql":
        targets, periods, params = _spend_params(pairs)
        rows = await pg_pool(store.engine).fetch(spend_sql(len(targets), len(periods), _pyformat), params)
        return _spend_of(rows, pairs)
    if store._sqlite is not None:
        return read_spend(store, pairs)
    return await in_db_thread(read_spend, store, pairs)


# --- budgets and counters in one statement (PostgreSQL) -------------------------------------------------

BudgetLimit = tuple[str, str, float | None, int | None]  # (target, periodkey, budget USD, budget tokens)


@dataclass(frozen=True)
class Gate:
    """A row the count depends on, read in the same statement (admission's key row): `sql` selects it
    (pyformat parameters in `params`), `condition` on its columns (as `gate.<column>`) must hold for the
    call to be counted. Its row comes back as JSON."""

    sql: str
    condition: str
    params: dict[str, Any]


@functools.lru_cache(maxsize=256)
def spend_and_take_sql(
    counters: int, targets: int, periods: int, budgets: int, gate_sql: str = "", gate_condition: str = ""
) -> str:
    """One round trip for a call under budgets and rates on PostgreSQL: the spend of its budgets' periods
    and, only when none of them is spent, upsert_sql's check-and-count (parameters as spend_sql's, then
    bt<i>, bp<i>, bu<i>, bk<i> per budget, then upsert_sql's). Rows: ('s', target, periodkey, USD,
    tokens) per spend row, then ('c', counterkey, windowstart, requests, tokens) per counter counted.
    With a gate (Gate's sql and condition), nothing is counted unless its row meets the condition; rows
    ('g', the gate's row as JSON) and, when it meets it, ('p')."""
    p = _pyformat
    # The gate is the caller's SQL text (admission's compiled key query), never a value: those are parameters.
    gate = f"gate AS ({gate_sql}), passing AS (SELECT 1 FROM gate WHERE {gate_condition}), " if gate_sql else ""  # noqa: S608
    gated = "AND EXISTS (SELECT 1 FROM passing) " if gate_sql else ""
    gate_rows = (
        " UNION ALL SELECT 'g', row_to_json(gate)::text, NULL, NULL, NULL FROM gate"
        " UNION ALL SELECT 'p', NULL, NULL, NULL, NULL FROM passing"
        if gate_sql
        else ""
    )
    budget_rows = ", ".join(
        f"({p(f'bt{i}')}::text, {p(f'bp{i}')}::text, {p(f'bu{i}')}::float8, {p(f'bk{i}')}::bigint)"
        for i in range(budgets)
    )
    values = ", ".join(f"({p(f'k{i}')}::text, {p('w')}::bigint, 1, 0::bigint)" for i in range(counters))
    return (
        f"WITH {gate}spend AS ({spend_sql(targets, periods, p)}), "  # noqa: S608 - placeholders only
        "spent AS (SELECT 1 FROM spend JOIN (VALUES "
        f"{budget_rows}) AS b (target, periodkey, usd, tok) "
        "ON spend.target = b.target AND spend.periodkey = b.periodkey "
        "WHERE spend.spentusd >= b.usd OR spend.tokens >= b.tok), "
        "take AS (INSERT INTO limitcounters (counterkey, windowstart, requests, tokens) "
        f"SELECT * FROM (VALUES {values}) AS v (counterkey, windowstart, requests, tokens) "
        f"WHERE NOT EXISTS (SELECT 1 FROM spent) {gated}"
        f"{_count_clause(counters, p, '::bigint')}) "
        "SELECT 's', target, periodkey, spentusd, tokens FROM spend "
        f"UNION ALL SELECT 'c', counterkey, windowstart::text, requests::float8, tokens FROM take{gate_rows}"
    )


@dataclass(frozen=True)
class GatedTake:
    """What aspend_and_take found with a gate: the spend and the counters' outcome (None: a budget is
    spent, or the gate refused, and nothing was counted), the gate's row as JSON (None: no row), whether
    it met the condition, and the counters counted (to take back if the caller refuses the call after all)."""

    spend: Spend
    outcome: CounterOutcome | None
    gate_row: str | None
    passed: bool
    counted: tuple[tuple[str, int], ...] = ()


async def aspend_and_take(
    store: DatabaseStore,
    budgets: Sequence[BudgetLimit],
    limits: Sequence[CounterLimit],
    window: int,
    gate: Gate | None = None,
) -> GatedTake:
    """On PostgreSQL, the spend of `budgets` and, when none is spent (and `gate`'s row meets its condition),
    the counters taken, in one statement; the outcome is None when nothing was counted for a spent budget or
    the gate. Refused by a counter: undone and read again, as DatabaseStore.atake does."""
    ordered = _sorted(limits)
    pairs = [(target, period) for target, period, _, _ in budgets]
    targets, periods, params = _spend_params(pairs)
    for i, (target, period, usd, tokens) in enumerate(budgets):
        params.update({f"bt{i}": target, f"bp{i}": period, f"bu{i}": usd, f"bk{i}": tokens})
    params.update(_params(ordered, window))
    if gate is not None:
        params.update(gate.params)
    gate_sql, condition = (gate.sql, gate.condition) if gate is not None else ("", "")
    sql = spend_and_take_sql(len(ordered), len(targets), len(periods), len(budgets), gate_sql, condition)

    async def statements(connection: psycopg.AsyncConnection[Any]) -> GatedTake:
        cursor = await connection.execute(sql, params, prepare=True)
        rows = await cursor.fetchall()
        spend = _spend_of([row[1:] for row in rows if row[0] == "s"], pairs)
        returned = [(row[1], int(row[2]), int(row[3]), int(row[4])) for row in rows if row[0] == "c"]
        gate_row = next((row[1] for row in rows if row[0] == "g"), None)
        passed = gate is None or any(row[0] == "p" for row in rows)
        if not passed:
            return GatedTake(spend, None, gate_row, False)
        spent = _any_spent(budgets, spend)
        if len(returned) == len(ordered) and not spent:
            counted = tuple((row[0], row[1]) for row in returned)
            return GatedTake(spend, CounterOutcome(True, _counts_of(returned, window)), gate_row, True, counted)
        if returned:  # a counter refused (or a budget is spent after all): the others count nothing either
            await connection.execute(undo_sql(len(returned), _pyformat), _undo_params(returned))
        if spent:
            return GatedTake(spend, None, gate_row, True)
        keys = {f"k{i}": limit.key for i, limit in enumerate(ordered)}
        cursor = await connection.execute(read_sql(len(ordered), _pyformat), keys)
        return GatedTake(spend, _outcome(ordered, window, returned, await cursor.fetchall()), gate_row, True)

    return await pg_pool(store.engine).run(statements)


async def aundo_counts(store: DatabaseStore, counted: Sequence[tuple[str, int]]) -> None:
    """Take back one request from each (counterkey, windowstart) counted: a call refused after it was counted."""
    if counted:
        params = _undo_params(counted)
        await pg_pool(store.engine).fetch(undo_sql(len(counted), _pyformat), params)


def _any_spent(budgets: Sequence[BudgetLimit], spend: Spend) -> bool:
    for target, period, usd, tokens in budgets:
        spent_usd, spent_tokens = spend.get((target, period), (0.0, 0))
        if (usd is not None and spent_usd >= usd) or (tokens is not None and spent_tokens >= tokens):
            return True
    return False


# --- Redis -----------------------------------------------------------------------------------------------

# KEYS: the counters' keys of this minute; ARGV: rpm, tpm per key, then the expiry in seconds.
# Returns {admitted, requests1, tokens1, requests2, tokens2, ...}: after counting when admitted.
TAKE_SCRIPT = """
local n = #KEYS
local ttl = tonumber(ARGV[2 * n + 1])
local counts = {}
local admitted = 1
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i], 'r', 't')
  local r = tonumber(v[1]) or 0
  local t = tonumber(v[2]) or 0
  counts[2 * i - 1] = r
  counts[2 * i] = t
  if r >= tonumber(ARGV[2 * i - 1]) or t >= tonumber(ARGV[2 * i]) then
    admitted = 0
  end
end
if admitted == 1 then
  for i = 1, n do
    counts[2 * i - 1] = redis.call('HINCRBY', KEYS[i], 'r', 1)
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end
local out = {admitted}
for i = 1, 2 * n do
  out[i + 1] = counts[i]
end
return out
"""


def redis_key(counter_key: str, window: int) -> str:
    return f"{REDIS_PREFIX}{counter_key}:{window}"


# Per event loop: Redis URL -> (redis.asyncio client, its registered script).
_async_redis: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[Any, Any]]] = (
    weakref.WeakKeyDictionary()
)


class RedisStore:
    """The counters in Redis, with the database store as the fallback (see the module's docstring)."""

    name = "redis"

    def __init__(self, url: str, fallback: DatabaseStore) -> None:
        import redis

        self.url = url
        self.fallback = fallback
        self._client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
        self._script = self._client.register_script(TAKE_SCRIPT)
        self._down_until = 0.0
        self._warned_at = -WARN_EVERY_S
        self.failures = 0

    def _async_script(self) -> Any:
        import redis.asyncio

        clients = _async_redis.setdefault(asyncio.get_running_loop(), {})
        entry = clients.get(self.url)
        if entry is None:
            client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
            )
            entry = clients[self.url] = (client, client.register_script(TAKE_SCRIPT))
        return entry[1]

    @staticmethod
    def _args(limits: Sequence[CounterLimit], window: int) -> tuple[list[str], list[int]]:
        keys = [redis_key(limit.key, window) for limit in limits]
        argv: list[int] = []
        for limit in limits:
            argv += [NO_LIMIT if limit.rpm is None else limit.rpm, NO_LIMIT if limit.tpm is None else limit.tpm]
        return keys, [*argv, REDIS_TTL_S]

    @staticmethod
    def _outcome(limits: Sequence[CounterLimit], reply: Sequence[Any]) -> CounterOutcome:
        counts = {limit.key: (int(reply[1 + 2 * i]), int(reply[2 + 2 * i])) for i, limit in enumerate(limits)}
        return CounterOutcome(bool(int(reply[0])), counts)

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def went_away(self, error: Exception) -> None:
        """Count a failure, use the database for REDIS_RETRY_S, warn at most once a minute."""
        self.failures += 1
        moment = time.monotonic()
        self._down_until = moment + REDIS_RETRY_S
        if moment - self._warned_at >= WARN_EVERY_S:
            self._warned_at = moment
            log.warning(
                "Redis did not answer (%s); the rate-limit counters use the database meanwhile (%d failures so far)",
                type(error).__name__,
                self.failures,
            )

    def take(self, limits: Sequence[CounterLimit], window: int) -> CounterOutcome:
        import redis

        ordered = _sorted(limits)
        if self.available():
            keys, argv = self._args(ordered, window)
            try:
                return self._outcome(ordered, self._script(keys=keys, args=argv))
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                self.went_away(error)
        return self.fallback.take(ordered, window)

    async def atake(self, limits: Sequence[CounterLimit], window: int) -> CounterOutcome:
        import redis

        ordered = _sorted(limits)
        if self.available():
            keys, argv = self._args(ordered, window)
            try:
                return self._outcome(ordered, await self._async_script()(keys=keys, args=argv))
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                self.went_away(error)
        return await self.fallback.atake(ordered, window)

    def add_tokens(self, session: Session, keys: Sequence[str], window: int, tokens: int) -> None:
        """INCRBY in Redis (not in the caller's transaction); the database's counters when Redis is away."""
        import redis

        if not keys or tokens <= 0:
            return
        if self.available():
            try:
                pipe = self._client.pipeline(transaction=False)
                for key in keys:
                    pipe.hincrby(redis_key(key, window), "t", tokens)
                    pipe.expire(redis_key(key, window), REDIS_TTL_S)
                pipe.execute()
                return
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                self.went_away(error)
        add_tokens_in_database(session, keys, window, tokens)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()
        self.fallback.close()
