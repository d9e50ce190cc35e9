"""MindRoute's own chat shapes, the same for every protocol: messages, attachments, requests, answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
AttachmentKind = Literal["image", "video", "file"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message; `kind` is what the provider's allowImages/allowVideos/allowFiles govern."""

    kind: AttachmentKind
    mime_type: str
    data: bytes = field(repr=False)  # never in a repr: it ends up in logs and tracebacks
    filename: str = ""

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
class ChatMessage:
    role: Role
    text: str = ""
    attachments: list[Attachment] = field(default_factory=list)


@dataclass(frozen=True)
class ChatRequest:
    """One chat call in MindRoute's terms; each adapter translates it to its protocol."""

    model: str
    messages: list[ChatMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    stream: bool = False  # what the caller asked for; complete()/stream() decide what goes on the wire


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


@dataclass(frozen=True)
class StreamChunk:
    """A piece of answer text as it arrived."""

    text: str


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


@dataclass(frozen=True)
class HttpCall:
    """One provider request, ready to send."""

    url: str
    headers: dict[str, str] = field(repr=False)  # they carry the key
    body: dict[str, Any] = field(repr=False)
