"""A local OpenAI Chat Completions server that checks what the real API checks."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tests.providers.fake_base import (
    _INVALID,
    COMPLETION_TOKENS,
    ENDLESS_EVENT_GAP_S,
    ENDLESS_EVENTS,
    OPENAI_KEY,
    PROMPT_TOKENS,
    SLOW_FIRST_BYTE_S,
    FakeProvider,
    Received,
    Reply,
    _is_base64,
    _last_user_text,
    answer_pieces,
    example_from_schema,
    expected_answer,
    sse,
    tool_results_answer,
)

# --- OpenAI Chat Completions ----------------------------------------------------------------

# Every request field of today's Chat Completions reference; anything else is refused as OpenAI does.
_OPENAI_PARAMS = {
    "model",
    "messages",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
}
# What a vLLM/Ollama-like compatible server also takes (its sampling extensions).
_COMPATIBLE_PARAMS = {"top_k", "min_p", "repetition_penalty"}
_MESSAGE_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "audio", "function_call"}
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ENUMS = {
    "reasoning_effort": ("none", "minimal", "low", "medium", "high", "xhigh"),
    "service_tier": ("auto", "default", "flex", "scale", "priority"),
    "verbosity": ("low", "medium", "high"),
}
REFUSAL = "I'm sorry, I can't help with that."


@dataclass
class _Answer:
    """One choice the fake's model writes: text in pieces, or tool calls (id, name, arguments), or a refusal."""

    pieces: list[str]
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    refusal: bool = False

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.calls else "stop"


