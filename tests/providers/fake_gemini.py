"""A local Gemini generateContent server that checks what the real API checks."""

from __future__ import annotations

import base64
import itertools
import json
import re
from typing import Any

from tests.providers.fake_base import (
    _INVALID,
    COMPLETION_TOKENS,
    ENDLESS_EVENT_GAP_S,
    ENDLESS_EVENTS,
    GOOGLE_KEY,
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

# --- Google Gemini --------------------------------------------------------------------------

_GEMINI_PATH = re.compile(r"^/(v1beta|v1)/models/([^/:]+):(generateContent|streamGenerateContent)$")
_GEMINI_CONFIG = {
    "temperature",
    "maxOutputTokens",
    "max_output_tokens",
    "topP",
    "top_p",
    "topK",
    "top_k",
    "stopSequences",
    "stop_sequences",
    "candidateCount",
    "candidate_count",
    "responseMimeType",
    "response_mime_type",
    "responseSchema",
    "response_schema",
    "seed",
    "presencePenalty",
    "presence_penalty",
    "frequencyPenalty",
    "frequency_penalty",
    "thinkingConfig",
    "thinking_config",
}
_GEMINI_FIELDS = {
    "contents",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    "safetySettings",
    "safety_settings",
    "tools",
    "toolConfig",
    "tool_config",
}
# Gemini's Schema object (camelCase, as MindRoute sends it); anything else is an unknown name.
_SCHEMA_FIELDS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
}
_SCHEMA_TYPES = {"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
_FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")
_DECLARATION_FIELDS = {"name", "description", "parameters", "behavior", "response"}
_CALLING_MODES = {"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"}
_THINKING_FIELDS = {"thinkingBudget", "includeThoughts", "thinkingLevel"}
# A Part's fields (one data field each, plus these siblings), as Gemini spells them in JSON.
_PART_FIELDS = {
    "text",
    "inlineData",
    "inline_data",
    "fileData",
    "file_data",
    "functionCall",
    "function_call",
    "functionResponse",
    "function_response",
    "thought",
    "thoughtSignature",
    "thought_signature",
}
# The values Google documents for a call Gemini 3 did not make (history from another model, injected calls).
SKIP_SIGNATURES = {"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"}
MISSING_SIGNATURE = "Function call is missing a thought_signature in functionCall parts."


def signs_calls(model: str) -> bool:
    """Gemini 3 models sign their function calls and want the signature back."""
    return model.startswith("gemini-3")


def _current_turn(contents: list[dict[str, Any]]) -> int:
    """Where the current turn starts: the last user content that is not only function responses."""
    for i in range(len(contents) - 1, -1, -1):
        content = contents[i]
        if content["role"] == "user" and any("functionResponse" not in part for part in content["parts"]):
            return i
    return 0


def _unknown(name: str, where: str) -> str:
    return f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."


def check_schema(schema: Any, where: str) -> str | None:
    """What Gemini says about a Schema object it cannot read (`where` as it names fields: snake_case, dots)."""
    if not isinstance(schema, dict):
        return f"Invalid value at '{where}' (type.googleapis.com/google.ai.generativelanguage.v1beta.Schema)"
    for name in schema:
        if name not in _SCHEMA_FIELDS:
            return _unknown(name, where)
    kind = schema.get("type")
    if kind is not None and kind not in _SCHEMA_TYPES:
        return f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), {json.dumps(kind)}"  # noqa: E501
    if kind is None and "anyOf" not in schema:
        return f"* GenerateContentRequest.{where}.type: must be specified"
    if "enum" in schema and kind != "STRING":
        return f"* GenerateContentRequest.{where}.enum: only allowed for STRING type"
    if kind == "OBJECT" and not schema.get("properties"):
        return f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type"
    for name, sub in (schema.get("properties") or {}).items():
        problem = check_schema(sub, f"{where}.properties[{name}].value")
        if problem:
            return problem
    for name in schema.get("required") or []:
        if name not in (schema.get("properties") or {}):
            return f"* GenerateContentRequest.{where}.required[{name}]: property is not defined"
    for name in schema.get("propertyOrdering") or []:
        if name not in (schema.get("properties") or {}):
            return f"* GenerateContentRequest.{where}.property_ordering[{name}]: property is not defined"
    if "items" in schema:
        problem = check_schema(schema["items"], f"{where}.items")
        if problem:
            return problem
    if kind == "ARRAY" and "items" not in schema:
        return f"* GenerateContentRequest.{where}.items: missing field."
    for i, branch in enumerate(schema.get("anyOf") or []):
        problem = check_schema(branch, f"{where}.any_of[{i}]")
        if problem:
            return problem
    return None


