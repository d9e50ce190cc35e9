"""Small attachments of each kind, shared by the protocol tests."""

from __future__ import annotations

import base64

from mindroute.providers.shapes import Attachment, ChatMessage, ChatRequest

# A 1×1 transparent PNG: a real image, so nothing downstream has to be lenient about it.
PNG_BYTES = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PDF_BYTES = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
MP4_BYTES = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"

IMAGE = Attachment("image", "image/png", PNG_BYTES, "dot.png")
PDF = Attachment("file", "application/pdf", PDF_BYTES, "report.pdf")
TEXT = Attachment("file", "text/plain", "Line one\nLine two – ünïcode\n".encode(), "notes.txt")
VIDEO = Attachment("video", "video/mp4", MP4_BYTES, "clip.mp4")
DOCX = Attachment(
    "file", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", b"PK\x03\x04", "cv.docx"
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def with_attachments(
    *attachments: Attachment, text: str = "What is in these?", model: str = "test-model"
) -> ChatRequest:
    return ChatRequest(model=model, messages=[ChatMessage("user", text, list(attachments))])
