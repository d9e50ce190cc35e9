"""A local Anthropic Messages server that checks what the real API checks."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.providers.fake_base import (
    _INVALID,
    ANTHROPIC_KEY,
    COMPLETION_TOKENS,
    ENDLESS_EVENT_GAP_S,
    ENDLESS_EVENTS,
    PROMPT_TOKENS,
    SLOW_FIRST_BYTE_S,
    FakeProvider,
    Received,
    Reply,
    _is_base64,
    _last_user_text,
    answer_pieces,
    example_from_schema,
    sse,
    tool_results_answer,
)

# --- Anthropic Messages ---------------------------------------------------------------------

_ANTHROPIC_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"
# The top-level fields of a Messages request; output_format (and a tool's strict) only with the structured-outputs beta.
_TOP_LEVEL_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_k",
        "top_p",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
    }
)
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_TOOL_FIELDS = frozenset({"type", "name", "description", "input_schema", "cache_control"})
_TOOL_CHOICE_FIELDS = {
    "auto": {"type", "disable_parallel_tool_use"},
    "any": {"type", "disable_parallel_tool_use"},
    "tool": {"type", "name", "disable_parallel_tool_use"},
    "none": {"type"},
}
_THINKING_TEXT = "Let me think about that."


class FakeAnthropic(FakeProvider):
    """POST /v1/messages with x-api-key (or Bearer, as the newer SDK sends) and anthropic-version."""

    def __init__(self, key: str = ANTHROPIC_KEY) -> None:
        super().__init__(key)
        self.calls_made = 0  # numbers the tool_use ids: toolu_fake1, toolu_fake2, ...

    def error(self, status: int, kind: str, message: str, **headers: str) -> Reply:
        body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CFake"}
        return Reply(status=status, json_body=body, headers=dict(headers))

    def handle(self, req: Received) -> Reply:
        if req.method != "POST" or req.path != "/v1/messages":
            return self.error(404, "not_found_error", "Not Found")
        given = req.headers.get("x-api-key") or req.headers.get("authorization", "").removeprefix("Bearer ")
        if not given:
            return self.error(401, "authentication_error", "x-api-key header is required")
        if given != self.key:
            return self.error(401, "authentication_error", "invalid x-api-key")
        if not req.headers.get("anthropic-version"):
            return self.error(400, "invalid_request_error", "anthropic-version: header is required")
        problem = self.check_body(req.body, req.headers.get("anthropic-beta", ""))
        if problem:
            return self.error(400, "invalid_request_error", problem)
        body = req.body
        model = body["model"]
        stream = body.get("stream") is True
        scenario = self.scenario(model, given, stream)
        if scenario is not None:
            return scenario
        thinking = (body.get("thinking") or {}).get("type") == "enabled"
        calls = self.tool_calls(body)
        if calls:
            if not stream:
                content = [{"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in calls]
                return self.message(model, content, "tool_use", thinking)
            return Reply(events=self.tool_stream_events(model, calls, thinking))
        pieces = self.answer_pieces(body)
        if not stream:
            return self.message(model, [{"type": "text", "text": "".join(pieces)}], "end_turn", thinking)
        return Reply(events=self.stream_events(model, pieces, thinking=thinking))

    # -- the model --

    def tool_calls(self, body: dict[str, Any]) -> list[tuple[str, str, Any]]:
        """(id, name, input) of the calls the model makes: none once the last message holds tool results."""
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {"type": "auto"}
        if not tools or choice["type"] == "none" or _tool_results(body["messages"][-1]):
            return []
        if choice["type"] == "tool":
            chosen = [next(tool for tool in tools if tool["name"] == choice["name"])]
        elif body["model"] == "parallel-tools" and not choice.get("disable_parallel_tool_use"):
            chosen = tools[:2]
        else:
            chosen = tools[:1]
        calls = []
        for tool in chosen:
            self.calls_made += 1
            calls.append((f"toolu_fake{self.calls_made}", tool["name"], example_from_schema(tool["input_schema"])))
        return calls

    def answer_pieces(self, body: dict[str, Any]) -> list[str]:
        """The answer text in the pieces it streams: the tool results' answer, the schema's example, or the echo."""
        results = _tool_results(body["messages"][-1])
        if results:
            text = tool_results_answer(results)
        elif body.get("output_format") is not None:
            text = json.dumps(example_from_schema(body["output_format"]["schema"]))
        else:
            return answer_pieces(_last_user_text(body["messages"], self._text_of))
        return [text[: len(text) // 2], text[len(text) // 2 :]]

    @staticmethod
    def message(model: str, content: list[dict[str, Any]], stop_reason: str, thinking: bool) -> Reply:
        if thinking:
            content = [{"type": "thinking", "thinking": _THINKING_TEXT, "signature": "sigFake=="}, *content]
        return Reply(
            json_body={
                "id": "msg_01Fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": PROMPT_TOKENS,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": COMPLETION_TOKENS,
                    "service_tier": "standard",
                },
            }
        )

    def scenario(self, model: str, given_key: str, stream: bool) -> Reply | None:
        if model == "error-400":
            return self.error(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")
        if model == "error-403":
            return self.error(
                403, "permission_error", "Your API key does not have permission to use the specified resource."
            )
        if model == "error-404":
            return self.error(404, "not_found_error", f"model: {model}")
        if model == "error-429":
            return self.error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit; please try again later.",
                **{"retry-after": "30"},
            )
        if model == "error-500":
            return self.error(500, "api_error", "Internal server error")
        if model == "error-529":
            return self.error(529, "overloaded_error", "Overloaded")
        if model == "echo-key":
            return self.error(400, "invalid_request_error", f"x-api-key {given_key} is not valid for this workspace")
        if model == "malformed" and not stream:
            return Reply(raw=b'{"id": "msg_01", "content": [{"type": "text", "te')
        if model == "slow":
            return Reply(json_body={}, delay_s=SLOW_FIRST_BYTE_S)
        if not stream:
            return None
        if model == "malformed":
            return Reply(
                events=[*self.stream_events(model, ["Hel"])[:3], b"event: content_block_delta\ndata: {oops\n\n"]
            )
        if model == "cutoff":
            return Reply(events=self.stream_events(model, ["Hello", " there"])[:5], cut_off=True)
        if model == "stream-error":
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            return Reply(events=[*self.stream_events(model, ["Hello"])[:4], sse(error, "error")])
        if model == "endless":
            return Reply(events=self.stream_events(model, ["tick "] * ENDLESS_EVENTS), event_gap_s=ENDLESS_EVENT_GAP_S)
        return None

    @staticmethod
    def _message_start(model: str) -> bytes:
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_01Fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": PROMPT_TOKENS,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1,
                },
            },
        }
        return sse(start, "message_start")

    @staticmethod
    def _thinking_block(index: int) -> list[bytes]:
        return [
            sse(
                {"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": ""}},
                "content_block_start",
            ),
            sse(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "thinking_delta", "thinking": _THINKING_TEXT},
                },
                "content_block_delta",
            ),
            sse(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": "sigFake=="},
                },
                "content_block_delta",
            ),
            sse({"type": "content_block_stop", "index": index}, "content_block_stop"),
        ]

    @staticmethod
    def _message_end(stop_reason: str) -> list[bytes]:
        return [
            sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": COMPLETION_TOKENS},
                },
                "message_delta",
            ),
            sse({"type": "message_stop"}, "message_stop"),
        ]

    @classmethod
    def stream_events(cls, model: str, pieces: list[str], thinking: bool = False) -> list[bytes]:
        events = [cls._message_start(model)]
        index = 0
        if thinking:
            events += cls._thinking_block(0)
            index = 1
        events += [
            sse(
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            ),
            sse({"type": "ping"}, "ping"),
        ]
        for piece in pieces:
            delta = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
            events.append(sse(delta, "content_block_delta"))
        events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        return events + cls._message_end("end_turn")

    @classmethod
    def tool_stream_events(cls, model: str, calls: list[tuple[str, str, Any]], thinking: bool) -> list[bytes]:
        """Each call as Anthropic streams it: a tool_use block with an empty input, an empty input_json_delta,
        the arguments' JSON text in two fragments (none for an empty input), the block's stop."""
        events = [cls._message_start(model), sse({"type": "ping"}, "ping")]
        offset = 0
        if thinking:
            events += cls._thinking_block(0)
            offset = 1
        for n, (call_id, name, arguments) in enumerate(calls):
            index = n + offset
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            events.append(
                sse({"type": "content_block_start", "index": index, "content_block": block}, "content_block_start")
            )
            text = json.dumps(arguments) if arguments else ""
            middle = len(text) // 2
            for fragment in ["", text[:middle], text[middle:]] if text else [""]:
                delta = {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": fragment},
                }
                events.append(sse(delta, "content_block_delta"))
            events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        return events + cls._message_end("tool_use")

    @classmethod
    def check_body(cls, body: Any, beta: str = "") -> str | None:
        if body is _INVALID or not isinstance(body, dict):
            return "There was an issue with your request: the body is not valid JSON"
        allowed = _TOP_LEVEL_FIELDS | ({"output_format"} if STRUCTURED_OUTPUTS_BETA in beta.split(",") else set())
        for name in body:
            if name not in allowed:
                return f"{name}: Extra inputs are not permitted"
        if not isinstance(body.get("model"), str):
            return "model: Field required"
        if not isinstance(body.get("max_tokens"), int):
            return "max_tokens: Field required"
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            return "system: Input should be a valid string"
        strict_allowed = "output_format" in allowed
        return (
            cls._check_options(body)
            or cls._check_tools(body.get("tools"), body.get("tool_choice"), strict_allowed)
            or cls._check_messages(body.get("messages"))
        )

    @staticmethod
    def _check_options(body: dict[str, Any]) -> str | None:
        metadata = body.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, dict):
                return "metadata: Input should be a valid dictionary"
            for name in metadata:
                if name != "user_id":
                    return f"metadata.{name}: Extra inputs are not permitted"
            if not isinstance(metadata.get("user_id", ""), str | None):
                return "metadata.user_id: Input should be a valid string"
        if "top_k" in body and (not isinstance(body["top_k"], int) or body["top_k"] < 0):
            return "top_k: Input should be a valid integer greater than or equal to 0"
        thinking = body.get("thinking")
        if thinking is not None:
            if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
                return "thinking: Input tag does not match any of the expected tags: 'enabled', 'disabled'"
            if thinking["type"] == "enabled":
                budget = thinking.get("budget_tokens")
                if not isinstance(budget, int):
                    return "thinking.enabled.budget_tokens: Field required"
                if budget < 1024:
                    return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                if budget >= body["max_tokens"]:
                    return "`max_tokens` must be greater than `thinking.budget_tokens`"
                problem = _thinking_conflict(body)
                if problem:
                    return problem
        output_format = body.get("output_format")
        if output_format is not None:
            if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
                return "output_format.type: Input should be 'json_schema'"
            schema = output_format.get("schema")
            if not isinstance(schema, dict):
                return "output_format.schema: Field required"
            for name in output_format:
                if name not in ("type", "schema"):
                    return f"output_format.{name}: Extra inputs are not permitted"
        return None

    @staticmethod
    def _check_tools(tools: Any, choice: Any, strict_allowed: bool = False) -> str | None:
        if tools is not None:
            if not isinstance(tools, list):
                return "tools: Input should be a valid list"
            names = set()
            for i, tool in enumerate(tools):
                where = f"tools.{i}.custom"
                if not isinstance(tool, dict):
                    return f"tools.{i}: Input should be a valid dictionary"
                for name in tool:
                    if name not in _TOOL_FIELDS and not (name == "strict" and strict_allowed):
                        return f"{where}.{name}: Extra inputs are not permitted"
                if not isinstance(tool.get("name"), str) or not _TOOL_NAME.match(tool["name"]):
                    return f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
                if tool["name"] in names:
                    return "tools: Tool names must be unique."
                names.add(tool["name"])
                if "description" in tool and not isinstance(tool["description"], str):
                    return f"{where}.description: Input should be a valid string"
                schema = tool.get("input_schema")
                if not isinstance(schema, dict):
                    return f"{where}.input_schema: Field required"
                if schema.get("type") != "object":
                    return f"{where}.input_schema.type: Input should be 'object'"
        if choice is None:
            return None
        if not tools:
            return "tool_choice: tool_choice may only be specified while providing tools"
        if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICE_FIELDS:
            return "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
        kind = choice["type"]
        for name in choice:
            if name not in _TOOL_CHOICE_FIELDS[kind]:
                return f"tool_choice.{kind}.{name}: Extra inputs are not permitted"
        if "disable_parallel_tool_use" in choice and not isinstance(choice["disable_parallel_tool_use"], bool):
            return f"tool_choice.{kind}.disable_parallel_tool_use: Input should be a valid boolean"
        if kind == "tool" and choice.get("name") not in {tool["name"] for tool in tools}:
            return f"tool_choice.tool.name: Tool '{choice.get('name')}' not found in tools"
        return None

    @classmethod
    def _check_messages(cls, messages: Any) -> str | None:
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        pending: set[str] = set()  # the previous assistant message's tool_use ids
        for i, message in enumerate(messages):
            role = message.get("role")
            if role == "system":
                return (
                    'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                    'parameter, not "system" as an input message role.'
                )
            if role not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
            if i == 0 and role != "user":
                return 'messages: first message must use the "user" role'
            if i > 0 and messages[i - 1].get("role") == role:
                return f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" roles in a row'  # noqa: E501
            content = message.get("content")
            if isinstance(content, str):
                blocks: list[Any] = []
            elif isinstance(content, list):
                blocks = content
            else:
                return f"messages.{i}.content: Input should be a valid list"
            problem = cls._check_blocks(i, role, blocks, pending)
            if problem:
                return problem
            if role == "user" and pending:
                ids = ", ".join(sorted(pending))
                return f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after: {ids}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."  # noqa: E501
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"} if role == "assistant" else set()
        return None

    @staticmethod
    def _check_blocks(i: int, role: str, blocks: list[Any], pending: set[str]) -> str | None:
        """One message's content blocks; `pending` loses the tool_use ids a tool_result here answers."""
        for j, block in enumerate(blocks):
            where = f"messages.{i}.content.{j}"
            kind = block.get("type")
            source = block.get("source") or {}
            if kind == "text":
                if not block.get("text"):
                    return f"{where}.text: text content blocks must be non-empty"
            elif kind == "image":
                if source.get("type") != "base64" or source.get("media_type") not in _ANTHROPIC_IMAGE_TYPES:
                    return f"{where}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"  # noqa: E501
                if not _is_base64(source.get("data")):
                    return f"{where}.image.source.base64: invalid base64 data"
            elif kind == "document":
                if source.get("type") == "base64" and source.get("media_type") == "application/pdf":
                    if not _is_base64(source.get("data")):
                        return f"{where}.document.source.base64: invalid base64 data"
                elif source.get("type") == "text" and source.get("media_type") == "text/plain":
                    if not isinstance(source.get("data"), str):
                        return f"{where}.document.source.text.data: Input should be a valid string"
                else:
                    return f"{where}.document.source: Input tag '{source.get('type')}' does not match"
            elif kind == "tool_use":
                if role != "assistant":
                    return f"{where}: tool_use blocks can only be in assistant messages"
                if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                    return f"{where}.tool_use: id and name are required"
                if not isinstance(block.get("input"), dict):
                    return f"{where}.tool_use.input: Input should be a valid dictionary"
            elif kind == "tool_result":
                if role != "user":
                    return f"{where}: tool_result blocks can only be in user messages"
                call_id = block.get("tool_use_id")
                if call_id not in pending:
                    return f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {call_id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."  # noqa: E501
                pending.discard(call_id)
                content = block.get("content", "")
                if not isinstance(content, str | list):
                    return f"{where}.tool_result.content: Input should be a valid string or list"
            else:
                return f"{where}: Input tag '{kind}' found using 'type' does not match any of the expected tags"
        return None

    @staticmethod
    def _text_of(message: dict[str, Any]) -> str:
        content = message.get("content")
        if isinstance(content, str):
            return content
        return "".join(block.get("text", "") for block in content if block.get("type") == "text")


def _thinking_conflict(body: dict[str, Any]) -> str | None:
    """What the API refuses alongside enabled thinking."""
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    if body.get("temperature", 1) != 1:
        return "`temperature` may only be set to 1 when thinking is enabled."
    if "top_k" in body:
        return "`top_k` must be unset when thinking is enabled."
    if not 0.95 <= body.get("top_p", 1) <= 1:
        return "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled."
    messages = body.get("messages") or []
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "assistant":
            content = messages[i].get("content")
            first = content[0].get("type") if isinstance(content, list) and content else "text"
            uses_tools = isinstance(content, list) and any(b.get("type") == "tool_use" for b in content)
            if uses_tools and i == len(messages) - 2 and first not in ("thinking", "redacted_thinking"):
                return (
                    f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. "
                    "When `thinking` is enabled, a final `assistant` message must start with a thinking block."
                )
            break
    return None


def _tool_results(message: dict[str, Any]) -> list[str]:
    """The texts of a user message's tool_result blocks, in order (none: it is not a tool-results turn)."""
    content = message.get("content")
    if message.get("role") != "user" or not isinstance(content, list):
        return []
    results = []
    for block in content:
        if block.get("type") == "tool_result":
            inner = block.get("content", "")
            results.append(inner if isinstance(inner, str) else "".join(b.get("text", "") for b in inner))
    return results
