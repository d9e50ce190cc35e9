"""Reading a streamed answer: bytes to lines, lines to server-sent events, events to text chunks."""

from __future__ import annotations

import codecs
import json
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from mindroute.i18n import _l
from mindroute.providers.errors import UpstreamError, line_too_long, too_large
from mindroute.providers.shapes import Choice, StreamChunk, StreamEnd, ToolCall, ToolCallDelta

StreamItem = StreamChunk | ToolCallDelta  # what a translator hands on from one event


@dataclass(frozen=True)
class SSEEvent:
    event: str  # "message" when the server named none
    data: str


class SSEDecoder:
    """Lines of a text/event-stream in, events out (the WHATWG rules: event/data fields, blank line dispatches)."""

    def __init__(self, limit: int | None = None, host: str = "the provider") -> None:
        self._event = ""
        self._data: list[str] = []
        self._size = 0  # characters of data in the pending event
        self._limit = limit  # at most this many characters of data in one event
        self._host = host

    def feed(self, line: str) -> SSEEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            return self.flush()
        if line.startswith(":"):  # a comment, used as a keep-alive
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._size += len(value) + 1
            if self._limit is not None and self._size > self._limit:
                raise too_large(
                    self._host, _l("one event of the stream"), self._limit, "MINDROUTE_UPSTREAM_MAX_LINE_BYTES"
                )
        return None  # id and retry do not matter to a single request

    def flush(self) -> SSEEvent | None:
        """The pending event, also at the end of a stream that lacks the final blank line."""
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(self._event or "message", "\n".join(self._data))
        self._event, self._data, self._size = "", [], 0
        return event


class StreamTranslator(ABC):
    """One provider's stream events in, text chunks and tool-call pieces out; keeps the text, the tool
    calls, the other choices (n > 1) and the usage seen so far."""

    def __init__(self, model: str) -> None:
        self.parts: list[str] = []  # choice 0's text
        self._calls: dict[tuple[int, int], list[Any]] = {}  # (choice, position) -> [id, name, argument pieces]
        self._other_parts: dict[int, list[str]] = {}  # choices 1.. -> their text
        self._other_finish: dict[int, str] = {}  # choices 1.. -> their finish reason
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.total_tokens: int | None = None
        self.usage_reported = False
        self.finish_reason: str | None = None
        self.model = model
        self.done = False  # the provider's own end-of-answer marker arrived

    @abstractmethod
    def feed(self, event: SSEEvent) -> list[StreamItem]:
        """The text and tool-call pieces in one event; raises a ProviderError for an error event or a
        chunk we cannot read."""

    def is_complete(self) -> bool:
        return self.done

    def text_chunk(self, text: object, choice: int = 0, logprobs: Any = None) -> list[StreamItem]:
        """A piece of choice `choice`'s text (with its logprobs, if any), kept for the end."""
        if not isinstance(text, str):
            text = ""
        if not text and logprobs is None:
            return []
        (self.parts if choice == 0 else self._other_parts.setdefault(choice, [])).append(text)
        return [StreamChunk(text, choice, logprobs)]

    def tool_delta(
        self,
        position: int,
        call_id: str | None = None,
        name: str | None = None,
        arguments: object = "",
        choice: int = 0,
    ) -> list[StreamItem]:
        """A piece of tool call `position` of choice `choice`: its id and name come with the first piece."""
        fragment = arguments if isinstance(arguments, str) else ""
        call = self._calls.get((choice, position))
        if call is None:
            call = self._calls[(choice, position)] = [call_id or "", name or "", []]
        else:
            call[0] = call[0] or call_id or ""
            call[1] = call[1] or name or ""
        if fragment:
            call[2].append(fragment)
        return [ToolCallDelta(position, call_id or None, name or None, fragment, choice)]

    def choice_finished(self, choice: int, reason: object) -> None:
        """A choice's finish reason (choice 0's is `finish_reason`)."""
        if not isinstance(reason, str) or not reason:
            return
        if choice == 0:
            self.finish_reason = reason
        else:
            self._other_finish[choice] = reason

    def tool_calls(self, choice: int = 0) -> tuple[ToolCall, ...]:
        """Choice `choice`'s tool calls as assembled so far, in position order."""
        found = sorted((position, call) for (c, position), call in self._calls.items() if c == choice)
        return tuple(ToolCall(call[0], call[1], "".join(call[2])) for _, call in found)

    def set_usage(self, prompt: int | None, completion: int | None, total: int | None = None) -> None:
        self.usage_reported = True
        if prompt is not None:
            self.prompt_tokens = prompt
        if completion is not None:
            self.completion_tokens = completion
        if total is not None:
            self.total_tokens = total
        elif self.prompt_tokens is not None and self.completion_tokens is not None:
            self.total_tokens = self.prompt_tokens + self.completion_tokens

    def snapshot(self, finished: bool) -> StreamEnd:
        return StreamEnd(
            text="".join(self.parts),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.total_tokens,
            usage_reported=self.usage_reported,
            finish_reason=self.finish_reason,
            model=self.model,
            finished=finished,
            tool_calls=self.tool_calls(0),
            other_choices=self._choices(),
        )

    def _choices(self) -> tuple[Choice, ...]:
        indexes = sorted({*self._other_parts, *self._other_finish, *(c for c, _ in self._calls if c)})
        return tuple(
            Choice(i, "".join(self._other_parts.get(i, [])), self.tool_calls(i), self._other_finish.get(i))
            for i in indexes
        )

    def finish(self) -> StreamEnd:
        if not self.is_complete():
            raise UpstreamError(_l("The provider's stream ended before the answer was complete"))
        return self.snapshot(finished=True)


