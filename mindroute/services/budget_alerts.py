"""Budget alerts: the budgetalerts rows (a budget past its warning threshold or spent), listed for admins,
and posted once each to MINDROUTE_ALERT_WEBHOOK_URL when it is set.

budget_spend.apply_charges inserts a row per (rule, period, level, metric) in the Logs rows'
transaction; with a webhook set its `webhookstatus` starts as 'pending'. After the transaction commits,
call_log.write_call_logs hands the new ids to deliver_in_background: a daemon thread, so neither the Logs
writer nor the playground ever waits for the webhook. deliver_pending claims each row
('pending' -> 'sending', one UPDATE that only one process can win), POSTs its JSON once (timeout 5 s),
then marks it 'sent' or 'failed' with a reason that holds neither the URL nor a secret. A process that
dies between the commit and the claim leaves rows 'pending'; the API's Logs writer picks them up when it
starts (pending_ids). Without a webhook, `webhookstatus` stays NULL.

The rule's name in a row (`limittarget`) is its target, except for the default rule, which is each
user's own budget: "default:user:<id>" (alert_target).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from mindroute.config import ConfigError, get_settings
from mindroute.db import transaction
from mindroute.i18n import N_, Message, _l
from mindroute.models import ApiKey, BudgetAlert, Provider, User, utcnow
from mindroute.services import limit_rules
from mindroute.services.limit_rules import LimitRule
from mindroute.services.roles import require_admin
from mindroute.validation import ValidationError, validate_endpoint_url

log = logging.getLogger("mindroute.budget_alerts")

WEBHOOK_URL_ENV = "MINDROUTE_ALERT_WEBHOOK_URL"
WEBHOOK_TIMEOUT_S = 5.0
STATUS_PENDING = "pending"
STATUS_SENDING = "sending"
STATUS_SENT = "sent"
STATUS_FAILED = "failed"
_DEFAULT_PREFIX = "default:"
_SCAN_MAX = 2_000  # newest rows read to find the current periods' alerts


# --- names ---------------------------------------------------------------------------------------------


def alert_target(rule: LimitRule) -> str:
    """The rule's name in budgetalerts: its own target, or for the default rule the user it counts on
    ("default:user:<id>"), since the default is each user's own budget."""
    if rule.target != limit_rules.DEFAULT_TARGET:
        return rule.target
    return f"{_DEFAULT_PREFIX}{rule.counter_key}"


@dataclass(frozen=True)
class _Named:
    rule: limit_rules.Target  # the rule's target parsed
    counted: uuid.UUID | None  # the user, key or provider it counts on


def _parse(limit_target: str) -> _Named | None:
    try:
        if limit_target.startswith(_DEFAULT_PREFIX):
            counted = limit_rules.parse_target(limit_target.removeprefix(_DEFAULT_PREFIX))
            return _Named(limit_rules.parse_target(limit_rules.DEFAULT_TARGET), counted.id)
        parsed = limit_rules.parse_target(limit_target)
        return _Named(parsed, parsed.id)
    except ValidationError:
        return None


