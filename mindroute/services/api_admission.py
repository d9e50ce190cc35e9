"""Whether an API chat call may go upstream: the key, the body's problem, the model, the policy, the
request's own limits, then the budgets and rate limits it meets (services/limits.py), in that order; a
refusal gets its Logs row here (the one refusal builder)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine

from mindroute.models import utcnow
from mindroute.providers.shapes import ChatRequest
from mindroute.services import admission, api_keys, limits
from mindroute.services.call_log import DATABASE_UNAVAILABLE, is_database_outage
from mindroute.services.call_tracker import Caller, call_record, ms_since
from mindroute.services.limit_rules import LimitRule
from mindroute.services.limits import NO_LIMITS, LimitCheck, LimitRefusal
from mindroute.services.log_writer import alog_call
from mindroute.services.routing import ChatRefused, PreparedCall, Route, apply_route

log = logging.getLogger("mindroute.http.api")


@dataclass(frozen=True)
class AdmittedCall:
    """A call that may go upstream, with the caller's key filled in."""

    prepared: PreparedCall
    caller: Caller
    model_id: str  # "<provider>/<model>", as the answer names it
    limits: LimitCheck = NO_LIMITS  # the x-ratelimit-* headers to send, the charges to log


@dataclass(frozen=True)
class CallRefusal:
    """A call refused before any upstream call: the status to answer and the message."""

    status: int
    message: str
    key_refusal: api_keys.KeyRefusal | None = None  # why the key was refused (the answer's code)
    param: str | None = None  # the request field at fault, as OpenAI names it
    limit: LimitRefusal | None = None  # a budget or rate limit refused it (429: its type and code)
    headers: dict[str, str] = field(default_factory=dict)  # a limit refusal's x-ratelimit-* and retry-after


async def check_limits(engine: Engine, rules: tuple[LimitRule, ...]) -> LimitCheck | CallRefusal:
    """The budgets and rate limits `rules` set, counted for one more call (nothing to do without rules):
    the check to carry on an admitted call, or its refusal (429, or 503 for a database that is away);
    the caller logs a refusal."""
    if not rules:
        return NO_LIMITS
    try:
        check = await limits.acheck(engine, rules)
    except Exception as error:
        if not is_database_outage(error):
            raise
        log.warning("refused an API call: the database is unavailable (%s)", type(error).__name__)
        return CallRefusal(503, DATABASE_UNAVAILABLE)
    if check.refusal is None:
        return check
    refused = check.refusal  # its headers carry retry-after already (limits.acheck)
    return CallRefusal(refused.status, refused.message, limit=refused, headers=dict(check.headers))


@dataclass(frozen=True)
class _Remembered:
    """A call admitted or refused by its limits on a remembered route, with what its Logs row needs."""

    outcome: AdmittedCall | CallRefusal
    caller: Caller
    user_id: uuid.UUID
    route: Route


async def _admit_remembered(
    engine: Engine, presented_key: str | None, model_id: str, request: ChatRequest, caller: Caller
) -> _Remembered | None:
    """On PostgreSQL with limits in one statement: a call on a route this process remembers reads its key
    in the same statement as it counts against the route's rules (one round trip instead of two). None when
    that does not apply or the key row says otherwise (refused, or the fingerprint moved: a count taken is
    undone): admit_call's own path then answers as always."""
    digest = api_keys.presented_digest(presented_key)
    found = admission.remembered(digest, model_id) if digest is not None else None
    if found is None or not limits.checks_in_one_statement(engine, found[2]):
        return None
    assert digest is not None
    fingerprint, route, rules = found
    try:
        prepared = apply_route(route, replace(request, model=route.model))
    except ChatRefused:
        return None
    now = utcnow()
    try:
        gated = await limits.acheck_gated(engine, rules, admission.key_gate(engine, digest, now), now)
        row = admission.accept_key(engine, admission.key_row_of_json(gated.gate_row), digest, now)
        if isinstance(row, admission.KeyRefused) or row.fingerprint != fingerprint or gated.check is None:
            await limits.aundo(engine, gated.counted)
            return None
    except Exception as error:
        if not is_database_outage(error):
            raise
        return None  # admit_call's path meets the outage too, and answers 503
    caller = replace(caller, api_key_id=row.id)
    check = gated.check
    if check.refusal is None:
        admitted = AdmittedCall(prepared, caller, f"{route.provider_name}/{route.model}", check)
        return _Remembered(admitted, caller, row.user_id, route)
    refused = CallRefusal(check.refusal.status, check.refusal.message, limit=check.refusal, headers=dict(check.headers))
    return _Remembered(refused, caller, row.user_id, route)


