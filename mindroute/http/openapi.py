"""The API's OpenAPI 3.1 description (served at /v1/openapi.json); the chat request's schema is generated
from the parser's own field table (chat_request.REQUEST_FIELDS), so the document and the checks agree."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mindroute.http.answers import OVERHEAD_HEADER
from mindroute.http.chat_fields import REFUSED_FIELDS, REQUEST_FIELDS, RequestField

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
    elif json_type == "string":
        if field.enum is not None:
            schema["enum"] = [value for value in field.enum if isinstance(value, str)]
        if field.pattern is not None:
            schema["pattern"] = field.pattern
        if field.max_length is not None:
            schema["maxLength"] = field.max_length
    elif json_type == "array":
        if isinstance(field.items, RequestField):
            schema["items"] = field_schema(field.items)
        elif field.items is not None:
            schema["items"] = {"type": field.items}
        if field.min_items is not None:
            schema["minItems"] = field.min_items
        if field.max_items is not None:
            schema["maxItems"] = field.max_items
    elif json_type == "object":
        if field.properties:
            schema["properties"] = {inner.name: field_schema(inner) for inner in field.properties}
            required = [inner.name for inner in field.properties if inner.required]
            if required:
                schema["required"] = required
        if field.values is not None:
            schema["additionalProperties"] = field_schema(field.values)
        if field.max_properties is not None:
            schema["maxProperties"] = field.max_properties
    if field.const is not None and _is_json_type(field.const, json_type):
        schema["const"] = field.const
    return schema


def _is_json_type(value: Any, json_type: str) -> bool:
    return (json_type == "string") == isinstance(value, str)


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
        "additionalProperties": True,
        "description": "A field not listed here is kept as sent: OpenAI-protocol providers receive it (an "
        "openai-compatible server's extensions), the other protocols refuse it (400, param naming it), as they "
        "refuse a listed field they cannot carry. Null is the same as absent. "
        + ", ".join(REFUSED_FIELDS)
        + ": refused (400), use tools and tool_choice",
    }


_TOOL_CALL_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string", "const": "function"},
        "function": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "arguments": {"type": "string", "description": "JSON text"}},
            "required": ["name", "arguments"],
        },
    },
    "required": ["id", "type", "function"],
}
_TOOL_CALL_DELTA_SCHEMA = {
    "type": "object",
    "description": "A piece of a call: index, id, type and function.name on its first piece, then fragments of "
    "function.arguments to append",
    "properties": {
        "index": {"type": "integer", "minimum": 0},
        "id": {"type": "string"},
        "type": {"type": "string", "const": "function"},
        "function": {"type": "object", "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}}},
    },
    "required": ["index"],
}
_USAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
}
_FINISH = {"type": ["string", "null"], "enum": ["stop", "length", "tool_calls", "content_filter", None]}
_COMPLETION_SCHEMA = {
    "type": "object",
    "description": "The whole answer: one choice per n",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "const": "chat.completion"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "message": {
                        "type": "object",
                        "properties": {
                            "role": {"type": "string", "const": "assistant"},
                            "content": {"type": ["string", "null"]},
                            "refusal": {"type": ["string", "null"]},
                            "tool_calls": {"type": "array", "items": {"$ref": "#/components/schemas/ToolCall"}},
                        },
                    },
                    "logprobs": {"type": ["object", "null"]},
                    "finish_reason": _FINISH,
                },
            },
        },
        "usage": {"$ref": "#/components/schemas/Usage"},
    },
}
_CHUNK_SCHEMA = {
    "type": "object",
    "description": "One server-sent event of a streamed answer",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "const": "chat.completion.chunk"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "delta": {
                        "type": "object",
                        "properties": {
                            "role": {"type": "string"},
                            "content": {"type": ["string", "null"]},
                            "tool_calls": {"type": "array", "items": {"$ref": "#/components/schemas/ToolCallDelta"}},
                        },
                    },
                    "logprobs": {"type": ["object", "null"]},
                    "finish_reason": _FINISH,
                },
            },
        },
        "usage": {"oneOf": [{"$ref": "#/components/schemas/Usage"}, {"type": "null"}]},
    },
}
_TOKENS = {"type": "array", "items": {"type": "integer"}, "minItems": 1}
EMBEDDINGS_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": {"type": "string", "description": "<provider name>/<model>, or a bare model"},
        "input": {
            "description": "What to embed: a string, strings, a token list or token lists (token lists: "
            "OpenAI-protocol providers only); not empty, at most 2048 items",
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2048},
                _TOKENS,
                {"type": "array", "items": _TOKENS, "minItems": 1, "maxItems": 2048},
            ],
        },
        "dimensions": {"type": "integer", "minimum": 1, "description": "The vectors' length, when the model can"},
        "encoding_format": {
            "type": "string",
            "enum": ["float", "base64"],
            "description": "float (the default): lists of numbers; base64: little-endian float32 bytes",
        },
        "user": {"type": "string", "description": "Your own id for the end user"},
    },
}
EMBEDDINGS_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "object": {"type": "string", "const": "list"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "object": {"type": "string", "const": "embedding"},
                    "index": {"type": "integer"},
                    "embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]},
                },
                "required": ["object", "index", "embedding"],
            },
        },
        "model": {"type": "string"},
        "usage": {
            "type": "object",
            "properties": {"prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}},
        },
    },
}
COMPLETIONS_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model", "prompt"],
    "additionalProperties": True,
    "description": "OpenAI's legacy completions: OpenAI-protocol providers only (others: 400 naming model, use "
    "/v1/chat/completions); the body is passed on as sent, with the routed model",
    "properties": {
        "model": {"type": "string", "description": "<provider name>/<model>, or a bare model"},
        "prompt": {
            "description": "The text to continue: a string, strings, a token list or token lists",
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}},
                _TOKENS,
                {"type": "array", "items": _TOKENS},
            ],
        },
        "stream": {"type": "boolean", "description": "Answer with text_completion events (SSE) ending with [DONE]"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "max_tokens": {"type": "integer", "minimum": 0},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "n": {"type": "integer", "minimum": 1},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
        "suffix": {"type": "string"},
        "echo": {"type": "boolean"},
        "best_of": {"type": "integer"},
        "logprobs": {"type": "integer", "minimum": 0, "maximum": 5},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "logit_bias": {"type": "object", "additionalProperties": {"type": "number"}},
        "seed": {"type": "integer"},
        "user": {"type": "string"},
    },
}


def _errors(*statuses: int) -> dict[str, Any]:
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {str(s): {"description": _STATUS_TEXT[s], **ref} for s in statuses}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "MindRoute OpenAI-compatible API", "version": "1.0.0"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A MindRoute key (mr-...)"}},
        "schemas": {
            "Error": _ERROR_SCHEMA,
            "ToolCall": _TOOL_CALL_SCHEMA,
            "ToolCallDelta": _TOOL_CALL_DELTA_SCHEMA,
            "Usage": _USAGE_SCHEMA,
            "ChatCompletion": _COMPLETION_SCHEMA,
            "ChatCompletionChunk": _CHUNK_SCHEMA,
        },
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
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletion"}},
                            "text/event-stream": {"schema": {"$ref": "#/components/schemas/ChatCompletionChunk"}},
                        },
                    },
                    **_errors(400, 401, 403, 404, 413, 429, 502, 503, 504),
                },
            }
        },
        "/v1/embeddings": {
            "post": {
                "summary": "Create embeddings (OpenAI's shapes; OpenAI-protocol and Google providers)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": EMBEDDINGS_REQUEST_SCHEMA}},
                },
                "responses": {
                    "200": {
                        "description": "The vectors, in the order of the input",
                        "content": {"application/json": {"schema": EMBEDDINGS_RESPONSE_SCHEMA}},
                    },
                    **_errors(400, 401, 403, 404, 413, 429, 502, 503, 504),
                },
            }
        },
        "/v1/completions": {
            "post": {
                "summary": "Create a legacy text completion (OpenAI-protocol providers only)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": COMPLETIONS_REQUEST_SCHEMA}},
                },
                "responses": {
                    "200": {
                        "description": "A text_completion, or text_completion events ending with data: [DONE]",
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