def _names(session: Session, targets: Sequence[str]) -> dict[str, str]:
    """A human label per alert target, e.g. "API key 'ci' of Ana (set by its owner)"."""
    parsed = {t: _parse(t) for t in set(targets)}
    ids: dict[str, set[uuid.UUID]] = {"user": set(), "key": set(), "provider": set()}
    for named in parsed.values():
        if named is not None and named.counted is not None:
            ids["user" if named.rule.scope == "default" else named.rule.scope].add(named.counted)
    keys = {k.id: k for k in session.scalars(select(ApiKey).where(ApiKey.id.in_(ids["key"])))}
    ids["user"] |= {k.user_id for k in keys.values()}
    users = dict(session.execute(select(User.id, User.name).where(User.id.in_(ids["user"]))).all())
    providers = dict(session.execute(select(Provider.id, Provider.name).where(Provider.id.in_(ids["provider"]))).all())
    labels: dict[str, str] = {}  # Messages (English as a str; translated where shown)
    for target, named in parsed.items():
        if named is None:
            labels[target] = target
            continue
        scope, counted = named.rule.scope, named.counted
        if scope == "default":
            labels[target] = _l("the default budget, for {user}", user=users.get(counted, _l("a deleted user")))
        elif scope == "user":
            labels[target] = _l("the budget of {user}", user=users.get(counted, _l("a deleted user")))
        elif scope == "provider":
            labels[target] = _l(
                "the organisation's budget on {provider}", provider=providers.get(counted, _l("a deleted provider"))
            )
        else:
            key = keys.get(counted) if counted is not None else None
            by_owner = named.rule.set_by == "owner"
            if key is None:
                labels[target] = (
                    _l("the budget of a deleted API key (set by its owner)")
                    if by_owner
                    else _l("the budget of a deleted API key (set by an administrator)")
                )
            else:
                owner = users.get(key.user_id, _l("a deleted user"))
                template = (
                    N_("the budget of API key {key} of {owner} (set by its owner)")
                    if by_owner
                    else N_("the budget of API key {key} of {owner} (set by an administrator)")
                )
                labels[target] = Message(template, key=repr(key.name), owner=owner)
    return labels


def period_label(period_key: str) -> str:
    """ "day:Asia/Kolkata:2026-12-03" -> "the day of 2026-12-03 (Asia/Kolkata)"; "total" -> "in total".
    A Message (English as a str; translated where shown)."""
    if period_key == "total":
        return _l("in total")
    period, _, rest = period_key.partition(":")
    zone, _, first = rest.rpartition(":")
    if period == "month":
        return _l("the month of {month} ({zone})", month=first[:7], zone=zone)
    if period == "week":
        return _l("the week from {day} ({zone})", day=first, zone=zone)
    if period == "day":
        return _l("the day of {day} ({zone})", day=first, zone=zone)
    return f"the {period} of {first} ({zone})"


def is_current(period_key: str, now: datetime | None = None) -> bool:
    """Whether `period_key` is the period holding `now` (its own period kind and zone)."""
    if period_key == "total":
        return True
    period, _, rest = period_key.partition(":")
    zone, _, _ = rest.rpartition(":")
    try:
        return limit_rules.period_window(period, zone, now).key == period_key
    except ValidationError:
        return False


# --- the admin list --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRow:
    """One alert as the admin overview lists it."""

    id: uuid.UUID
    created_at: datetime  # naive UTC
    event: str  # "budget.warning" or "budget.spent"
    level: str  # "warning" or "spent"
    metric: str  # "usd" or "tokens"
    budget: float
    spent: float
    limit_target: str
    label: str  # the rule and its target's names, e.g. "the budget of Ana"
    period_key: str
    period: str  # e.g. "the day of 2026-12-03 (Asia/Kolkata)"
    webhook_status: str | None  # None: no webhook set
    webhook_error: str | None


def _event(level: str) -> str:
    return f"budget.{level}"


def list_alerts(
    session: Session,
    actor: User | None,
    since: datetime | None = None,
    limit: int = 50,
    *,
    current_only: bool = True,
) -> list[AlertRow]:
    """The alerts of the current periods (all periods when not `current_only`), created at or after
    `since` (naive UTC), newest first, at most `limit` (admins; the CLI)."""
    require_admin(actor)
    query = select(BudgetAlert).order_by(BudgetAlert.created_at.desc(), BudgetAlert.id.desc())
    if since is not None:
        query = query.where(BudgetAlert.created_at >= since)
    now = utcnow()
    rows = [
        row
        for row in session.scalars(query.limit(_SCAN_MAX if current_only else max(0, limit)))
        if not current_only or is_current(row.period_key, now)
    ][: max(0, limit)]
    labels = _names(session, [row.limit_target for row in rows])
    return [
        AlertRow(
            id=row.id,
            created_at=row.created_at,
            event=_event(row.level),
            level=row.level,
            metric=row.metric,
            budget=row.budget,
            spent=row.spent,
            limit_target=row.limit_target,
            label=labels.get(row.limit_target, row.limit_target),
            period_key=row.period_key,
            period=period_label(row.period_key),
            webhook_status=row.webhook_status,
            webhook_error=row.webhook_error,
        )
        for row in rows
    ]