def _check_tools(body: dict[str, Any]) -> str | None:
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            return "Invalid value at 'tools' (type.googleapis.com/google.ai.generativelanguage.v1beta.Tool)"
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                return f"Invalid value at 'tools[{i}]' (type.googleapis.com/google.ai.generativelanguage.v1beta.Tool)"
            for name in tool:
                if name not in ("functionDeclarations", "function_declarations", "googleSearch", "codeExecution"):
                    return _unknown(name, f"tools[{i}]")
            for j, declaration in enumerate(tool.get("functionDeclarations") or []):
                where = f"tools[{i}].function_declarations[{j}]"
                for name in declaration:
                    if name not in _DECLARATION_FIELDS:
                        return _unknown(name, where)
                if not isinstance(declaration.get("name"), str) or not _FUNCTION_NAME.match(declaration["name"]):
                    return (
                        f"* GenerateContentRequest.{where}.name: Invalid function name. Must start with a letter or an "
                        "underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or "
                        "dashes (-), with a maximum length of 64."
                    )
                if "parameters" in declaration:
                    problem = check_schema(declaration["parameters"], f"{where}.parameters")
                    if problem:
                        return problem
                names.append(declaration["name"])
    config = body.get("toolConfig")
    if config is None:
        return None
    for name in config:
        if name != "functionCallingConfig":
            return _unknown(name, "tool_config")
    calling = config.get("functionCallingConfig") or {}
    for name in calling:
        if name not in ("mode", "allowedFunctionNames"):
            return _unknown(name, "tool_config.function_calling_config")
    mode = calling.get("mode", "AUTO")
    if mode not in _CALLING_MODES:
        return f"Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), {json.dumps(mode)}"  # noqa: E501
    allowed = calling.get("allowedFunctionNames")
    if allowed is not None:
        if mode != "ANY":
            return (
                "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: only allowed "
                "when the mode is ANY"
            )
        for name in allowed:
            if name not in names:
                return (
                    "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                    f"function {name} is not declared"
                )
    return None


def _check_config(config: dict[str, Any]) -> str | None:
    schema = config.get("responseSchema")
    if schema is not None:
        if config.get("responseMimeType") != "application/json":
            return (
                "* GenerateContentRequest.generation_config.response_schema: only supported with response_mime_type "
                "application/json"
            )
        problem = check_schema(schema, "generation_config.response_schema")
        if problem:
            return problem
    mime = config.get("responseMimeType")
    if mime is not None and mime not in ("text/plain", "application/json", "text/x.enum"):
        return f"* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are `text/plain`, `application/json`, `application/xml`, `application/yaml` and `text/x.enum`. Got {mime}"  # noqa: E501
    count = config.get("candidateCount")
    if count is not None and (not isinstance(count, int) or not 1 <= count <= 8):
        return "* GenerateContentRequest.generation_config.candidate_count: must be in range [1, 8]"
    for name in ("seed", "topK"):
        if name in config and not isinstance(config[name], int):
            return f"Invalid value at 'generation_config.{name}' (TYPE_INT32), {json.dumps(config[name])}"
    for name in ("presencePenalty", "frequencyPenalty"):
        if name in config and not isinstance(config[name], int | float):
            return f"Invalid value at 'generation_config.{name}' (TYPE_FLOAT), {json.dumps(config[name])}"
    thinking = config.get("thinkingConfig")
    if thinking is not None:
        for name in thinking:
            if name not in _THINKING_FIELDS:
                return _unknown(name, "generation_config.thinking_config")
    return None


def _check_function_part(part: dict[str, Any], where: str) -> str | None:
    key, fields, value_field = (
        ("functionCall", ("id", "name", "args"), "args")
        if "functionCall" in part
        else ("functionResponse", ("id", "name", "response", "willContinue", "scheduling"), "response")
    )
    value = part[key]
    if not isinstance(value, dict):
        return f"Invalid value at '{where}.{key}'"
    for name in value:
        if name not in fields:
            return _unknown(name, f"{where}.{key}")
    if value_field in value and not isinstance(value[value_field], dict):
        return f"Invalid value at '{where}.{key}.{value_field}' (type.googleapis.com/google.protobuf.Struct)"
    if key == "functionCall" and not value.get("name"):
        return f"* GenerateContentRequest.{where}.function_call.name: Name cannot be empty."
    return None