def _halves(text: str) -> list[str]:
    """A text in two pieces (at least), as a streamed answer would split it."""
    middle = max(1, len(text) // 2)
    return [text[:middle], text[middle:]] if len(text) > 1 else [text]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _token_logprob(token: str, place: int, top: int) -> dict[str, Any]:
    logprob = round(-0.25 * (place + 1), 4)
    alternatives = [
        {"token": token if k == 0 else f"{token}~{k}", "logprob": logprob - k, "bytes": list(token.encode())}
        for k in range(top)
    ]
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": alternatives}


def _openai_masked(key: str) -> str:
    # How OpenAI's 401 echoes a wrong key: its start, asterisks, its last 4 characters.
    return key[:8] + "*" * max(len(key) - 12, 3) + key[-4:]


class FakeOpenAI(FakeProvider):
    """POST /v1/chat/completions with Bearer auth; `report_usage=False` is a compatible server that counts nothing."""

    def __init__(self, key: str | None = OPENAI_KEY, report_usage: bool = True) -> None:
        super().__init__(key)
        self.report_usage = report_usage

    def error(self, status: int, message: str, kind: str, code: str | None = None, **headers: str) -> Reply:
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return Reply(status=status, json_body=body, headers=dict(headers))

    def handle(self, req: Received) -> Reply:
        if req.method != "POST" or req.path != "/v1/chat/completions":
            return self.error(404, f"Invalid URL ({req.method} {req.path})", "invalid_request_error")
        auth = req.headers.get("authorization", "")
        if self.key is not None:
            if not auth.startswith("Bearer "):
                return self.error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                )
            given = auth.removeprefix("Bearer ")
            if given != self.key:
                return self.error(
                    401,
                    f"Incorrect API key provided: {_openai_masked(given)}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    "invalid_api_key",
                )
        problem = self.check_body(req.body)
        if problem:
            return self.error(400, problem, "invalid_request_error")
        body = req.body
        model = body["model"]
        stream = body.get("stream") is True
        user_text = _last_user_text(body["messages"], self._text_of)
        scenario = self.scenario(model, auth.removeprefix("Bearer "), stream)
        if scenario is not None:
            return scenario
        include_usage = self.report_usage and stream and (body.get("stream_options") or {}).get("include_usage")
        answers = self.answers(body, user_text)
        top = body.get("top_logprobs") or 0 if body.get("logprobs") is True else None
        if stream:
            return Reply(events=self.choice_events(model, answers, bool(include_usage), top))
        result: dict[str, Any] = {
            "id": "chatcmpl-fake123",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [self.whole_choice(i, answer, top) for i, answer in enumerate(answers)],
            "system_fingerprint": "fp_fake",
        }
        if self.report_usage:
            result["usage"] = {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            }
        return Reply(json_body=result)

    # -- the model --

    def answers(self, body: dict[str, Any], user_text: str) -> list[_Answer]:
        """The `n` choices (the same answer each time, the calls' ids counted across them)."""
        count = body.get("n") or 1
        answers = [self.answer(body, user_text) for _ in range(count)]
        number = 0
        for answer in answers:
            for k, (_, name, arguments) in enumerate(answer.calls):
                number += 1
                answer.calls[k] = (f"call_fake{number}", name, arguments)
        return answers

    def answer(self, body: dict[str, Any], user_text: str) -> _Answer:
        """The common brief's model: tool calls, tool results answered, schema examples, else the echo."""
        messages = body["messages"]
        if body["model"] == "refuse":
            return _Answer(_halves(REFUSAL), refusal=True)
        results: list[str] = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            results.insert(0, self._text_of(message))
        functions = [tool["function"] for tool in body.get("tools") or [] if tool.get("type") == "function"]
        choice = body.get("tool_choice", "auto")
        if functions and choice != "none" and not results:
            if isinstance(choice, dict) and choice.get("type") == "function":
                chosen = [f for f in functions if f["name"] == choice["function"]["name"]]
            elif body["model"] == "parallel-tools" and body.get("parallel_tool_calls") is not False:
                chosen = functions[:2]
            else:
                chosen = functions[:1]
            calls = [
                ("", f["name"], json.dumps(example_from_schema(f.get("parameters") or {"type": "object"})))
                for f in chosen
            ]
            return _Answer([], calls)
        if results:
            return _Answer(_halves(tool_results_answer(results)))
        response_format = body.get("response_format") or {}
        if response_format.get("type") == "json_schema":
            return _Answer(_halves(json.dumps(example_from_schema(response_format["json_schema"]["schema"]))))
        if response_format.get("type") == "json_object":
            return _Answer(_halves(json.dumps({"answer": expected_answer(user_text)})))
        return _Answer(answer_pieces(user_text))

    @staticmethod
    def logprobs(pieces: list[str], top: int | None) -> dict[str, Any] | None:
        if top is None:
            return None
        return {"content": [_token_logprob(piece, i, top) for i, piece in enumerate(pieces)], "refusal": None}

    def whole_choice(self, index: int, answer: _Answer, top: int | None) -> dict[str, Any]:
        text = "".join(answer.pieces)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if answer.calls or answer.refusal else text,
            "refusal": text if answer.refusal else None,
        }
        if answer.calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                for call_id, name, arguments in answer.calls
            ]
        return {
            "index": index,
            "message": message,
            "logprobs": self.logprobs(answer.pieces, top),
            "finish_reason": answer.finish_reason,
        }

    def scenario(self, model: str, given_key: str, stream: bool) -> Reply | None:
        if model == "error-400":
            return self.error(
                400,
                "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                "130000 tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                "context_length_exceeded",
            )
        if model == "error-403":
            return self.error(
                403,
                "Country, region, or territory not supported",
                "request_forbidden",
                "unsupported_country_region_territory",
            )
        if model == "error-404":
            return self.error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        if model == "error-429":
            return self.error(
                429,
                "Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): "
                "Limit 3, Used 3, Requested 1. Please try again in 20s.",
                "requests",
                "rate_limit_exceeded",
                **{"retry-after": "20"},
            )
        if model == "error-500":
            return self.error(
                500, "The server had an error while processing your request. Sorry about that!", "server_error"
            )
        if model == "echo-key":
            # A misbehaving proxy in front of a compatible server, repeating the header it got.
            return self.error(400, f"Invalid header value: Bearer {given_key} (from gateway)", "invalid_request_error")
        if model == "malformed" and not stream:
            return Reply(raw=b'{"id": "chatcmpl-1", "choices": [{"message": ')
        if model == "not-a-chat":
            return Reply(json_body={"object": "list", "data": []})
        if model == "slow":
            return Reply(json_body={}, delay_s=SLOW_FIRST_BYTE_S)
        if not stream:
            return None
        if model == "malformed":
            events = self.stream_events(model, ["Hel"], False)[:2]
            return Reply(events=[*events, b'data: {"choices": [{"delta": {"content": "lo\n\n'])
        if model == "cutoff":
            return Reply(events=self.stream_events(model, ["Hello", " there"], False)[:3], cut_off=True)
        if model == "stream-error":
            events = self.stream_events(model, ["Hello"], False)[:2]
            error = {
                "error": {"message": "The server had an error while processing your request.", "type": "server_error"}
            }
            return Reply(events=[*events, sse(error)])
        if model == "endless":
            return Reply(
                events=self.stream_events(model, ["tick "] * ENDLESS_EVENTS, True), event_gap_s=ENDLESS_EVENT_GAP_S
            )
        return None

    def stream_events(self, model: str, pieces: list[str], include_usage: bool) -> list[bytes]:
        """One text answer streamed: the role chunk, a chunk per piece, the finish, the usage, [DONE]."""
        return self.choice_events(model, [_Answer(pieces)], include_usage, None)

    def choice_events(self, model: str, answers: list[_Answer], include_usage: bool, top: int | None) -> list[bytes]:
        """Every choice streamed as OpenAI does: one choice per chunk, the choices' chunks interleaved."""

        def chunk(choices: list[Any], usage: Any = None) -> bytes:
            data: dict[str, Any] = {
                "id": "chatcmpl-fake123",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage:
                data["usage"] = usage  # null on every chunk but the last, as OpenAI sends it
            return sse(data)

        steps = [self.choice_deltas(answer, top) for answer in answers]
        events = []
        for step in range(max(len(deltas) for deltas in steps)):
            for index, deltas in enumerate(steps):
                if step < len(deltas):
                    delta, logprobs = deltas[step]
                    events.append(
                        chunk([{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}])
                    )
        for index, answer in enumerate(answers):
            events.append(
                chunk([{"index": index, "delta": {}, "logprobs": None, "finish_reason": answer.finish_reason}])
            )
        if include_usage:
            usage = {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            }
            events.append(chunk([], usage))
        events.append(sse("[DONE]"))
        return events

    def choice_deltas(self, answer: _Answer, top: int | None) -> list[tuple[dict[str, Any], Any]]:
        """One choice's deltas with their logprobs: the role first, then text (or refusal) pieces, or each
        call's head (index, id, type, name, arguments "") followed by its argument fragments."""
        if answer.calls:
            deltas: list[tuple[dict[str, Any], Any]] = []
            for position, (call_id, name, arguments) in enumerate(answer.calls):
                head = {
                    "index": position,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                first = {"role": "assistant", "content": None, "tool_calls": [head], "refusal": None}
                deltas.append((first if position == 0 else {"tool_calls": [head]}, None))
                deltas += [
                    ({"tool_calls": [{"index": position, "function": {"arguments": fragment}}]}, None)
                    for fragment in _halves(arguments)
                ]
            return deltas
        field_name = "refusal" if answer.refusal else "content"
        role = {
            "role": "assistant",
            "content": None if answer.refusal else "",
            "refusal": "" if answer.refusal else None,
        }
        logprobs = self.logprobs(answer.pieces, top)
        return [
            (role, None),
            *(
                (
                    {field_name: piece},
                    None if logprobs is None else {"content": [logprobs["content"][i]], "refusal": None},
                )
                for i, piece in enumerate(answer.pieces)
            ),
        ]

    @staticmethod
    def _text_of(message: dict[str, Any]) -> str:
        content = message.get("content")
        if isinstance(content, str):
            return content
        if not isinstance(content, list):
            return ""
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")

    def check_body(self, body: Any) -> str | None:
        if body is _INVALID or not isinstance(body, dict):
            return "We could not parse the JSON body of your request."
        known = _OPENAI_PARAMS | (_COMPATIBLE_PARAMS if self.key is None else set())
        unknown = sorted(set(body) - known)
        if unknown:
            return f"Unrecognized request argument supplied: {unknown[0]}"
        if not isinstance(body.get("model"), str):
            return "you must provide a model parameter"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "[] is too short - 'messages'"
        if "stream_options" in body and body.get("stream") is not True:
            return "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        return self.check_fields(body) or self.check_tools(body) or self.check_messages(messages) or None

    @staticmethod
    def check_fields(body: dict[str, Any]) -> str | None:
        """The sampling and other options' types and ranges, as the reference gives them."""
        for name, low, high in (
            ("temperature", 0, 2),
            ("top_p", 0, 1),
            ("presence_penalty", -2, 2),
            ("frequency_penalty", -2, 2),
        ):
            value = body.get(name)
            if value is not None and (not _number(value) or not low <= value <= high):
                return f"Invalid '{name}': expected a number between {low} and {high}, got {value!r}."
        for name in ("n", "seed", "top_logprobs", "max_tokens", "max_completion_tokens", "top_k"):
            value = body.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                return f"Invalid type for '{name}': expected an integer, but got {type(value).__name__} instead."
        n = body.get("n")
        if n is not None and not 1 <= n <= 128:
            return f"Invalid 'n': integer above maximum value. Expected a value <= 128, but got {n} instead."
        for name in ("logprobs", "store", "parallel_tool_calls"):
            if body.get(name) is not None and not isinstance(body[name], bool):
                return f"Invalid type for '{name}': expected a boolean, but got {type(body[name]).__name__} instead."
        top = body.get("top_logprobs")
        if top is not None:
            if not 0 <= top <= 20:
                return f"Invalid 'top_logprobs': expected a value between 0 and 20, but got {top} instead."
            if top > 0 and body.get("logprobs") is not True:
                return "Invalid value for 'top_logprobs': 'logprobs' must be set to true"
        bias = body.get("logit_bias")
        if bias is not None:
            if not isinstance(bias, dict):
                return "Invalid type for 'logit_bias': expected an object."
            for token, value in bias.items():
                if not token.isdigit() or not _number(value) or not -100 <= value <= 100:
                    return f"Invalid 'logit_bias': {token!r}: {value!r} is not a token id and a bias in [-100, 100]."
        for name, allowed in _ENUMS.items():
            if body.get(name) is not None and body[name] not in allowed:
                return f"Invalid value: '{body[name]}'. Supported values are: {', '.join(map(repr, allowed))}."
        metadata = body.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
        ):
            return "Invalid 'metadata': expected an object of string values."
        for name in ("user", "prompt_cache_key", "safety_identifier"):
            if body.get(name) is not None and not isinstance(body[name], str):
                return f"Invalid type for '{name}': expected a string, but got {type(body[name]).__name__} instead."
        modalities = body.get("modalities")
        if modalities is not None and (
            not isinstance(modalities, list) or not set(modalities) <= {"text", "audio"} or not modalities
        ):
            return f"Invalid 'modalities': {modalities!r}. Supported values are: 'text' and 'audio'."
        if body.get("audio") is not None and "audio" not in (modalities or []):
            return "Invalid value for 'audio': 'audio' is only allowed when 'modalities' includes 'audio'."
        prediction = body.get("prediction")
        if prediction is not None and (not isinstance(prediction, dict) or prediction.get("type") != "content"):
            return "Invalid 'prediction': expected an object with type 'content'."
        for name in ("web_search_options", "audio"):
            if body.get(name) is not None and not isinstance(body[name], dict):
                return f"Invalid type for '{name}': expected an object."
        stop = body.get("stop")
        if stop is not None and not isinstance(stop, str) and (not isinstance(stop, list) or len(stop) > 4):
            return "Invalid 'stop': expected a string or an array of at most 4 strings."
        return FakeOpenAI.check_response_format(body)

    @staticmethod
    def check_response_format(body: dict[str, Any]) -> str | None:
        response_format = body.get("response_format")
        if response_format is None:
            return None
        if not isinstance(response_format, dict):
            return "Invalid type for 'response_format': expected an object."
        kind = response_format.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            return f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object' and 'json_schema'."
        if kind == "json_object":
            texts = " ".join(FakeOpenAI._text_of(m) for m in body["messages"] if isinstance(m, dict))
            if "json" not in texts.lower():
                return (
                    "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
                    "'json_object'."
                )
        if kind != "json_schema":
            return None
        schema = response_format.get("json_schema")
        if not isinstance(schema, dict):
            return "Missing required parameter: 'response_format.json_schema'."
        extra = sorted(set(schema) - {"name", "schema", "strict", "description"})
        if extra:
            return f"Unrecognized request argument supplied: response_format.json_schema.{extra[0]}"
        if not isinstance(schema.get("name"), str):
            return "Missing required parameter: 'response_format.json_schema.name'."
        if not _FUNCTION_NAME.match(schema["name"]):
            return "Invalid 'response_format.json_schema.name': string does not match pattern '^[a-zA-Z0-9_-]+$'."
        if not isinstance(schema.get("schema"), dict):
            return "Missing required parameter: 'response_format.json_schema.schema'."
        if schema.get("strict") is not None and not isinstance(schema["strict"], bool):
            return "Invalid type for 'response_format.json_schema.strict': expected a boolean."
        return None

    @staticmethod
    def check_tools(body: dict[str, Any]) -> str | None:
        tools = body.get("tools")
        names: list[str] = []
        if tools is not None:
            if not isinstance(tools, list) or not tools:
                return "[] is too short - 'tools'"
            for i, tool in enumerate(tools):
                where = f"tools[{i}]"
                kind = tool.get("type") if isinstance(tool, dict) else None
                if kind not in ("function", "custom"):
                    return f"Invalid value: '{kind}'. Supported values are: 'function' and 'custom'."
                spec = tool.get(kind)
                if not isinstance(spec, dict):
                    return f"Missing required parameter: '{where}.{kind}'."
                extra = sorted(set(tool) - {"type", kind})
                if extra:
                    return f"Unrecognized request argument supplied: {where}.{extra[0]}"
                name = spec.get("name")
                if not isinstance(name, str):
                    return f"Missing required parameter: '{where}.{kind}.name'."
                if not _FUNCTION_NAME.match(name):
                    return f"Invalid '{where}.{kind}.name': string does not match pattern '^[a-zA-Z0-9_-]+$'."
                if kind == "function":
                    extra = sorted(set(spec) - {"name", "description", "parameters", "strict"})
                    if extra:
                        return f"Unrecognized request argument supplied: {where}.function.{extra[0]}"
                    if spec.get("parameters") is not None and not isinstance(spec["parameters"], dict):
                        return f"Invalid type for '{where}.function.parameters': expected an object."
                    if spec.get("strict") is not None and not isinstance(spec["strict"], bool):
                        return f"Invalid type for '{where}.function.strict': expected a boolean."
                names.append(name)
        for name in ("tool_choice", "parallel_tool_calls"):
            if body.get(name) is not None and not tools:
                return f"Invalid value for '{name}': '{name}' is only allowed when 'tools' are specified."
        choice = body.get("tool_choice")
        if choice is None or choice in ("none", "auto", "required"):
            return None
        if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
            chosen = (choice.get(choice["type"]) or {}).get("name")
            if chosen not in names:
                return (
                    f"Invalid value for 'tool_choice': tool choice '{choice['type']}' has name '{chosen}', but no "
                    "such tool was found in 'tools'."
                )
            return None
        if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
            return None
        return f"Invalid value for 'tool_choice': {choice!r}. Supported values are: 'none', 'auto', 'required'."

    @staticmethod
    def check_messages(messages: list[Any]) -> str | None:
        open_calls: set[str] = set()  # the ids of the last assistant message's calls not answered yet
        answerable: set[str] = set()  # the ids a tool message may answer now
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                return f"Invalid type for 'messages[{i}]': expected an object."
            extra = sorted(set(message) - _MESSAGE_KEYS)
            if extra:
                return f"Additional properties are not allowed ('{extra[0]}' was unexpected) - 'messages.{i}'"
            role = message.get("role")
            if role not in ("system", "developer", "user", "assistant", "tool"):
                return f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'tool'."
            if role != "tool" and open_calls:
                return (
                    "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                    f"'tool_call_id'. The following tool_call_ids did not have response messages: "
                    f"{', '.join(sorted(open_calls))}"
                )
            if role != "tool":
                answerable = set()
            if message.get("name") is not None and not isinstance(message["name"], str):
                return f"Invalid type for 'messages[{i}].name': expected a string."
            if "tool_calls" in message and role != "assistant":
                return f"Additional properties are not allowed ('tool_calls' was unexpected) - 'messages.{i}'"
            if "tool_call_id" in message and role != "tool":
                return f"Additional properties are not allowed ('tool_call_id' was unexpected) - 'messages.{i}'"
            problem = None
            if role == "assistant":
                problem = FakeOpenAI.check_assistant(i, message)
                if problem is None and message.get("tool_calls"):
                    open_calls = {call["id"] for call in message["tool_calls"]}
                    answerable = set(open_calls)
            elif role == "tool":
                call_id = message.get("tool_call_id")
                if not isinstance(call_id, str):
                    return f"Missing required parameter: 'messages[{i}].tool_call_id'."
                if call_id not in answerable:
                    return (
                        f"Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                        f"with 'tool_calls' (messages[{i}].tool_call_id {call_id!r})."
                    )
                open_calls.discard(call_id)
            if problem is None:
                problem = FakeOpenAI.check_content(i, role, message.get("content"))
            if problem:
                return problem
        if open_calls:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: "
                f"{', '.join(sorted(open_calls))}"
            )
        return None

    @staticmethod
    def check_assistant(i: int, message: dict[str, Any]) -> str | None:
        calls = message.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list) or not calls:
                return f"[] is too short - 'messages[{i}].tool_calls'"
            for j, call in enumerate(calls):
                where = f"messages[{i}].tool_calls[{j}]"
                if not isinstance(call, dict) or not isinstance(call.get("id"), str):
                    return f"Missing required parameter: '{where}.id'."
                if call.get("type") != "function":
                    return f"Invalid value: '{call.get('type')}'. Supported values are: 'function'."
                function = call.get("function")
                if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                    return f"Missing required parameter: '{where}.function.name'."
                if not isinstance(function.get("arguments"), str):
                    return f"Invalid type for '{where}.function.arguments': expected a string."
        if message.get("content") is None and not calls:
            return f"Invalid value for 'messages[{i}].content': expected a string, got null."
        return None

    @staticmethod
    def check_content(i: int, role: str, content: Any) -> str | None:
        if content is None or isinstance(content, str):  # null: checked with the role above
            return None
        if not isinstance(content, list):
            return f"Invalid type for 'messages[{i}].content'"
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            where = f"messages[{i}].content[{j}]"
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind != "text" and role in ("tool", "system", "developer"):
                return f"Invalid value: '{kind}'. Supported values are: 'text'."
            if kind in ("image_url", "file") and role != "user":
                return f"Invalid '{where}': {kind} parts are only allowed for messages with role 'user'."
            if kind == "image_url":
                image = part.get("image_url") or {}
                url = image.get("url", "")
                if not re.match(r"^(https?://|data:image/(png|jpeg|gif|webp);base64,)", url):
                    return f"Invalid '{where}.image_url.url': expected a URL or a base64 image data URL."
                if url.startswith("data:") and not _is_base64(url.split(",", 1)[1]):
                    return "You uploaded an unsupported image. Please make sure your image is valid."
                if image.get("detail") not in (None, "auto", "low", "high"):
                    return (
                        f"Invalid value: '{image['detail']}'. Supported values are: 'auto', 'low', and 'high'. "
                        f"- '{where}.image_url.detail'"
                    )
                continue
            if kind == "file":
                file = part.get("file") or {}
                data = file.get("file_data")
                if isinstance(data, str) and data.startswith("data:") and _is_base64(data.split(",", 1)[1]):
                    continue
                if isinstance(file.get("file_id"), str):
                    continue
                return f"Invalid '{where}.file': expected file_data or file_id."
            return f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url', 'input_audio', 'file'."
        return None
