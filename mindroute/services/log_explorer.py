"""The log explorer: keyset-paginated calls with the usage filters, one call's detail, streamed CSV.

Pages are ordered newest first by (createdAt, id) and continue after the last row seen, so any
page costs the same index range scan however deep it is. A non-admin sees their own calls only.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select
from sqlalchemy.orm import Session

from mindroute.analytics import rollups
from mindroute.analytics.filter import UsageFilter, Viewer, log_conditions, scoped
from mindroute.analytics.levels import SOURCE_API, SOURCE_PLAYGROUND, api_key_of, call_columns, source_of
from mindroute.errors import NotFound, PermissionDenied
from mindroute.i18n import _l
from mindroute.models import ApiKey, Log, Provider, User, utcnow
from mindroute.services import audit
from mindroute.services.unit_of_work import unit_of_work
from mindroute.services.users import require_admin
from mindroute.timezones import iso_time
from mindroute.validation import ValidationError

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
EXPORT_PAGE_ROWS = 2_000
SEARCH_MAX_CHARS = 200
CSV_COLUMNS = (
    "id",
    "created_at",
    "user_email",
    "provider",
    "model",
    "request_type",
    "source",
    "api_key_id",
    "status_code",
    "tokens_used",
    "prompt_tokens",
    "completion_tokens",
    "duration_ms",
    "error_message",
    "ip",
)
RETENTION_DAYS_MAX = 36_500  # a hundred years: anything longer is a typo


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after this (created_at, id)."""

    created_at: datetime
    id: uuid.UUID


@dataclass(frozen=True)
class CallRow:
    id: uuid.UUID
    created_at: datetime  # naive UTC
    user_id: uuid.UUID | None
    user_email: str | None
    provider: str | None
    model: str | None
    source: str
    api_key_id: str | None
    status_code: int | None
    tokens_used: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    duration_ms: int | None
    error_message: str | None
    ip: str | None
    request_type: str = "chat"  # chat, embedding, completion
    api_key_name: str | None = None  # None when no key was used, or the key has been deleted since

    @property
    def api_key_label(self) -> str:
        """The key's name, "deleted key" for a key that no longer exists, "" for a call without a key."""
        if self.api_key_id is None:
            return ""
        return self.api_key_name if self.api_key_name is not None else "deleted key"


@dataclass(frozen=True)
class CallPage:
    rows: list[CallRow]
    next_cursor: Cursor | None  # None on the last page


@dataclass(frozen=True)
class CallDetail:
    """One call as the detail view shows it; bodies are pretty-printed JSON text, to be shown as
    untrusted text (never rendered as Markdown or HTML)."""

    row: CallRow
    request_body: str
    response_body: str
    user_agent: str | None
    request_type: str
    time_to_first_token_ms: int | None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conditions(flt: UsageFilter, viewer: Viewer, search: str | None) -> list[ColumnElement[bool]]:
    flt = scoped(flt, viewer)
    conds = [Log.created_at >= flt.start, Log.created_at < flt.end, *log_conditions(flt)]
    if search and search.strip():
        needle = _escape_like(search.strip()[:SEARCH_MAX_CHARS])
        conds.append(Log.error_message.ilike(f"%{needle}%", escape="\\"))
    return conds


def _select_rows() -> Any:
    return (
        select(
            Log.id,
            Log.created_at,
            Log.user_id,
            User.email,
            Provider.name,
            *call_columns(),
            Log.error_message,
            Log.ip,
            Log.request_type,
        )
        .outerjoin(User, User.id == Log.user_id)
        .outerjoin(Provider, Provider.id == Log.provider_id)
    )


def _row(values: Any) -> CallRow:
    (
        log_id,
        created,
        user_id,
        email,
        provider,
        model,
        source,
        key,
        status,
        tokens,
        prompt,
        completion,
        ms,
        error,
        ip,
        request_type,
    ) = values
    return CallRow(
        id=log_id,
        created_at=created,
        user_id=user_id,
        user_email=email,
        provider=provider,
        model=model,
        source=SOURCE_PLAYGROUND if source == SOURCE_PLAYGROUND else SOURCE_API,
        api_key_id=str(key) if key else None,
        status_code=status,
        tokens_used=tokens,
        prompt_tokens=prompt,
        completion_tokens=completion,
        duration_ms=ms,
        error_message=error,
        ip=ip,
        request_type=request_type,
    )


