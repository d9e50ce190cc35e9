"""The API's blocking database work in worker threads, a bounded number at a time per event loop."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")
# Database work of the API runs in worker threads, at most this many at once: more threads would
# only queue on the connection pool and take turns at the GIL with the event loop.
DB_THREADS = 8
_db_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = weakref.WeakKeyDictionary()


async def in_db_thread(function: Callable[..., T], *args: Any) -> T:
    """Run blocking database work in a worker thread, DB_THREADS at a time per event loop."""
    loop = asyncio.get_running_loop()
    limiter = _db_limiters.get(loop)
    if limiter is None:
        limiter = _db_limiters[loop] = anyio.CapacityLimiter(DB_THREADS)
    return await anyio.to_thread.run_sync(function, *args, limiter=limiter)