def _check_turns(contents: list[dict[str, Any]]) -> str | None:
    """functionCall parts only in model turns; a functionResponse turn right after the call turn, one named
    response per call."""
    for i, content in enumerate(contents):
        calls = [p["functionCall"] for p in content["parts"] if "functionCall" in p]
        responses = [p["functionResponse"] for p in content["parts"] if "functionResponse" in p]
        if calls and content["role"] != "model":
            return f"* GenerateContentRequest.contents[{i}]: function calls can only be in a model turn"
        if not responses:
            continue
        previous = contents[i - 1] if i else {"parts": []}
        called = [p["functionCall"].get("name") for p in previous["parts"] if "functionCall" in p]
        if content["role"] != "user" or not called:
            return "Please ensure that function response turn comes immediately after a function call turn."
        if len(responses) != len(called):
            return (
                "Please ensure that the number of function response parts is equal to the number of function call "
                "parts of the function call turn."
            )
        for j, response in enumerate(responses):
            if not response.get("name"):
                return (
                    f"* GenerateContentRequest.contents[{i}].parts[{j}].function_response.name: Name cannot be empty."
                )
            if response["name"] not in called:
                return (
                    f"* GenerateContentRequest.contents[{i}].parts[{j}].function_response.name: {response['name']} "
                    "answers no function call of the previous turn"
                )
    return None


