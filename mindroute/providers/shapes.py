"""MindRoute's own chat shapes, the same for every protocol: messages, attachments, requests, answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
AttachmentKind = Literal["image", "video", "file"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
ToolChoiceMode = Literal["auto", "none", "required", "function"]


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message; `kind` is what the provider's allowImages/allowVideos/allowFiles govern."""

    kind: AttachmentKind
    mime_type: str
    data: bytes = field(repr=False)  # never in a repr: it ends up in logs and tracebacks
    filename: str = ""
    detail: str | None = None  # an image part's "detail" (auto, low, high), as the caller sent it

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def effective_kind(self) -> AttachmentKind:
        """The kind by content type first, so an image labelled "file" is still governed by allowImages."""
        mime = self.mime_type.lower()
        if mime.startswith("image/"):
            return "image"
        if mime.startswith("video/"):
            return "video"
        return self.kind

    @property
    def label(self) -> str:
        return self.filename or self.mime_type


def attachment_kind(mime_type: str) -> AttachmentKind:
    """The kind of an upload from its content type: image, video, or any other file."""
    mime = mime_type.lower()
    if mime.startswith("image/"):
        return "image"
    if mime.startswith("video/"):
        return "video"
    return "file"


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for (OpenAI's `tool_calls[]` item), or one sent back in history."""

    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (not parsed: a model may write broken JSON)


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: OpenAI's `tools[]` item of type "function"."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None  # a JSON Schema object; None: no arguments
    strict: bool | None = None


@dataclass(frozen=True)
class ToolChoice:
    """OpenAI's `tool_choice`: "auto", "none", "required", or one named function."""

    mode: ToolChoiceMode
    name: str | None = None  # the function, when mode is "function"


@dataclass(frozen=True)
class ResponseFormat:
    """OpenAI's `response_format`: plain text, any JSON object, or JSON that matches a schema."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None  # json_schema.name
    schema: Mapping[str, Any] | None = None  # json_schema.schema
    strict: bool | None = None  # json_schema.strict
    description: str | None = None  # json_schema.description


@dataclass(frozen=True)
class ChatMessage:
    """One message. `text` is the message's text parts joined with newlines and `attachments` its files;
    `parts`, when set, is the content in the order the caller sent it (texts and attachments mixed),
    which the adapters keep; `content()` gives the order to send in either case."""

    role: Role
    text: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    parts: tuple[str | Attachment, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant message's calls
    tool_call_id: str | None = None  # a tool message: the call it answers
    name: str | None = None  # OpenAI's participant `name`; for a tool message, the function's name when known

    def content(self) -> tuple[str | Attachment, ...]:
        """Texts (str) and attachments in sending order: `parts` when set, else attachments then the text
        (Anthropic advises images and documents before the question about them). No empty texts."""
        if self.parts is not None:
            return tuple(part for part in self.parts if not isinstance(part, str) or part)
        return (*self.attachments, *((self.text,) if self.text else ()))


@dataclass(frozen=True)
class ChatRequest:
    """One chat call in MindRoute's terms; each adapter translates it to its protocol.

    `options` holds the other Chat Completions fields the caller set (seed, presence_penalty,
    frequency_penalty, logit_bias, logprobs, top_logprobs, reasoning_effort, metadata, service_tier,
    store, modalities, audio, prediction, verbosity, web_search_options, user, ..., and, for
    openai-compatible servers, fields OpenAI does not define such as top_k), by their OpenAI names
    and as sent: an OpenAI-protocol adapter passes them on, the others translate each one they have
    an equivalent for and refuse (UnsupportedParameter) any that would change the answer.
    """

    model: str
    messages: list[ChatMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    stream: bool = False  # what the caller asked for; complete()/stream() decide what goes on the wire
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    n: int | None = None  # how many choices; None is one
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Choice:
    """One answer of several (n > 1): the ones after the first; the first is the ChatResult's own fields."""

    index: int
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    logprobs: Any = None  # the provider's logprobs object (OpenAI protocol), passed on as sent


@dataclass(frozen=True)
class ChatResult:
    """A whole answer. Token counts are the provider's own; None (and usage_reported False) when it gave none."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    usage_reported: bool
    finish_reason: str | None  # the provider's own word: "stop", "end_turn", "STOP", "length", ...
    model: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the provider's JSON, for the log
    tool_calls: tuple[ToolCall, ...] = ()  # the first choice's calls
    other_choices: tuple[Choice, ...] = ()  # choices 1..n-1 when n > 1
    logprobs: Any = None  # the first choice's logprobs (OpenAI protocol), passed on as sent
    refusal: str | None = None  # OpenAI's message.refusal, when the model refused


@dataclass(frozen=True)
class StreamChunk:
    """A piece of answer text as it arrived, for choice `choice` (0 unless n > 1)."""

    text: str
    choice: int = 0
    logprobs: Any = None  # this piece's logprobs (OpenAI protocol), passed on as sent


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call as it streams, as OpenAI's `delta.tool_calls[]` item: the first piece of a
    call carries its `id` and `name`, every piece a fragment of the JSON `arguments`."""

    position: int  # the call's place among this choice's calls (OpenAI's tool_calls[].index), from 0
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    choice: int = 0


@dataclass(frozen=True)
class StreamEnd:
    """The last item of a stream: the whole text and the usage the provider reported.

    `ChatStream.so_far()` returns the same shape with `finished=False` for a stream that was
    stopped or broke: the text and usage received up to then.
    """

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    usage_reported: bool
    finish_reason: str | None
    model: str
    finished: bool = True
    tool_calls: tuple[ToolCall, ...] = ()  # the first choice's calls, assembled from their pieces
    other_choices: tuple[Choice, ...] = ()  # choices 1..n-1 when n > 1, assembled


@dataclass(frozen=True)
class HttpCall:
    """One provider request, ready to send."""

    url: str
    headers: dict[str, str] = field(repr=False)  # they carry the key
    body: dict[str, Any] = field(repr=False)
