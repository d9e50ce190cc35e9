"""The API's OpenAPI 3.1 description (served at /v1/openapi.json); the chat request's schema is generated
from the parser's own field table (chat_request.REQUEST_FIELDS), so the document and the checks agree."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mindroute.http.answers import OVERHEAD_HEADER
from mindroute.http.chat_request import REFUSED_FIELDS, REQUEST_FIELDS, RequestField

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
            },
            "required": ["message", "type", "code"],
        }
    },
}

_STATUS_TEXT = {
    400: "Invalid request (more than MINDROUTE_API_MAX_MESSAGES messages among others), over the token limit, "
    "media not allowed, or an ambiguous bare model",
    401: "Unknown, expired or revoked key, or its owner is deactivated",
    403: "A provider granted to you is inactive, or the model is not allowed",
    404: "The model exists nowhere, or only on providers not granted to you; or an unknown URL (code unknown_url)",
    413: "Body over MINDROUTE_API_MAX_BODY_BYTES",
    429: "The provider's rate limit (retry-after passed on)",
    502: "The provider failed",
    503: "MindRoute's database is unavailable; retry (retry-after given)",
    504: "The provider did not answer in time",
}


def _typed_schema(field: RequestField, json_type: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": json_type}
    if json_type in ("integer", "number"):
        if field.minimum is not None:
            schema["minimum"] = field.minimum
        if field.maximum is not None:
            schema["maximum"] = field.maximum
    elif json_type == "array":
        if field.items is not None:
            schema["items"] = {"type": field.items}
        if field.min_items is not None:
            schema["minItems"] = field.min_items
        if field.max_items is not None:
            schema["maxItems"] = field.max_items
    elif json_type == "object" and field.properties:
        schema["properties"] = {inner.name: field_schema(inner) for inner in field.properties}
    if field.const is not None:
        schema["const"] = field.const
    return schema


def field_schema(field: RequestField) -> dict[str, Any]:
    """The JSON Schema of one request field: its type (or types, as oneOf), constraints and description."""
    if isinstance(field.json_type, str):
        schema = _typed_schema(field, field.json_type)
    else:
        schema = {"oneOf": [_typed_schema(field, json_type) for json_type in field.json_type]}
    schema["description"] = field.description
    return schema


def chat_request_schema() -> dict[str, Any]:
    """The chat request body's JSON Schema, from REQUEST_FIELDS."""
    return {
        "type": "object",
        "required": [field.name for field in REQUEST_FIELDS if field.required],
        "properties": {field.name: field_schema(field) for field in REQUEST_FIELDS},
        "description": "Other OpenAI fields are ignored, except " + ", ".join(REFUSED_FIELDS) + ": refused (400)",
    }


def _errors(*statuses: int) -> dict[str, Any]:
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {str(s): {"description": _STATUS_TEXT[s], **ref} for s in statuses}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "MindRoute OpenAI-compatible API", "version": "1.0.0"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A MindRoute key (mr-...)"}},
        "schemas": {"Error": _ERROR_SCHEMA},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/chat/completions": {
            "post": {
                "summary": "Create a chat completion (OpenAI's request and response shapes; stream with SSE)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": chat_request_schema()}},
                },
                "responses": {
                    "200": {
                        "description": "A chat.completion, or chat.completion.chunk events ending with data: [DONE]",
                        "headers": {OVERHEAD_HEADER: {"schema": {"type": "number"}}},
                        "content": {"application/json": {}, "text/event-stream": {}},
                    },
                    **_errors(400, 401, 403, 404, 413, 429, 502, 503, 504),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The models the key's owner may use, as <provider name>/<model>",
                "responses": {"200": {"description": "OpenAI's model list"}, **_errors(401, 503)},
            }
        },
        "/v1/models/{model}": {
            "get": {
                "summary": "One model the key's owner may use, by its id (<provider name>/<model>; the id's / as is)",
                "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OpenAI's model object"}, **_errors(401, 404, 503)},
            }
        },
        "/v1/openapi.json": {
            "get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}
        },
    },
}


async def openapi_route(_request: Request) -> Response:
    """GET /v1/openapi.json: this document."""
    return JSONResponse(OPENAPI)