class FakeGemini(FakeProvider):
    """models/{model}:generateContent and :streamGenerateContent?alt=sse, key in x-goog-api-key or ?key=."""

    def __init__(self, key: str = GOOGLE_KEY) -> None:
        super().__init__(key)
        self.signatures: set[str] = set()  # every thought signature handed out (they stay valid, as Gemini's do)
        self._signed = itertools.count(1)

    def sign(self, what: str) -> str:
        """A new thought signature: base64 of some opaque bytes (with "+" and "/" in it, as real ones have)."""
        signature = base64.b64encode(b"\xfb\xef\xff" + f"thought {next(self._signed)} {what}".encode()).decode()
        self.signatures.add(signature)
        return signature

    def check_signatures(self, contents: list[dict[str, Any]]) -> str | None:
        """Gemini 3: in the current turn, the first function call of each model step carries back its signature."""
        for i in range(_current_turn(contents), len(contents)):
            content = contents[i]
            calls = [(j, part) for j, part in enumerate(content["parts"]) if "functionCall" in part]
            if content["role"] != "model" or not calls:
                continue
            j, part = calls[0]
            signature = part.get("thoughtSignature")
            if signature is None:
                name = part["functionCall"].get("name")
                return (
                    f"{MISSING_SIGNATURE} This is required for tools to work correctly, and missing thought_signature "
                    f"may lead to degraded model performance. Additional data, function call `default_api:{name}` , "
                    f"position {j + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for "
                    "more details."
                )
            if signature not in self.signatures and signature not in SKIP_SIGNATURES:
                return f"Corrupted thought signature at contents[{i}].parts[{j}]."
        return None

    def error(self, status: int, code_name: str, message: str, details: list[Any] | None = None) -> Reply:
        error: dict[str, Any] = {"code": status, "message": message, "status": code_name}
        if details:
            error["details"] = details
        return Reply(status=status, json_body={"error": error})

    def handle(self, req: Received) -> Reply:
        match = _GEMINI_PATH.match(req.path)
        if req.method != "POST" or not match:
            return Reply(status=404, raw=b"<html><body>Error 404 (Not Found)!!1</body></html>")
        _, model, method = match.groups()
        stream = method == "streamGenerateContent"
        given = req.headers.get("x-goog-api-key") or req.query.get("key")
        if not given:
            return self.error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if given != self.key:
            return self.error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
        problem = self.check_body(req.body)
        if problem is None and signs_calls(model):
            problem = self.check_signatures(req.body["contents"])
        if problem:
            return self.error(400, "INVALID_ARGUMENT", problem)
        scenario = self.scenario(model, given, stream)
        if scenario is not None:
            return scenario
        answers = self.answers(model, req.body)
        if not stream:
            whole = [[part for piece in pieces for part in piece] for pieces in answers]
            return Reply(
                json_body=self.reply_body(model, [(i, _joined(parts), True) for i, parts in enumerate(whole)], True)
            )
        events = []
        count = max(len(pieces) for pieces in answers)
        for k in range(count):
            now = [(i, pieces[k], k == len(pieces) - 1) for i, pieces in enumerate(answers) if k < len(pieces)]
            events.append(self.reply_body(model, now, k == count - 1))
        if req.query.get("alt") != "sse":
            # Without alt=sse Gemini streams one JSON array; the adapters never ask for that.
            return Reply(json_body=events)
        return Reply(events=[sse(event, newline="\r\n") for event in events])

    def answers(self, model: str, body: dict[str, Any]) -> list[list[list[dict[str, Any]]]]:
        """What the model answers: per candidate, the pieces it streams, each a list of parts."""
        contents = body["contents"]
        config = body.get("generationConfig") or {}
        declarations = [d for tool in body.get("tools") or [] for d in tool.get("functionDeclarations") or []]
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        responses = [p["functionResponse"] for p in contents[-1]["parts"] if "functionResponse" in p]
        texts: list[str] | None = None
        if declarations and calling.get("mode", "AUTO") != "NONE" and not responses:
            allowed = calling.get("allowedFunctionNames")
            chosen = [d for d in declarations if d["name"] == allowed[0]] if allowed else declarations[:1]
            if model.endswith("parallel-tools") and not allowed:  # "gemini-3-parallel-tools" too
                chosen = declarations[:2]
            pieces = [
                [
                    {
                        "functionCall": {
                            "name": d["name"],
                            "args": example_from_schema(d["parameters"]) if "parameters" in d else {},
                        }
                    }
                ]
                for d in chosen
            ]
            if signs_calls(model):  # only the first call of a parallel set is signed
                pieces[0][0]["thoughtSignature"] = self.sign(chosen[0]["name"])
            return [pieces for _ in range(config.get("candidateCount", 1))]
        if responses:
            results = [
                r["response"]["result"] if set(r["response"]) == {"result"} else json.dumps(r["response"])
                for r in responses
            ]
            texts = _halves(tool_results_answer(results))
        elif "responseSchema" in config:
            texts = _halves(json.dumps(example_from_schema(config["responseSchema"])))
        elif config.get("responseMimeType") == "application/json":
            user_text = _last_user_text(contents, self._text_of)
            texts = _halves(json.dumps({"answer": "".join(answer_pieces(user_text))}))
        else:
            texts = answer_pieces(_last_user_text(contents, self._text_of))
        answers = []
        for i in range(config.get("candidateCount", 1)):
            mine = texts if i == 0 or "responseSchema" in config or responses else [f"({i}) ", *texts]
            answers.append([[{"text": text}] for text in mine])
        if signs_calls(model):
            # Gemini 3 signs the last text part of an answer without calls too (optional to send back).
            for pieces in answers:
                pieces[-1][-1]["thoughtSignature"] = self.sign("text")
        return answers

    def scenario(self, model: str, given_key: str, stream: bool) -> Reply | None:
        if model == "error-400":
            return self.error(
                400,
                "INVALID_ARGUMENT",
                "* GenerateContentRequest.generation_config.max_output_tokens: max_output_tokens must be positive.\n",
            )
        if model == "error-403":
            # Gemini names the consumer by its key here: the message must come back without it.
            return self.error(
                403, "PERMISSION_DENIED", f"Permission denied: Consumer 'api_key:{given_key}' has been suspended."
            )
        if model == "error-404":
            return self.error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version v1beta, or is not supported for generateContent. "
                "Call ListModels to see the list of available models and their supported methods.",
            )
        if model == "error-429":
            return self.error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}
                        ],
                    },
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "27s"},
                ],
            )
        if model == "error-500":
            return self.error(
                500,
                "INTERNAL",
                "An internal error has occurred. Please retry or report in "
                "https://developers.generativeai.google/guide/troubleshooting",
            )
        if model == "error-503":
            return self.error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if model == "echo-key":
            return self.error(
                400, "INVALID_ARGUMENT", f"Request to https://x.googleapis.com/v1beta/models?key={given_key} failed"
            )
        if model == "malformed" and not stream:
            return Reply(raw=b'{"candidates": [{"content": {"parts": [{"text": "Hel')
        if model == "slow":
            return Reply(json_body={}, delay_s=SLOW_FIRST_BYTE_S)
        if not stream:
            return None
        if model == "malformed":
            return Reply(events=[sse(self.response(model, "Hel", last=False)), b'data: {"candidates": [\r\n\r\n'])
        if model == "cutoff":
            return Reply(events=[sse(self.response(model, "Hello", last=False))], cut_off=True)
        if model == "stream-error":
            error = {
                "error": {
                    "code": 503,
                    "message": "The model is overloaded. Please try again later.",
                    "status": "UNAVAILABLE",
                }
            }
            return Reply(events=[sse(self.response(model, "Hello", last=False)), sse(error)])
        if model == "endless":
            events = [sse(self.response(model, "tick ", last=False)) for _ in range(ENDLESS_EVENTS)]
            return Reply(events=events, event_gap_s=ENDLESS_EVENT_GAP_S)
        return None

    @staticmethod
    def response(model: str, text: str, last: bool) -> dict[str, Any]:
        return FakeGemini.reply_body(model, [(0, [{"text": text}], last)], last)

    @staticmethod
    def reply_body(model: str, candidates: list[tuple[int, list[dict[str, Any]], bool]], last: bool) -> dict[str, Any]:
        """A GenerateContentResponse with (index, parts, finished) candidates; the usage is whole when `last`."""
        out = []
        for index, parts, finished in candidates:
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": index}
            if finished:
                candidate["finishReason"] = "STOP"
            out.append(candidate)
        usage: dict[str, Any] = {"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS}
        if last:
            usage = {
                "promptTokenCount": PROMPT_TOKENS,
                "candidatesTokenCount": COMPLETION_TOKENS,
                "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}],
            }
        return {"candidates": out, "usageMetadata": usage, "modelVersion": model, "responseId": "fakeResp1"}

    @staticmethod
    def _text_of(content: dict[str, Any]) -> str:
        return "".join(part.get("text", "") for part in content.get("parts", []))

    @staticmethod
    def check_body(body: Any) -> str | None:
        if body is _INVALID or not isinstance(body, dict):
            return "Invalid JSON payload received."
        for name in body:
            if name not in _GEMINI_FIELDS:
                return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
        config = body.get("generationConfig") or body.get("generation_config") or {}
        for name in config:
            if name not in _GEMINI_CONFIG:
                return (
                    f"Invalid JSON payload received. Unknown name \"{name}\" at 'generation_config': Cannot find field."
                )
        system = body.get("systemInstruction") or body.get("system_instruction")
        if system is not None and not isinstance(system.get("parts"), list):
            return "* GenerateContentRequest.system_instruction.parts: must be a list"
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return "* GenerateContentRequest.contents: contents is not specified"
        for i, content in enumerate(contents):
            if content.get("role") not in ("user", "model"):
                return "Please use a valid role: user, model."
            parts = content.get("parts")
            if not isinstance(parts, list) or not parts:
                return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            for j, part in enumerate(parts):
                for name in part:
                    if name not in _PART_FIELDS:
                        return _unknown(name, f"contents[{i}].parts[{j}]")
                if "thoughtSignature" in part and not _is_bytes(part["thoughtSignature"]):
                    return f"Invalid value at 'contents[{i}].parts[{j}].thought_signature' (TYPE_BYTES), Base64 decoding failed"  # noqa: E501
                inline = part.get("inline_data") or part.get("inlineData")
                if "text" in part and isinstance(part["text"], str):
                    continue
                if "functionCall" in part or "functionResponse" in part:
                    problem = _check_function_part(part, f"contents[{i}].parts[{j}]")
                    if problem:
                        return problem
                    continue
                if isinstance(inline, dict):
                    mime = inline.get("mime_type") or inline.get("mimeType")
                    if not isinstance(mime, str) or not mime:
                        return f"* GenerateContentRequest.contents[{i}].parts[{j}].inline_data.mime_type: required"
                    if not _is_base64(inline.get("data")):
                        return f"Invalid value at 'contents[{i}].parts[{j}].inline_data.data' (TYPE_BYTES), Base64 decoding failed"  # noqa: E501
                    continue
                return f"* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field"  # noqa: E501
        return _check_turns(contents) or _check_tools(body) or _check_config(config)


def _is_bytes(value: Any) -> bool:
    """A proto3 JSON bytes value: standard or URL-safe base64."""
    return isinstance(value, str) and _is_base64(value.replace("-", "+").replace("_", "/"))


def _halves(text: str) -> list[str]:
    """A text in two streamed pieces."""
    middle = max(len(text) // 2, 1)
    return [text[:middle], text[middle:]] if len(text) > 1 else [text]


def _joined(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent text parts as one, as a whole (not streamed) answer has them."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if "text" in part and out and "text" in out[-1]:
            out[-1] = {**out[-1], **part, "text": out[-1]["text"] + part["text"]}
        else:
            out.append(part)
    return out