# --- the webhook -------------------------------------------------------------------------------------------

_checked_urls: dict[str, str | None] = {}
_checked_lock = threading.Lock()


def webhook_url() -> str | None:
    """MINDROUTE_ALERT_WEBHOOK_URL, checked like a provider endpoint on first use; a bad one is logged once
    (without the value, which may hold a secret) and no webhook is posted."""
    try:
        raw = get_settings().alert_webhook_url or ""
    except ConfigError:  # reported where the settings are read
        return None
    if not raw:
        return None
    with _checked_lock:
        if raw not in _checked_urls:
            try:
                allow = get_settings().allow_link_local_endpoints
            except ConfigError:  # reported where the settings are read; link-local stays off
                allow = False
            try:
                _checked_urls[raw] = validate_endpoint_url(raw, WEBHOOK_URL_ENV, allow_link_local=allow)
            except ValidationError as error:
                log.error("%s is not used: %s", WEBHOOK_URL_ENV, error.message)
                _checked_urls[raw] = None
        return _checked_urls[raw]


def initial_webhook_status() -> str | None:
    """A new alert row's webhookstatus: 'pending' when a webhook is set, else None."""
    return STATUS_PENDING if webhook_url() is not None else None


def payload(row: BudgetAlert, label: str) -> dict[str, Any]:
    """The JSON object posted for one alert."""
    body: dict[str, Any] = {
        "event": _event(row.level),
        "id": str(row.id),
        "target": row.limit_target,
        "label": label,
        "period": row.period_key,
        "period_label": period_label(row.period_key),
        "level": row.level,
        "metric": row.metric,
        "budget": row.budget,
        "spent": row.spent,
        "at": row.created_at.isoformat(timespec="seconds") + "Z",
    }
    if row.metric == "usd":
        body["currency"] = "USD"
    return body


def _claim(engine: Engine, alert_id: uuid.UUID) -> dict[str, Any] | None:
    """Take the row for this process ('pending' -> 'sending'); its payload, or None when another took it."""
    with transaction(engine) as session:
        claimed = session.execute(
            update(BudgetAlert)
            .where(BudgetAlert.id == alert_id, BudgetAlert.webhook_status == STATUS_PENDING)
            .values(webhook_status=STATUS_SENDING, webhook_at=utcnow())
        )
        if claimed.rowcount != 1:
            return None
        row = session.get(BudgetAlert, alert_id)
        if row is None:
            return None
        return payload(row, _names(session, [row.limit_target])[row.limit_target])


def _failure(error: Exception) -> str:
    """Why a post failed, without the URL (it may hold a token) or the answer's body."""
    if isinstance(error, httpx.HTTPStatusError):
        return f"the webhook answered HTTP {error.response.status_code}"
    if isinstance(error, httpx.TimeoutException):
        return f"the webhook did not answer within {WEBHOOK_TIMEOUT_S:g} s"
    if isinstance(error, httpx.HTTPError):
        return f"could not reach the webhook ({type(error).__name__})"
    return f"could not post the webhook ({type(error).__name__})"


def _finish(engine: Engine, alert_id: uuid.UUID, error: str | None) -> None:
    with transaction(engine) as session:
        session.execute(
            update(BudgetAlert)
            .where(BudgetAlert.id == alert_id)
            .values(
                webhook_status=STATUS_FAILED if error else STATUS_SENT,
                webhook_at=utcnow(),
                webhook_error=error,
            )
        )


