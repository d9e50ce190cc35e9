"""POST /v1/embeddings: the body checked, the key and the model's permission (admission), the budgets and
rate limits (their tokens are the prompt's), the provider's embeddings in OpenAI's shape, and one Logs row
(request_type "embedding"); also the admission, the limits check and the logging that the API's non-chat
routes (this one and /v1/completions) share."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Engine
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope

from mindroute import redaction
from mindroute.db import get_engine
from mindroute.http.answers import (
    KEY_CODES,
    OVERHEAD_HEADER,
    RETRY_AFTER_S,
    error_response,
    limit_refusal_response,
    overhead_ms,
)
from mindroute.http.asgi_request import (
    AnswerApp,
    BodyTooLarge,
    ClientGone,
    api_caller,
    bearer,
    max_body_bytes,
    read_body,
)
from mindroute.http.asgi_request import scope_headers as _headers
from mindroute.provider_settings import estimate_cost
from mindroute.providers.embeddings import ENCODING_FORMATS, EmbeddingRequest, embedder_for, protocol_label
from mindroute.providers.errors import ProviderError, RateLimitedError, UnsupportedParameter
from mindroute.redaction import redact_secrets
from mindroute.services import admission
from mindroute.services.api_admission import CallRefusal, check_limits
from mindroute.services.call_log import DATABASE_UNAVAILABLE, REQUEST_TYPE_EMBEDDING, CallRecord, is_database_outage
from mindroute.services.call_tracker import Caller, call_record, ms_since, status_for_error
from mindroute.services.chat_async import UpstreamClock
from mindroute.services.limit_rules import LimitRule
from mindroute.services.limits import NO_LIMITS, LimitCheck
from mindroute.services.log_writer import alog_call
from mindroute.services.routing import Route

MAX_INPUTS = 2048  # OpenAI's own limit on the items of one embeddings request
FIRST_INPUT_LOG_CHARS = 1_000  # of the first input, in the Logs row; never the whole input


class InvalidBody(ValueError):  # noqa: N818 - reads better at the raise site
    """The body is not a request this route can carry: a 400 with this message and param."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


@dataclass(frozen=True)
class Refused:
    """A call refused before any upstream call: the status, the message, the field at fault."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class RoutedCall:
    """A non-chat call the key, the model and the access policy allow; once `admit_limits` let it go
    upstream, `limits` holds its x-ratelimit-* headers (every answer sends them) and its charges (its row
    carries them, with its cost)."""

    route: Route
    caller: Caller
    user_id: uuid.UUID
    rules: tuple[LimitRule, ...] = ()
    limits: LimitCheck = NO_LIMITS

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.limits.headers)

    def accounted(self, prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, Any]:
        """The Logs row's charges and cost, for log_row: what the call owes its budgets and counters."""
        route = self.route
        cost = estimate_cost(
            route.prices,
            route.model,
            prompt_tokens,
            completion_tokens,
            protocol=route.protocol,
            endpoint_url=route.endpoint,
        )
        return {"charges": self.limits.charges, "cost_usd": cost}


# --- what the non-chat routes share ----------------------------------------------------------