async def admit_call(
    engine: Engine,
    presented_key: str | None,
    model_id: str | None,
    request: ChatRequest | None,
    problem: CallRefusal | None,
    caller: Caller,
    started: float,
    extra: dict[str, Any] | None = None,
) -> AdmittedCall | CallRefusal:
    """Verify the key, then the body (`problem`: what the HTTP layer found wrong with it, if anything),
    the model and the policy, in one unit of work, then the budgets and rate limits; a refusal writes
    (queues) its Logs row. A database that is away gets a 503, logged like any refusal."""
    provider_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    model = model_id  # logged as sent, unless the refusal knows the provider and the bare model
    fast = None
    if problem is None and request is not None and model_id is not None:
        fast = await _admit_remembered(engine, presented_key, model_id, request, caller)
    if fast is not None:
        if isinstance(fast.outcome, AdmittedCall):
            return fast.outcome
        refusal, caller, user_id = fast.outcome, fast.caller, fast.user_id
        provider_id, model = fast.route.provider_id, fast.route.model
        assert request is not None
        request = replace(request, model=fast.route.model)
        return await _refused(engine, caller, user_id, provider_id, model, request, refusal, started, extra)
    try:
        admitted = await admission.aadmit(engine, presented_key, model_id)
    except Exception as error:
        if not is_database_outage(error):
            raise
        log.warning("refused an API call: the database is unavailable (%s)", type(error).__name__)
        refusal = CallRefusal(503, DATABASE_UNAVAILABLE)
    else:
        caller = replace(caller, api_key_id=admitted.key_id)
        user_id = admitted.user_id
        if isinstance(admitted, admission.KeyRefused):
            refusal = CallRefusal(401, admitted.refusal.message, key_refusal=admitted.refusal)
        elif problem is not None:
            refusal = problem
            provider_id, model = admission.logged_model(admitted.route, model_id)
        elif isinstance(admitted.route, admission.RouteRefusal):
            refusal = CallRefusal(admitted.route.status, admitted.route.message)
            provider_id, model = admission.logged_model(admitted.route, model_id)
        else:
            assert request is not None
            route = admitted.route
            provider_id = route.provider_id
            request = replace(request, model=route.model)
            model = route.model
            try:
                prepared = apply_route(route, request)
            except ChatRefused as refused:
                refusal = CallRefusal(refused.status_code, refused.message)
            else:
                checked = await check_limits(engine, admitted.rules)
                if not isinstance(checked, CallRefusal):
                    return AdmittedCall(prepared, caller, f"{route.provider_name}/{route.model}", checked)
                refusal = checked
    return await _refused(engine, caller, user_id, provider_id, model, request, refusal, started, extra)


async def _refused(
    engine: Engine,
    caller: Caller,
    user_id: uuid.UUID | None,
    provider_id: uuid.UUID | None,
    model: str | None,
    request: ChatRequest | None,
    refusal: CallRefusal,
    started: float,
    extra: dict[str, Any] | None,
) -> CallRefusal:
    """Queue a refused call's Logs row and hand back its refusal."""
    duration = ms_since(started)
    record = call_record(caller, user_id, provider_id, model, request, refusal.status, duration, refusal.message, extra)
    await alog_call(engine, record)
    return refusal