def _key_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:  # an imported row's key id that is not a UUID: no key of ours has it
        return None


def _with_key_names(session: Session, rows: list[CallRow]) -> list[CallRow]:
    """The rows with their API keys' names, read in one query for the page (the key id lives in the
    request body's JSON, so a join would have to cast it on every row of the range)."""
    ids = {key_id for key_id in (_key_uuid(row.api_key_id) for row in rows) if key_id is not None}
    if not ids:
        return rows
    names = {key_id: name for key_id, name in session.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(ids)))}
    return [replace(row, api_key_name=names.get(_key_uuid(row.api_key_id))) if row.api_key_id else row for row in rows]


@unit_of_work
def count_calls(session: Session, viewer: Viewer, flt: UsageFilter, *, search: str | None = None) -> int:
    """How many calls match the filters and the search (the viewer's own unless an admin)."""
    stmt = select(func.count()).select_from(Log).where(*_conditions(flt, viewer, search))
    return session.scalar(stmt) or 0


@unit_of_work
def list_calls(
    session: Session,
    viewer: Viewer,
    flt: UsageFilter,
    *,
    search: str | None = None,
    after: Cursor | None = None,
    page_size: int = PAGE_SIZE,
) -> CallPage:
    """One page of calls, newest first, continuing after `after` (keyset pagination)."""
    page_size = max(1, min(page_size, MAX_PAGE_SIZE))
    stmt = _select_rows().where(*_conditions(flt, viewer, search))
    if after is not None:
        stmt = stmt.where(
            or_(Log.created_at < after.created_at, and_(Log.created_at == after.created_at, Log.id < after.id))
        )
    stmt = stmt.order_by(Log.created_at.desc(), Log.id.desc()).limit(page_size + 1)
    rows = [_row(r) for r in session.execute(stmt)]
    more = len(rows) > page_size
    rows = _with_key_names(session, rows[:page_size])
    cursor = Cursor(rows[-1].created_at, rows[-1].id) if more else None
    return CallPage(rows, cursor)


