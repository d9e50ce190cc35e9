"""uvicorn's httptools HTTP protocol with a request-header size cap and read timeouts (slowloris).

uvicorn (0.54) has neither: with httptools it reads a header of any size, and it never times
out a request whose head or body is dripped in. Serve with this protocol to get both:

    uvicorn app:app --http mindroute.http.limits:LimitedHttpToolsProtocol
    uvicorn mindroute.http.api:app --http mindroute.http.limits:LimitedHttpToolsProtocol

`streamlit run app.py` builds its uvicorn server itself and offers no way to choose the
protocol, so served that way the app needs a reverse proxy in front that caps and times out
requests (see README).
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("mindroute.http.limits")

# The request line and headers together (browsers send a few KiB; nginx's default is 8 KiB x 4).
MAX_HEAD_BYTES = 64 * 1024
# A request's line and headers must arrive within this many seconds of its first byte (or of
# the connection, for its first request).
HEAD_TIMEOUT_S = 10.0
# While a request body is being read, the longest silence between two pieces of it.
BODY_IDLE_TIMEOUT_S = 30.0

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 36\r\n\r\nRequest line and headers are too big"
)
_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 30\r\n\r\nThe request arrived too slowly"
)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Refuses a head over MAX_HEAD_BYTES with 431 as soon as that many bytes are in, and closes
    (408) a connection whose head takes over HEAD_TIMEOUT_S or whose body goes silent for
    BODY_IDLE_TIMEOUT_S. Idle keep-alive connections keep uvicorn's own timeout."""

    _head_bytes = 0
    _reading = "head"  # "head" (a request's line and headers), "body", or "idle" (between requests)
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(HEAD_TIMEOUT_S)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading == "head":
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(_TOO_LARGE, f"request head over {MAX_HEAD_BYTES} bytes")
                return
        elif self._reading == "body":
            self._arm(BODY_IDLE_TIMEOUT_S)
        super().data_received(data)

    def on_message_begin(self) -> None:
        if self._reading == "idle":  # the next request on a kept-alive connection starts
            self._reading = "head"
            self._arm(HEAD_TIMEOUT_S)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._reading = "body"
        self._head_bytes = 0
        self._arm(BODY_IDLE_TIMEOUT_S)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading = "idle"
        self._disarm()  # the response may take as long as it takes
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    # --- timers ---

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self._reading == "body" and self.flow is not None and self.flow.read_paused:
            self._arm(BODY_IDLE_TIMEOUT_S)  # the app is not reading yet: the client is not to blame
            return
        if self._reading in ("head", "body"):
            self._refuse(_TIMEOUT, f"request {self._reading} not received in time")

    def _refuse(self, response: bytes, reason: str) -> None:
        self._disarm()
        self._reading = "idle"
        if self.transport.is_closing():
            return
        log.warning("closing a connection from %s: %s", self.client[0] if self.client else "?", reason)
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(response)
        if self.cycle is not None:
            self.cycle.disconnected = True
        self.transport.close()