async def read_json_object(headers: dict[str, str], receive: Receive) -> dict[str, Any]:
    """The body as a JSON object, refused over the API's body limit (InvalidBody, or ClientGone)."""
    limit = max_body_bytes()
    try:
        raw = await read_body(headers, receive, limit)
    except BodyTooLarge:
        raise InvalidBody(f"The request body is over the limit of {limit:,} bytes", status=413) from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidBody("The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidBody("The request body must be a JSON object")
    return body


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidBody("model is required: use an id from GET /v1/models", "model")
    return model.strip()


async def log_row(
    engine: Engine,
    request_type: str,
    caller: Caller,
    user_id: uuid.UUID | None,
    provider_id: uuid.UUID | None,
    model: str | None,
    status: int,
    started: float,
    message: str | None,
    extra: dict[str, Any] | None,
    **answer: Any,
) -> None:
    """Queue the call's one Logs row (no ChatRequest: `extra` is the request's summary)."""
    record: CallRecord = call_record(
        caller, user_id, provider_id, model, None, status, ms_since(started), message, extra, **answer
    )
    await alog_call(engine, replace(record, request_type=request_type))


async def admit_route(
    engine: Engine,
    scope: Scope,
    headers: dict[str, str],
    model_id: str | None,
    problem: Refused | None,
    started: float,
    extra: dict[str, Any] | None,
    request_type: str,
) -> RoutedCall | Response:
    """The key, then the body's problem, then the model and the access policy (services/admission.py,
    as for chat); a refusal is answered (OpenAI's error body) and logged here, once."""
    caller = api_caller(scope, headers)
    user_id: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None
    logged_model = model_id  # as sent, unless the refusal knows the provider and the bare model
    refusal: Refused
    try:
        admitted = await admission.aadmit(engine, bearer(headers.get("authorization")), model_id)
    except Exception as error:
        if not is_database_outage(error):
            raise
        refusal = Refused(503, DATABASE_UNAVAILABLE)
    else:
        caller = replace(caller, api_key_id=admitted.key_id)
        user_id = admitted.user_id
        if isinstance(admitted, admission.KeyRefused):
            refusal = Refused(401, admitted.refusal.message, code=KEY_CODES[admitted.refusal])
        elif problem is not None:
            refusal = problem
            provider_id, logged_model = admission.logged_model(admitted.route, model_id)
        elif isinstance(admitted.route, admission.RouteRefusal):
            refusal = Refused(admitted.route.status, admitted.route.message)
            provider_id, logged_model = admission.logged_model(admitted.route, model_id)
        else:
            assert admitted.user_id is not None
            return RoutedCall(admitted.route, caller, admitted.user_id, admitted.rules)
    await log_row(
        engine, request_type, caller, user_id, provider_id, logged_model, refusal.status, started, refusal.message,
        extra,
    )  # fmt: skip
    answer_headers: dict[str, str] = {}
    if refusal.status == 401:
        answer_headers["www-authenticate"] = "Bearer"
    elif refusal.status == 503:
        answer_headers["retry-after"] = RETRY_AFTER_S
    return error_response(refusal.status, refusal.message, refusal.code, headers=answer_headers, param=refusal.param)


async def admit_limits(
    engine: Engine, call: RoutedCall, request_type: str, started: float, extra: dict[str, Any] | None
) -> RoutedCall | Response:
    """The budgets and rate limits of a routed call, the last thing before it goes upstream: the call
    with its check, or the refusal (OpenAI's 429, or a 503 for a database that is away) answered and logged."""
    checked = await check_limits(engine, call.rules)
    if not isinstance(checked, CallRefusal):
        return replace(call, limits=checked) if checked is not NO_LIMITS else call
    route = call.route
    await log_row(
        engine, request_type, call.caller, call.user_id, route.provider_id, route.model,
        checked.status, started, checked.message, extra,
    )  # fmt: skip
    if checked.limit is not None:
        return limit_refusal_response(checked.limit, checked.headers)
    return error_response(checked.status, checked.message, headers={"retry-after": RETRY_AFTER_S})


async def refuse_routed(
    engine: Engine,
    call: RoutedCall,
    request_type: str,
    started: float,
    extra: dict[str, Any] | None,
    refusal: Refused,
) -> Response:
    """A routed call refused before going upstream (a field the protocol cannot carry): answered and logged
    (after the limits check, with its headers and charges)."""
    route = call.route
    await log_row(
        engine,
        request_type,
        call.caller,
        call.user_id,
        route.provider_id,
        route.model,
        refusal.status,
        started,
        refusal.message,
        extra,
        charges=call.limits.charges,
    )
    return error_response(refusal.status, refusal.message, refusal.code, headers=call.headers, param=refusal.param)


def failure_status(error: ProviderError, api_key: str | None) -> tuple[int, str, dict[str, str]]:
    """What an upstream failure is answered with: the status, the message without any key, the headers."""
    message = redaction.answer_keys(api_key).redact(error.message or "The provider failed")
    headers: dict[str, str] = {}
    if isinstance(error, RateLimitedError) and error.retry_after is not None:
        headers["retry-after"] = str(max(0, round(error.retry_after)))
    return status_for_error(error), message, headers


def failure_response(status: int, message: str, headers: dict[str, str], param: str | None = None) -> JSONResponse:
    code = {429: "rate_limit_exceeded", 504: "upstream_timeout"}.get(
        status, "upstream_error" if status >= 500 else None
    )
    return error_response(status, message, code, headers=headers, param=param)


# --- POST /v1/embeddings ----------------------------------------------------------------------


def _embedding_input(value: Any) -> str | list[str] | list[int] | list[list[int]]:
    """OpenAI's four input shapes; anything else (empty included) is refused with param "input"."""
    if isinstance(value, str):
        if not value:
            raise InvalidBody("input must not be empty", "input")
        return value
    if not isinstance(value, list):
        raise InvalidBody("input is required: a string, a list of strings or a list of token ids", "input")
    if not value:
        raise InvalidBody("input must not be an empty list", "input")
    if len(value) > MAX_INPUTS:
        raise InvalidBody(f"input: at most {MAX_INPUTS:,} items per request; this one has {len(value):,}", "input")

    def is_token(item: Any) -> bool:
        return isinstance(item, int) and not isinstance(item, bool) and item >= 0

    if all(isinstance(item, str) for item in value):
        for i, item in enumerate(value):
            if not item:
                raise InvalidBody(f"input[{i}] must not be empty", "input")
        return value
    if all(is_token(item) for item in value):
        return value
    if all(isinstance(item, list) for item in value):
        for i, item in enumerate(value):
            if not item or not all(is_token(token) for token in item):
                raise InvalidBody(f"input[{i}] must be a non-empty list of token ids", "input")
        return value
    raise InvalidBody("input must be a string, a list of strings, a list of token ids or a list of such lists", "input")


def parse_embedding_body(body: dict[str, Any]) -> tuple[str, EmbeddingRequest]:
    """(the model id as the client wrote it, the request); InvalidBody says what is wrong."""
    model = model_of(body)
    inputs = _embedding_input(body.get("input"))
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1):
        raise InvalidBody("dimensions must be a positive integer", "dimensions")
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODING_FORMATS:
        raise InvalidBody(f"encoding_format must be one of {', '.join(ENCODING_FORMATS)}", "encoding_format")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidBody("user must be a string", "user")
    rest = {name: value for name, value in body.items() if name != "model"}
    return model, EmbeddingRequest(model, inputs, dimensions, encoding, user, rest)