class _HideWebhookUrl(logging.Filter):
    """Drops httpx's own log records that name the webhook URL (its path or query often is the secret, as
    in Slack's webhooks): httpx logs every request's URL at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        url = webhook_url()
        return url is None or url not in record.getMessage()


_url_filter = _HideWebhookUrl()


def _hide_url_from_httpx() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _url_filter not in logger.filters:
            logger.addFilter(_url_filter)


def deliver_pending(engine: Engine, alert_ids: Sequence[uuid.UUID]) -> None:
    """Post each alert once to the webhook (when set): claim it, POST its JSON (timeout 5 s, no retry),
    mark it 'sent' or 'failed'. Never raises; a failure is logged and stored on the row."""
    url = webhook_url()
    if url is None or not alert_ids:
        return
    _hide_url_from_httpx()
    with httpx.Client(timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False) as client:
        for alert_id in alert_ids:
            try:
                body = _claim(engine, alert_id)
                if body is None:
                    continue
            except Exception:
                log.exception("could not claim budget alert %s for the webhook", alert_id)
                continue
            error: str | None = None
            try:
                client.post(url, json=body).raise_for_status()
            except Exception as failure:  # noqa: BLE001 - the webhook's trouble is never the caller's
                error = _failure(failure)
                log.warning("budget alert %s: %s", alert_id, error)
            try:
                _finish(engine, alert_id, error)
            except Exception:
                log.exception("could not record the webhook's outcome for budget alert %s", alert_id)


_deliveries: set[threading.Thread] = set()
_deliveries_lock = threading.Lock()


def deliver_in_background(engine: Engine, alert_ids: Sequence[uuid.UUID]) -> threading.Thread | None:
    """deliver_pending in a daemon thread (the caller never waits for the webhook); None when there is
    nothing to post."""
    if not alert_ids or webhook_url() is None:
        return None
    ids = list(alert_ids)
    try:
        return _start(engine, ids)
    except Exception:  # no thread to be had: the rows stay 'pending' for the next start (pending_ids)
        log.exception("could not start the budget webhook's thread")
        return None


def _start(engine: Engine, ids: list[uuid.UUID]) -> threading.Thread:

    def run() -> None:
        try:
            deliver_pending(engine, ids)
        finally:
            with _deliveries_lock:
                _deliveries.discard(thread)

    thread = threading.Thread(target=run, name="mindroute-budget-webhook", daemon=True)
    with _deliveries_lock:
        _deliveries.add(thread)
    thread.start()
    return thread


def wait_for_deliveries(timeout_s: float = WEBHOOK_TIMEOUT_S + 1) -> None:
    """Wait (up to `timeout_s` in all) for the webhook posts under way: a graceful shutdown sends them."""
    with _deliveries_lock:
        threads = list(_deliveries)
    deadline = utcnow().timestamp() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - utcnow().timestamp()))


def pending_ids(engine: Engine, limit: int = 1_000) -> list[uuid.UUID]:
    """Alerts still 'pending' (their process ended before posting them), oldest first."""
    if webhook_url() is None:
        return []
    with transaction(engine) as session:
        return list(
            session.scalars(
                select(BudgetAlert.id)
                .where(BudgetAlert.webhook_status == STATUS_PENDING)
                .order_by(BudgetAlert.created_at)
                .limit(limit)
            )
        )


def resume_pending(engine: Engine) -> threading.Thread | None:
    """Post, in a daemon thread, the alerts a process left 'pending' (it ended between its commit and its
    claim); the claim keeps each to one post, whichever process gets there first. None without a webhook."""
    if webhook_url() is None:
        return None

    def run() -> None:
        try:
            deliver_pending(engine, pending_ids(engine))
        except Exception:
            log.exception("could not read the budget alerts still waiting for the webhook")

    thread = threading.Thread(target=run, name="mindroute-budget-webhook-resume", daemon=True)
    thread.start()
    return thread
