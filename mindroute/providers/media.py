"""What may be attached, and the attachment encodings the protocols share (base64, data URLs, inlined text)."""

from __future__ import annotations

import base64

from mindroute.i18n import _l
from mindroute.providers.errors import MediaNotAllowed, UnsupportedMedia
from mindroute.providers.shapes import Attachment, ChatMessage, ChatRequest

# Content types sent as text: every protocol can carry text, whatever it thinks of files.
_TEXT_MIME_TYPES = ("application/json", "application/xml", "application/x-yaml", "application/yaml")
_TEXT_MIME_SUFFIXES = ("+json", "+xml")


def check_media(request: ChatRequest, allow_images: bool, allow_videos: bool, allow_files: bool) -> None:
    """Refuse, before any upstream call, attachments the provider's settings do not allow."""
    allowed = {"image": allow_images, "video": allow_videos, "file": allow_files}
    for message in request.messages:
        for attachment in message.attachments:
            kind = attachment.effective_kind
            if not allowed[kind]:
                name = attachment.label
                if kind == "image":
                    raise MediaNotAllowed(_l("This provider does not accept images ({name})", name=name))
                if kind == "video":
                    raise MediaNotAllowed(_l("This provider does not accept videos ({name})", name=name))
                raise MediaNotAllowed(_l("This provider does not accept file attachments ({name})", name=name))


def is_text_like(mime_type: str) -> bool:
    mime = mime_type.lower().split(";")[0].strip()
    return mime.startswith("text/") or mime in _TEXT_MIME_TYPES or mime.endswith(_TEXT_MIME_SUFFIXES)


def base_mime(mime_type: str) -> str:
    return mime_type.lower().split(";")[0].strip()


def base64_of(attachment: Attachment) -> str:
    return base64.b64encode(attachment.data).decode("ascii")


def data_url(attachment: Attachment) -> str:
    return f"data:{base_mime(attachment.mime_type)};base64,{base64_of(attachment)}"


def text_of(attachment: Attachment) -> str:
    # A stray byte must not fail the call: the model reads a replacement character instead.
    return attachment.data.decode("utf-8", errors="replace")


def inlined_text(attachment: Attachment) -> str:
    """A text file as plain text, with its name, for protocols that take no text files."""
    name = attachment.filename or "attached file"
    return f"--- {name} ---\n{text_of(attachment)}\n--- end of {name} ---"


def refuse_attachments_outside_user_turns(message: ChatMessage) -> None:
    if message.attachments and message.role != "user":
        raise UnsupportedMedia(_l("Attachments can only be sent with the user's messages"))
