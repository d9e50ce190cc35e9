"""Whether an API chat call may go upstream: the key, the body's problem, the model, the policy, the
request's own limits, then the budgets and rate limits it meets (services/limits.py), in that order; a
refusal gets its Logs row here (the one refusal builder)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine

from mindroute.providers.shapes import ChatRequest
from mindroute.services import admission, api_keys, limits
from mindroute.services.call_log import DATABASE_UNAVAILABLE, is_database_outage
from mindroute.services.call_tracker import Caller, call_record, ms_since
from mindroute.services.limit_rules import LimitRule
from mindroute.services.limits import NO_LIMITS, LimitCheck, LimitRefusal
from mindroute.services.log_writer import alog_call
from mindroute.services.routing import ChatRefused, PreparedCall, apply_route

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
    duration = ms_since(started)
    record = call_record(caller, user_id, provider_id, model, request, refusal.status, duration, refusal.message, extra)
    await alog_call(engine, record)
    return refusal
