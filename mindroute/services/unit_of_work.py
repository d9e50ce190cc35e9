"""One transaction per user action: a service called with an engine opens (and commits) its own."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mindroute.db import transaction

P = ParamSpec("P")
R = TypeVar("R")


def unit_of_work(service: Callable[Concatenate[Session, P], R]) -> Callable[Concatenate[Session | Engine, P], R]:
    """`service(session, ...)` made callable as `service(engine, ...)` too, which runs it in a transaction of its
    own (committed when it returns, rolled back when it raises). Pages pass the engine; other services and tests
    pass the session they already hold, so several calls can share one unit of work."""

    @functools.wraps(service)
    def run(db: Session | Engine, *args: P.args, **kwargs: P.kwargs) -> R:
        if isinstance(db, Session):
            return service(db, *args, **kwargs)
        with transaction(db) as session:
            return service(session, *args, **kwargs)

    return run