def embedding_summary(body: dict[str, Any] | None) -> dict[str, Any]:
    """What the Logs row keeps of the request: the input's count and kind, at most FIRST_INPUT_LOG_CHARS
    of the first text (key-shaped text redacted), dimensions, encoding_format and user."""
    if body is None:
        return {}
    summary: dict[str, Any] = {}
    value = body.get("input")
    first: Any = None
    if isinstance(value, str):
        summary["input_count"], first = 1, value
    elif isinstance(value, list):
        summary["input_count"] = len(value)
        first = value[0] if value else None
    if isinstance(first, str):
        summary["input_type"] = "text"
        summary["first_input"] = redact_secrets(first[: FIRST_INPUT_LOG_CHARS + 200])[:FIRST_INPUT_LOG_CHARS]
    elif first is not None:
        summary["input_type"] = "tokens"
    for name in ("dimensions", "encoding_format", "user"):
        if isinstance(body.get(name), int | str) and not isinstance(body.get(name), bool):
            summary[name] = body[name]
    return summary


async def _embeddings(scope: Scope, receive: Receive) -> Response | None:
    started = time.perf_counter()
    engine = get_engine()
    headers = _headers(scope)
    problem: Refused | None = None
    body: dict[str, Any] | None = None
    model_id: str | None = None
    request: EmbeddingRequest | None = None
    try:
        body = await read_json_object(headers, receive)
        model_id, request = parse_embedding_body(body)
    except InvalidBody as exc:
        problem = Refused(exc.status, exc.message, exc.param)
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            model_id = body["model"].strip() or None
    except ClientGone:
        return None
    extra = embedding_summary(body)
    routed = await admit_route(engine, scope, headers, model_id, problem, started, extra, REQUEST_TYPE_EMBEDDING)
    if isinstance(routed, Response):
        return routed
    assert request is not None and model_id is not None
    route = routed.route
    embedder = embedder_for(route.protocol)
    if embedder is None:
        message = f"The {protocol_label(route.protocol)} protocol has no embeddings; use a model of another provider"
        return await refuse_routed(
            engine, routed, REQUEST_TYPE_EMBEDDING, started, extra, Refused(400, message, "model")
        )
    checked = await admit_limits(engine, routed, REQUEST_TYPE_EMBEDDING, started, extra)
    if isinstance(checked, Response):
        return checked
    routed = checked
    clock = UpstreamClock()
    upstream_started = time.perf_counter()
    try:
        result = await embedder.aembed(replace(request, model=route.model), route.endpoint, route.api_key)
    except UnsupportedParameter as exc:
        refusal = Refused(400, exc.message, exc.param)
        return await refuse_routed(engine, routed, REQUEST_TYPE_EMBEDDING, started, extra, refusal)
    except ProviderError as exc:
        clock.add_since(upstream_started)
        status, message, answer_headers = failure_status(exc, route.api_key)
        await log_row(
            engine, REQUEST_TYPE_EMBEDDING, routed.caller, routed.user_id, route.provider_id, route.model,
            status, started, message, extra, charges=routed.limits.charges,
        )  # fmt: skip
        answer_headers = {**routed.headers, **answer_headers, OVERHEAD_HEADER: overhead_ms(started, clock)}
        return failure_response(status, message, answer_headers)
    clock.add_since(upstream_started)
    await log_row(
        engine, REQUEST_TYPE_EMBEDDING, routed.caller, routed.user_id, route.provider_id, route.model,
        200, started, None, extra,
        prompt_tokens=result.prompt_tokens, total_tokens=result.total_tokens, usage_reported=result.usage_reported,
        **routed.accounted(result.prompt_tokens, None),
    )  # fmt: skip
    answer = {**result.body, "model": model_id}
    return JSONResponse(answer, headers={**routed.headers, OVERHEAD_HEADER: overhead_ms(started, clock)})


# The route as a plain ASGI app (see AnswerApp).
embeddings_app = AnswerApp(_embeddings)