def _pretty(body: Any) -> str:
    if body is None:
        return ""
    return json.dumps(body, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@unit_of_work
def call_detail(session: Session, viewer: Viewer, log_id: uuid.UUID) -> CallDetail:
    """A call's full record; NotFound when it does not exist or is not the viewer's to see."""
    stmt = _select_rows().add_columns(Log.request_body, Log.response_body, Log.user_agent)
    stmt = stmt.where(Log.id == log_id)
    if viewer.role != "admin":
        stmt = stmt.where(Log.user_id == viewer.id)
    found = session.execute(stmt).first()
    if found is None:
        raise NotFound(_l("No such call"))
    row = _row(found[:16])
    request, response, agent = found[16:]
    row = _with_key_names(session, [replace(row, source=source_of(request), api_key_id=api_key_of(request))])[0]
    ttft = response.get("time_to_first_token_ms") if isinstance(response, dict) else None
    return CallDetail(
        row=row,
        request_body=_pretty(request),
        response_body=_pretty(response),
        user_agent=agent,
        request_type=row.request_type,
        time_to_first_token_ms=ttft if isinstance(ttft, int) else None,
    )


def _csv_line(values: tuple[Any, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(values)
    return buffer.getvalue()


def _csv_safe(value: Any) -> Any:
    # Spreadsheet formula injection: a cell starting with = + - @ is read as a formula.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def call_pages(
    engine: Engine,
    viewer: Viewer,
    flt: UsageFilter,
    *,
    search: str | None = None,
    page_rows: int = EXPORT_PAGE_ROWS,
) -> Iterator[list[CallRow]]:
    """Every filtered call, newest first, a keyset page at a time, each page read in its own short
    session: memory stays at one page whatever the number of rows."""
    after: Cursor | None = None
    while True:
        with Session(engine) as session:
            page = list_calls(session, viewer, flt, search=search, after=after, page_size=page_rows)
        if page.rows:
            yield page.rows
        if page.next_cursor is None:
            return
        after = page.next_cursor


def export_calls_csv(
    engine: Engine,
    viewer: Viewer,
    flt: UsageFilter,
    *,
    search: str | None = None,
    page_rows: int = EXPORT_PAGE_ROWS,
    zone: tzinfo = UTC,
) -> Iterator[str]:
    """The filtered calls as CSV text chunks (header first, then one chunk per page of `call_pages`);
    times in ISO-8601 with their offset in `zone`."""
    yield _csv_line(CSV_COLUMNS)
    for rows in call_pages(engine, viewer, flt, search=search, page_rows=page_rows):
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in rows:
            writer.writerow(
                _csv_safe(v)
                for v in (
                    row.id,
                    iso_time(row.created_at, zone),
                    row.user_email,
                    row.provider,
                    row.model,
                    row.request_type,
                    row.source,
                    row.api_key_id,
                    row.status_code,
                    row.tokens_used,
                    row.prompt_tokens,
                    row.completion_tokens,
                    row.duration_ms,
                    row.error_message,
                    row.ip,
                )
            )
        yield buffer.getvalue()


# --- retention (administrators) -----------------------------------------------------------------


@dataclass(frozen=True)
class PrunePlan:
    """What "delete calls older than N days" would delete, shown for confirmation before it runs.

    `now` pins the cutoff: confirming later deletes exactly the calls that were counted (those
    before `cutoff`), not the ones that have aged past N days since.
    """

    days: int
    now: datetime  # naive UTC
    calls: int

    @property
    def cutoff(self) -> datetime:
        return self.now - timedelta(days=self.days)


def _require_admin(actor: User | None) -> User:
    # Only a signed-in administrator here: the CLI calls rollups.prune_logs itself.
    if actor is None:
        raise PermissionDenied(_l("Only administrators can do this"))
    require_admin(actor)
    return actor


def retention_days(value: object) -> int:
    """N of "older than N days": a whole number from 1 to RETENTION_DAYS_MAX, else a message for the field."""
    problem = _l("Days must be a whole number from 1 to {max}", max=RETENTION_DAYS_MAX)
    if isinstance(value, bool):
        raise ValidationError("days", problem)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValidationError("days", problem)
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise ValidationError(
                "days", _l("{problem} (got {got})", problem=problem, got=repr(text[:20])) if text else problem
            )
        value = int(text)
    if not isinstance(value, int) or not 1 <= value <= RETENTION_DAYS_MAX:
        raise ValidationError(
            "days", _l("{problem} (got {got})", problem=problem, got=str(value)) if isinstance(value, int) else problem
        )
    return value


@unit_of_work
def oldest_call_at(session: Session, actor: User | None) -> datetime | None:
    """Administrators: when the oldest call still in the logs was made (naive UTC), None when there are none."""
    _require_admin(actor)
    return session.scalar(select(func.min(Log.created_at)))


@unit_of_work
def plan_prune(session: Session, actor: User | None, days: object, *, now: datetime | None = None) -> PrunePlan:
    """Administrators: how many calls are older than `days` days now, for the confirmation step."""
    _require_admin(actor)
    days = retention_days(days)
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    calls = session.scalar(select(func.count()).select_from(Log).where(Log.created_at < cutoff)) or 0
    return PrunePlan(days=days, now=now, calls=calls)


def prune_calls(
    engine: Engine,
    actor: User | None,
    plan: PrunePlan,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    batch_rows: int = rollups.PRUNE_BATCH_ROWS,
) -> int:
    """Administrators: delete the calls of a confirmed plan, oldest first in short batches (the app stays
    responsive and the rollups stay in step); `on_progress(deleted so far, total)`. Returns rows deleted."""
    _require_admin(actor)
    days = retention_days(plan.days)
    deleted = rollups.prune_logs(
        engine, days, batch_rows=batch_rows, now=plan.now, progress=False, on_progress=on_progress
    )
    record_retention_run(engine, actor, days, plan.cutoff, deleted)
    return deleted


def record_retention_run(
    engine: Engine, actor: User | audit.AuditActor | None, days: int, cutoff: datetime, deleted: int
) -> None:
    """One audit row for a finished retention run (its batches commit one by one, so the row follows them)."""
    from mindroute.db import transaction

    with transaction(engine) as session:
        changes = {"older_than_days": days, "cutoff": cutoff, "deleted": deleted}
        audit.record(session, "logs.retention_run", "logs", None, changes, actor=actor)
