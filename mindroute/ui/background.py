"""Reads a page starts in a thread of its own at the top of its run and collects before the run ends, so a
read that the rest of the page does not need (the Usage page's rollup check) runs beside the page's own.

A plain thread rather than `st.fragment(parallel=True)`: the thread draws nothing, and the script writes what it
found where it belongs (a parallel fragment may write only into its own container, and a stop of the run ends
its thread before it has written). The thread carries the run's ScriptRunContext (attached before it starts, as
Streamlit documents), so `st.cache_data` and `st.cache_resource` behave in it as in the script.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import ParamSpec, TypeVar

from streamlit.runtime.scriptrunner import add_script_run_ctx

P = ParamSpec("P")
T = TypeVar("T")


def start(read: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
    """Run `read(*args, **kwargs)` in a new thread with this run's context; `.result(timeout)` collects it
    (and raises what it raised)."""
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(read(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to whoever collects it (never lost in the thread)
            future.set_exception(error)

    thread = threading.Thread(target=run, name="mindroute-page-read", daemon=True)
    add_script_run_ctx(thread)
    thread.start()
    return future
