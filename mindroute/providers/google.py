"""Google Gemini generateContent and streamGenerateContent (SSE), both ways."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from mindroute.i18n import _l
from mindroute.providers.adapter import ProviderAdapter, join_url, sampling
from mindroute.providers.errors import (
    AuthenticationError,
    ProviderError,
    UnsupportedMedia,
    UnsupportedParameter,
    error_class_for_status,
    parse_retry_after,
)
from mindroute.providers.gemini_schema import gemini_schema, is_empty_object
from mindroute.providers.media import base64_of, base_mime, inlined_text, is_text_like
from mindroute.providers.registry import ProtocolSpec
from mindroute.providers.shapes import (
    Attachment,
    ChatMessage,
    ChatRequest,
    ChatResult,
    Choice,
    HttpCall,
    ToolCall,
    ToolSpec,
)
from mindroute.providers.sse import SSEEvent, StreamItem, StreamTranslator, int_or_none, load_json

API_VERSION = "v1beta"  # the long-documented path; it has every field we send
ROLE_NAMES = {"user": "user", "assistant": "model"}
IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
# Sent as inline_data; other text types go in as text parts, which every Gemini model reads.
DOCUMENT_MIME_TYPES = ("application/pdf", "text/plain")
MODELS_PAGE_SIZE = 1000  # the largest page the model list accepts
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
# Gemini 3 signs its function calls (thoughtSignature, a base64 string on the functionCall's part) and refuses a
# next turn that does not bring the signature back on that part. Chat Completions has no field for it, so it
# travels inside the tool call id the client gets: "<call id>__thought__<signature>". MindRoute's own ids are
# "call_" + hex and standard base64 has no "_", so the last separator in an id is where the signature starts.
THOUGHT_SEPARATOR = "__thought__"
# Google's documented stand-in for a signature Gemini 3 never gave (history from another model or protocol).
SKIP_SIGNATURE = "skip_thought_signature_validator"


def model_url(endpoint: str, model: str, method: str) -> str:
    """{endpoint}/v1beta/models/{model}:{method}; a "models/" prefix on the id is tolerated."""
    model_id = quote(model.removeprefix("models/"), safe="-._~")
    return join_url(endpoint, f"models/{model_id}:{method}", API_VERSION)


def _usage(metadata: Any) -> tuple[int, int, int | None] | None:
    """(prompt, completion, total). Zero counts are left out of Gemini's JSON, so absent means 0.

    Completion includes thinking tokens, which Gemini counts apart and bills as output (as
    OpenAI's completion_tokens does).
    """
    if not isinstance(metadata, dict):
        return None
    prompt = int_or_none(metadata.get("promptTokenCount")) or 0
    completion = (int_or_none(metadata.get("candidatesTokenCount")) or 0) + (
        int_or_none(metadata.get("thoughtsTokenCount")) or 0
    )
    return prompt, completion, int_or_none(metadata.get("totalTokenCount"))


def _candidate_text(candidate: Any) -> str:
    parts = ((candidate or {}).get("content") or {}).get("parts") or []
    # Thought summaries are not the answer. A text part's thoughtSignature is dropped: Gemini 3 does not need it
    # back (only function call parts must carry theirs), and Chat Completions has no place for it.
    return "".join(part["text"] for part in parts if isinstance(part.get("text"), str) and not part.get("thought"))


# -- the request's fields, per the field table --

# reasoning_effort as a thinking budget in tokens; 0 turns thinking off.
THINKING_BUDGETS = {"none": 0, "minimal": 0, "low": 1024, "medium": 8192, "high": 24576}
_TRANSLATED_OPTIONS = {
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "top_k": "topK",
}
# They do not change the answer: not sent (user is kept in the Logs row by the caller).
_UNSENT_OPTIONS = {
    "user",
    "metadata",
    "store",
    "prompt_cache_key",
    "safety_identifier",
    "stream_options",
}
# Features Gemini's generateContent has no equivalent for: refused whenever set.
_REFUSED_OPTIONS = {
    "audio": "audio (spoken answers)",
    "prediction": "prediction (predicted outputs)",
    "verbosity": "verbosity",
    "web_search_options": "web_search_options (OpenAI's web search)",
    "functions": "functions (the legacy form of tools)",
    "function_call": "function_call (the legacy form of tool_choice)",
}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}


def _unsupported(param: str, what: str) -> UnsupportedParameter:
    return UnsupportedParameter(f"{what} is not supported by the Gemini protocol", param)


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    """generationConfig fields for the other Chat Completions fields; refuses what would change the answer."""
    config: dict[str, Any] = {}
    for name, value in options.items():
        if value is None or name in _UNSENT_OPTIONS:
            continue
        if name == "seed" and not -(2**31) <= value < 2**31:
            raise UnsupportedParameter(
                f"seed {value} is out of the Gemini protocol's range (a 32-bit integer: -2147483648 to 2147483647)",
                "seed",
            )
        if name in _TRANSLATED_OPTIONS:
            config[_TRANSLATED_OPTIONS[name]] = value
        elif name == "reasoning_effort":
            if value not in THINKING_BUDGETS:
                raise _unsupported(name, f"reasoning_effort {value!r}")
            config["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGETS[value]}
        elif name == "logit_bias":
            if value:
                raise _unsupported(name, "logit_bias")
        elif name == "logprobs":
            if value is not False:
                raise _unsupported(name, "logprobs")
        elif name == "top_logprobs":
            if value != 0:
                raise _unsupported(name, "top_logprobs")
        elif name == "service_tier":
            if value not in ("auto", "default"):
                raise _unsupported(name, f"service_tier {value!r}")
        elif name == "modalities":
            if value != ["text"]:
                raise _unsupported(name, f"modalities {value!r} (Gemini answers text only)")
        elif name in _REFUSED_OPTIONS:
            raise _unsupported(name, _REFUSED_OPTIONS[name])
        else:
            raise UnsupportedParameter(f"{name} is not a field the Gemini protocol has", name)
    return config


def _declaration(index: int, tool: ToolSpec) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    if not is_empty_object(tool.parameters):
        declaration["parameters"] = gemini_schema(tool.parameters, f"tools[{index}].function.parameters")
    return declaration


def _tool_config(request: ChatRequest) -> dict[str, Any]:
    # parallel_tool_calls false has no field in Gemini: MindRoute keeps only the first call of each answer
    # (parse_response, GoogleStreamTranslator), so the client never gets more than one.
    choice = request.tool_choice
    if choice is None or not request.tools:
        if choice is not None and choice.mode in ("required", "function"):
            raise UnsupportedParameter(f"tool_choice {choice.mode!r} needs tools", "tool_choice")
        return {}
    calling: dict[str, Any] = {"mode": _MODES[choice.mode]}
    if choice.mode == "function":
        calling["allowedFunctionNames"] = [choice.name]
    return {"functionCallingConfig": calling}


def _response_format(request: ChatRequest) -> dict[str, Any]:
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return {}
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    if response_format.type == "json_schema" and response_format.schema is not None:
        config["responseSchema"] = gemini_schema(response_format.schema, "response_format.json_schema.schema")
    return config


def _arguments(message_index: int, call_index: int, arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as the object Gemini's functionCall.args is."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UnsupportedParameter(
            "A tool call's arguments must be a JSON object for the Gemini protocol",
            f"messages[{message_index}].tool_calls[{call_index}].function.arguments",
        )
    return parsed


def _function_response(index: int, message: ChatMessage, names: Mapping[str, str]) -> dict[str, Any]:
    """A tool message as Gemini's functionResponse: the function's name (from the call it answers) and the
    result, as the object it is or else {"result": text}."""
    name = names.get(message.tool_call_id or "") or message.name
    if not name:
        raise UnsupportedParameter(
            "A tool message must answer an earlier assistant tool call (Gemini needs the function's name)",
            f"messages[{index}].tool_call_id",
        )
    text = "".join(part for part in message.content() if isinstance(part, str))
    try:
        result = json.loads(text)
    except ValueError:
        result = None
    return {"name": name, "response": result if isinstance(result, dict) else {"result": text}}


# -- the answer out --


def made_call_id() -> str:
    """An id for a call Gemini sent without one, so the client can answer it."""
    return "call_" + secrets.token_hex(12)


def signed_call_id(call_id: str, signature: Any) -> str:
    """The id the client gets: the call's id, and its thought signature (if it has one) after the separator."""
    return call_id + THOUGHT_SEPARATOR + signature if isinstance(signature, str) and signature else call_id


def split_call_id(call_id: str) -> tuple[str, str | None]:
    """(the call's own id, its thought signature or None) from an id made by signed_call_id."""
    bare, separator, signature = call_id.rpartition(THOUGHT_SEPARATOR)
    if not separator or not bare or not signature:
        return call_id, None
    return bare, signature


def _candidate_calls(candidate: Any) -> list[ToolCall]:
    parts = ((candidate or {}).get("content") or {}).get("parts") or []
    return [_tool_call(part) for part in parts if isinstance(part.get("functionCall"), dict)]


def _tool_call(part: dict[str, Any]) -> ToolCall:
    """A functionCall part as a ToolCall. Only Gemini 3 signs calls, and only the first of a parallel set: each
    part keeps whatever signature it came with."""
    call = part["functionCall"]
    call_id = call.get("id")
    args = call.get("args")
    return ToolCall(
        id=signed_call_id(
            call_id if isinstance(call_id, str) and call_id else made_call_id(), part.get("thoughtSignature")
        ),
        name=str(call.get("name") or ""),
        arguments=json.dumps(args if isinstance(args, dict) else {}),
    )


def _indexed(candidates: Any) -> list[tuple[int, dict[str, Any]]]:
    """(index, candidate) in index order. proto3 JSON leaves out index 0; when the indexes do not tell the
    candidates apart, their places do."""
    candidates = [c for c in candidates or [] if isinstance(c, dict)]
    indexes = [int_or_none(c.get("index")) or 0 for c in candidates]
    if len(set(indexes)) != len(indexes):
        indexes = list(range(len(candidates)))
    return sorted(zip(indexes, candidates, strict=True), key=lambda item: item[0])


class GoogleAdapter(ProviderAdapter):
    protocol = "google"
    key_required = True

    # -- request in --

    def build_call(self, request: ChatRequest, endpoint: str, api_key: str | None, *, stream: bool) -> HttpCall:
        body: dict[str, Any] = {"contents": self._contents(request.messages, request.model.removeprefix("models/"))}
        system = "\n\n".join(m.text for m in request.messages if m.role == "system" and m.text)
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if request.tools:
            body["tools"] = [{"functionDeclarations": [_declaration(i, t) for i, t in enumerate(request.tools)]}]
        tool_config = _tool_config(request)
        if tool_config:
            body["toolConfig"] = tool_config
        config = sampling(
            request, temperature="temperature", max_tokens="maxOutputTokens", top_p="topP", stop="stopSequences"
        )
        config.update(_response_format(request))
        if request.n is not None and request.n != 1:
            config["candidateCount"] = request.n
        config.update(_options(request.options))
        if config:
            body["generationConfig"] = config
        url = model_url(endpoint, request.model, "streamGenerateContent" if stream else "generateContent")
        if stream:
            url += "?alt=sse"  # without it the stream is one long JSON array
        return HttpCall(url=url, headers=self.request_headers(api_key, stream=stream), body=body)

    def _contents(self, messages: list[ChatMessage], model: str = "") -> list[dict[str, Any]]:
        """Gemini's contents: assistant calls as functionCall parts, each run of tool messages as one "user"
        content of functionResponse parts (named from the call they answer)."""
        contents: list[dict[str, Any]] = []
        names: dict[str, str] = {}  # tool call id -> function name, from the assistant turns so far
        answering = False  # the last content is a run of tool results
        for i, message in enumerate(messages):
            if message.role == "system":
                continue
            if message.role == "tool":
                part = {"functionResponse": _function_response(i, message, names)}
                if answering:
                    contents[-1]["parts"].append(part)
                else:
                    contents.append({"role": "user", "parts": [part]})
                answering = True
                continue
            answering = False
            parts = [{"text": p} if isinstance(p, str) else self._part(p) for p in message.content()]
            if message.role == "assistant":
                signs = model.startswith("gemini-3")  # Gemini 3 refuses a step whose first call is unsigned
                for j, call in enumerate(message.tool_calls):
                    bare, signature = split_call_id(call.id)
                    # The tool message answers the full id, signature and all (a client that kept the bare id is
                    # understood too).
                    names[call.id] = names[bare] = call.name
                    call_part: dict[str, Any] = {
                        "functionCall": {"name": call.name, "args": _arguments(i, j, call.arguments)}
                    }
                    if signature is not None:
                        call_part["thoughtSignature"] = signature  # back on the part it came on, as Gemini 3 requires
                    elif signs and j == 0:
                        call_part["thoughtSignature"] = SKIP_SIGNATURE
                    parts.append(call_part)
            contents.append({"role": ROLE_NAMES[message.role], "parts": parts or [{"text": ""}]})
        return contents

    def _part(self, attachment: Attachment) -> dict[str, Any]:
        mime = base_mime(attachment.mime_type)
        kind = attachment.effective_kind
        if kind == "image" and mime not in IMAGE_MIME_TYPES:
            raise UnsupportedMedia(_l("Gemini takes PNG, JPEG, WebP, HEIC or HEIF images, not {mime}", mime=mime))
        if kind in ("image", "video") or mime in DOCUMENT_MIME_TYPES:
            return {"inline_data": {"mime_type": mime, "data": base64_of(attachment)}}
        if is_text_like(mime):
            return {"text": inlined_text(attachment)}
        raise UnsupportedMedia(
            _l("Gemini takes PDF and text files, not {mime} ({name})", mime=mime, name=attachment.label)
        )

    # -- response out --

    def parse_response(self, body: Any, request: ChatRequest) -> ChatResult:
        candidates = body.get("candidates") or []
        usage = _usage(body.get("usageMetadata"))
        prompt, completion, total = usage or (None, None, None)
        if usage is not None and total is None:
            total = prompt + completion
        ordered = _indexed(candidates)
        first = ordered[0][1] if ordered else None
        most = 1 if request.parallel_tool_calls is False else None  # at most one call per answer, when asked
        block = (body.get("promptFeedback") or {}).get("blockReason")
        finish = (first or {}).get("finishReason") or (block if isinstance(block, str) else None)
        return ChatResult(
            text=_candidate_text(first),
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            usage_reported=usage is not None,
            finish_reason=finish,
            model=body.get("modelVersion") or request.model,
            raw=body,
            tool_calls=tuple(_candidate_calls(first)[:most]),
            other_choices=tuple(
                Choice(i, _candidate_text(c), tuple(_candidate_calls(c)[:most]), c.get("finishReason"))
                for i, c in ordered[1:]
            ),
        )

    # -- the model list: GET {endpoint}/v1beta/models, paged by nextPageToken --

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        # In a header, never as ?key= in a URL that may be logged.
        return {"x-goog-api-key": api_key or ""}

    def models_url(self, endpoint: str) -> str:
        base = endpoint.rstrip("/")
        return f"{base}/models" if base.endswith(("/v1beta", "/v1")) else f"{base}/{API_VERSION}/models"

    def models_first_query(self) -> dict[str, str]:
        return {"pageSize": str(MODELS_PAGE_SIZE)}

    def models_page(self, body: Any) -> tuple[list[str], dict[str, str] | None]:
        """Names come as "models/gemini-2.0-flash" (the prefix is dropped); only models that can generate
        content are kept: embedding and retrieval models cannot answer a chat."""
        if not isinstance(body, dict):
            raise ValueError("not an object")
        items = body.get("models", [])  # an account with no models gets {} back
        if not isinstance(items, list):
            raise ValueError("no models list")
        names = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            methods = item.get("supportedGenerationMethods")
            if isinstance(methods, list) and "generateContent" not in methods:
                continue
            names.append(item["name"].removeprefix("models/"))
        token = body.get("nextPageToken")
        return names, ({"pageToken": token} if isinstance(token, str) and token else None)

    def stream_translator(self, request: ChatRequest) -> StreamTranslator:
        return GoogleStreamTranslator(self, request.model, request.parallel_tool_calls is False)

    # -- Gemini's error quirks --

    def error_class(self, status: int, error_type: str | None, body: Any) -> type[ProviderError]:
        # A wrong key is a 400 INVALID_ARGUMENT whose detail says API_KEY_INVALID.
        if status == 400 and "API_KEY_INVALID" in _detail_values(body, "reason"):
            return AuthenticationError
        return error_class_for_status(status)

    def retry_after(self, headers: Mapping[str, str], body: Any) -> float | None:
        from_header = parse_retry_after(headers)
        if from_header is not None:
            return from_header
        # A 429 says when to come back in a RetryInfo detail: {"retryDelay": "27s"}.
        for delay in _detail_values(body, "retryDelay"):
            match = _DURATION_RE.match(delay)
            if match:
                return float(match.group(1))
        return None


def _detail_values(body: Any, key: str) -> list[str]:
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return []
    return [d[key] for d in details if isinstance(d, dict) and isinstance(d.get(key), str)]


class GoogleStreamTranslator(StreamTranslator):
    """Each event is a whole GenerateContentResponse with the next piece of each candidate: text, and function
    calls sent whole (one piece each); the last piece of a candidate has its finishReason."""

    def __init__(self, adapter: GoogleAdapter, model: str, single_call: bool = False) -> None:
        super().__init__(model)
        self._adapter = adapter
        self._single_call = single_call  # parallel_tool_calls false
        self._positions: dict[int, int] = {}  # candidate -> how many calls it has made so far
        self._open: set[int] = set()  # candidates seen that have not finished
        self._first_done = False

    def feed(self, event: SSEEvent) -> list[StreamItem]:
        payload = load_json(event.data, "stream chunk")
        if isinstance(payload, dict) and "error" in payload:
            raise self._adapter.error_from_event(payload)
        if isinstance(payload.get("modelVersion"), str):
            self.model = payload["modelVersion"]
        items: list[StreamItem] = []
        for choice, candidate in _indexed(payload.get("candidates")):
            self._open.add(choice)
            # A text part's thoughtSignature (Gemini 3, answers without calls) is dropped: Gemini does not
            # require it back, and only a function call's signature has a place to travel (its id).
            for part in (candidate.get("content") or {}).get("parts") or []:
                if isinstance(part.get("functionCall"), dict):
                    at = self._positions.get(choice, 0)
                    if self._single_call and at >= 1:
                        continue  # parallel_tool_calls false: only the first call of an answer
                    call = _tool_call(part)
                    self._positions[choice] = at + 1
                    items += self.tool_delta(at, call.id, call.name, call.arguments, choice)
                elif isinstance(part.get("text"), str) and not part.get("thought"):
                    items += self.text_chunk(part["text"], choice)
            if candidate.get("finishReason"):
                self.choice_finished(choice, candidate["finishReason"])
                self._open.discard(choice)
                self._first_done = self._first_done or choice == 0
        block = (payload.get("promptFeedback") or {}).get("blockReason")
        if isinstance(block, str) and block:  # the prompt itself was refused: no candidate comes
            self.finish_reason = block
            self._first_done = True
        self.done = self._first_done and not self._open
        usage = _usage(payload.get("usageMetadata"))
        if usage is not None:
            # Each chunk may repeat usageMetadata; the last one is the answer's total.
            prompt, completion, total = usage
            self.prompt_tokens, self.completion_tokens = prompt, completion
            self.total_tokens = total if total is not None else prompt + completion
            self.usage_reported = True
        return items


def register_protocols(register: Callable[[ProtocolSpec], None]) -> None:
    register(
        ProtocolSpec(
            name="google",
            label="Google Gemini",
            default_endpoint="https://generativelanguage.googleapis.com",
            adapter=GoogleAdapter(),
            official_provider="Google AI",
        )
    )
