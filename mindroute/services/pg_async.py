"""The API's statements on PostgreSQL without a worker thread: one small pool of autocommit psycopg async
connections per event loop and database, shared by the per-call key read (admission) and the limit counters
(limit_counters). A statement sent this way is one round trip (no BEGIN/COMMIT) and, prepared, is parsed
once per connection."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import URL, Engine

PG_POOL_SIZE = 12  # the connections one API process keeps open to its database for these statements
CONNECT_TIMEOUT_S = 5  # a database that does not answer fails the call (503) instead of hanging it


class AsyncPgPool:
    """At most PG_POOL_SIZE autocommit psycopg async connections of one event loop, kept open (a call waits
    for a free one rather than opening more); one the server dropped is replaced and the statement retried
    once."""

    def __init__(self, engine: Engine) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._idle: asyncio.LifoQueue[psycopg.AsyncConnection[Any] | None] = asyncio.LifoQueue()
        for _ in range(PG_POOL_SIZE):
            self._idle.put_nowait(None)
        self._all: set[psycopg.AsyncConnection[Any]] = set()

    async def run(self, statements: Callable[[psycopg.AsyncConnection[Any]], Any]) -> Any:
        """Await `statements(connection)` on a pooled connection."""
        connection = await self._idle.get()
        try:
            for attempt in (1, 2):
                if connection is None or connection.closed:
                    connection = await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True, options="-c timezone=UTC", connect_timeout=CONNECT_TIMEOUT_S
                    )
                    self._all.add(connection)
                try:
                    return await statements(connection)
                except psycopg.OperationalError:
                    await self._drop(connection)
                    connection = None
                    if attempt == 2:
                        raise
                except BaseException:  # cancelled midway: the connection's state is unknown
                    await self._drop(connection)
                    connection = None
                    raise
            return None
        finally:
            self._idle.put_nowait(connection)

    async def fetch(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        async def statements(connection: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            cursor = await connection.execute(sql, params, prepare=True)
            return await cursor.fetchall() if cursor.description is not None else []

        return await self.run(statements)

    async def _drop(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._all.discard(connection)
        with contextlib.suppress(Exception):
            await connection.close()

    async def aclose(self) -> None:
        for connection in list(self._all):
            await self._drop(connection)


_pg_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[URL, AsyncPgPool]] = weakref.WeakKeyDictionary()


def pg_pool(engine: Engine) -> AsyncPgPool:
    """The running loop's pool for `engine`'s database."""
    pools = _pg_pools.setdefault(asyncio.get_running_loop(), {})
    url = engine.url  # immutable and hashable
    pool = pools.get(url)
    if pool is None:
        pool = pools[url] = AsyncPgPool(engine)
    return pool


async def aclose_pg_pools() -> None:
    """Close the running loop's pooled connections (the API's shutdown; tests)."""
    for pool in _pg_pools.pop(asyncio.get_running_loop(), {}).values():
        await pool.aclose()