_NOT_JSON = {
    "response": _l("The provider sent a response that is not valid JSON"),
    "stream chunk": _l("The provider sent a stream chunk that is not valid JSON"),
    "stream event": _l("The provider sent a stream event that is not valid JSON"),
}


def load_json(text: str, what: str) -> Any:
    """`text` read as JSON; UpstreamError when it is not. `what` is "response", "stream chunk" or "stream event"."""
    try:
        return json.loads(text)
    except ValueError:
        raise UpstreamError(_NOT_JSON.get(what) or _l("The provider sent an answer that is not valid JSON")) from None


def int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class LineSplitter:
    """Bytes in, lines out: split at \\n, \\r\\n or \\r only (as SSE and httpx do), each at most `limit` characters."""

    _BREAK = re.compile(r"\r\n|\r|\n")

    def __init__(self, limit: int | None = None, host: str = "the provider") -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._limit = limit
        self._host = host

    def feed(self, data: bytes) -> list[str]:
        pending = self._pending + self._decoder.decode(data)
        if "\r" not in pending:  # the usual stream: \n only, split without the regular expression
            parts = pending.split("\n")
            self._pending = parts.pop()
        else:
            # A \r at the very end may be the first half of a \r\n: keep it until the next piece tells.
            carry = "\r" if pending.endswith("\r") else ""
            parts = self._BREAK.split(pending[: len(pending) - len(carry)])
            self._pending = parts.pop() + carry  # the part after the last break: not a whole line yet
        limit = self._limit
        if limit is not None and (len(self._pending) > limit or any(len(line) > limit for line in parts)):
            raise line_too_long(self._host, limit)
        return parts

    def finish(self) -> list[str]:
        pending = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        if not pending:
            return []
        return self._BREAK.split(pending.removesuffix("\r"))


async def aiter_lines(
    pieces: AsyncIterator[bytes], limit: int | None = None, host: str = "the provider"
) -> AsyncIterator[str]:
    """The body's lines as they arrive, split at \\n, \\r\\n or \\r only (as SSE and httpx do)."""
    splitter = LineSplitter(limit, host)
    async for data in pieces:
        for line in splitter.feed(data):
            yield line
    for line in splitter.finish():
        yield line
