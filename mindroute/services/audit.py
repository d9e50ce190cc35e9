"""The audit trail: one hash-chained `auditlog` row per admin action or security event, in the caller's transaction."""

from __future__ import annotations

import contextvars
import csv
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.orm import Session

from mindroute.errors import PermissionDenied
from mindroute.i18n import _l
from mindroute.models import AuditLog, User, utcnow
from mindroute.services.roles import require_admin
from mindroute.timezones import iso_time

GENESIS = "0" * 64  # the prev_hash of the very first row
# pg_advisory_xact_lock key serialising writers of the chain on PostgreSQL ("MRAUDIT" in ASCII).
ADVISORY_LOCK_KEY = 0x4D52415544495400 >> 8
KEY_REPLACED = "key replaced"  # what a changed secret is recorded as, never its value
PRUNED_ACTION = "audit.pruned"


@dataclass(frozen=True)
class AuditActor:
    """Who does what is being recorded: a signed-in user (with their address and browser) or "cli"."""

    user_id: uuid.UUID | None
    label: str
    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def of(cls, user: User | None, ip: str | None = None, user_agent: str | None = None) -> AuditActor:
        if user is None:
            return cls(None, "anonymous", ip, user_agent)
        return cls(user.id, user.email, ip, user_agent)


CLI = AuditActor(None, "cli")
SYSTEM = AuditActor(None, "system")
_current: contextvars.ContextVar[AuditActor | None] = contextvars.ContextVar("mindroute_audit_actor", default=None)


def set_actor(actor: AuditActor | None) -> contextvars.Token:
    """Sets the actor for this script run / request (the page shell does, once it knows the user)."""
    return _current.set(actor)


def current_actor() -> AuditActor | None:
    return _current.get()


@contextmanager
def acting_as(actor: AuditActor) -> Iterator[AuditActor]:
    """Everything recorded inside the block names `actor` (the CLI, a test, a sign-in route)."""
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


def _resolve(actor: AuditActor | User | None) -> AuditActor:
    current = _current.get()
    if isinstance(actor, AuditActor):
        return actor
    if isinstance(actor, User):
        if current is not None and current.user_id == actor.id:
            return current
        return AuditActor.of(actor)
    return current or SYSTEM


def _plain(value: Any) -> Any:
    """A value as JSON keeps it: ids and times as text, containers walked."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def diff(before: dict[str, Any], after: dict[str, Any], *, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """{field: [before, after]} of the fields that changed; a secret field only as "key replaced"."""
    changes: dict[str, Any] = {}
    for field in sorted(set(before) | set(after)):
        old, new = before.get(field), after.get(field)
        if old == new:
            continue
        changes[field] = KEY_REPLACED if field in secrets else [_plain(old), _plain(new)]
    return changes


def _content(row: AuditLog) -> str:
    """The row's canonical JSON content, the part of it its hash covers (everything but the hash)."""
    return json.dumps(
        {
            "seq": row.seq,
            "id": str(row.id),
            "createdat": row.created_at.isoformat(timespec="microseconds"),
            "actoruserid": str(row.actor_user_id) if row.actor_user_id else None,
            "actorlabel": row.actor_label,
            "ip": row.ip,
            "useragent": row.user_agent,
            "action": row.action,
            "targettype": row.target_type,
            "targetid": row.target_id,
            "changes": row.changes,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def row_hash(row: AuditLog) -> str:
    return hashlib.sha256((row.prev_hash + "\n" + _content(row)).encode()).hexdigest()


def _lock_chain(session: Session) -> None:
    """Writers take turns: PostgreSQL by a transaction-scoped advisory lock; SQLite serialises writers itself
    once the transaction writes, so the write lock is taken before the last hash is read."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    else:
        session.execute(text("UPDATE auditlog SET seq = seq WHERE 0 = 1"))  # takes SQLite's write lock


def record(
    session: Session,
    action: str,
    target_type: str | None,
    target_id: object = None,
    changes: dict[str, Any] | None = None,
    *,
    actor: AuditActor | User | None = None,
) -> AuditLog:
    """Appends one row to the chain in the caller's transaction (so it commits or rolls back with the change).
    The actor is `actor` (a User gets the address and browser set for this run when it is that user), else the
    one set for this run, else "system". `changes` must hold no secret."""
    who = _resolve(actor)
    session.flush()  # the change itself first, so a failing change raises before anything is recorded
    _lock_chain(session)
    last = session.execute(select(AuditLog.seq, AuditLog.hash).order_by(AuditLog.seq.desc()).limit(1)).first()
    row = AuditLog(
        id=uuid.uuid4(),
        seq=(last[0] + 1) if last else 1,
        created_at=utcnow(),
        actor_user_id=who.user_id,
        actor_label=(who.label or "")[:255],
        ip=who.ip[:50] if who.ip else None,
        user_agent=who.user_agent[:1000] if who.user_agent else None,
        action=action,
        target_type=target_type,
        target_id=str(target_id)[:255] if target_id is not None else None,
        changes=_plain(changes) if changes else None,
        prev_hash=last[1] if last else GENESIS,
    )
    row.hash = row_hash(row)
    session.add(row)
    session.flush()
    return row


# --- verification ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Broken:
    """The first row where the chain does not hold, and why."""

    seq: int
    id: uuid.UUID
    reason: str


@dataclass(frozen=True)
class Verified:
    rows: int
    broken: Broken | None


def _anchor_ok(session: Session, first: AuditLog) -> bool:
    """The first row of a pruned chain is anchored by the `audit.pruned` row written by the prune."""
    if first.prev_hash == GENESIS and first.seq == 1:
        return True
    anchors = session.scalars(select(AuditLog).where(AuditLog.action == PRUNED_ACTION)).all()
    for anchor in anchors:
        kept = (anchor.changes or {}).get("first_kept") or {}
        if kept.get("seq") == first.seq and kept.get("prev_hash") == first.prev_hash:
            return True
    return False


def verify(engine: Engine, progress: Callable[[int, int], None] | None = None, batch: int = 2000) -> Verified:
    """Walks the chain in `seq` order; the first row whose hash, link or position does not hold (or None).
    `progress(done, total)` is called after each batch (the CLI draws a bar with it)."""
    with Session(engine) as session:
        total = session.scalar(select(func.count()).select_from(AuditLog)) or 0
        prev_hash: str | None = None
        prev_seq: int | None = None
        done = 0
        after = 0
        while True:
            rows = session.scalars(
                select(AuditLog).where(AuditLog.seq > after).order_by(AuditLog.seq).limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                if prev_hash is None:
                    if not _anchor_ok(session, row):
                        return Verified(total, Broken(row.seq, row.id, "the first row is not the chain's start"))
                elif row.seq != prev_seq + 1:  # type: ignore[operator]
                    return Verified(total, Broken(row.seq, row.id, f"row {prev_seq + 1} is missing"))  # type: ignore[operator]
                elif row.prev_hash != prev_hash:
                    return Verified(total, Broken(row.seq, row.id, "its prev_hash is not the previous row's hash"))
                if row_hash(row) != row.hash:
                    return Verified(total, Broken(row.seq, row.id, "its content does not match its hash"))
                prev_hash, prev_seq = row.hash, row.seq
            done += len(rows)
            after = rows[-1].seq
            session.expunge_all()
            if progress:
                progress(done, total)
        return Verified(total, None)


# --- retention -------------------------------------------------------------------------------------------


def prune(engine: Engine, older_than_days: int, actor: AuditActor = CLI) -> int:
    """Deletes the rows older than N days and re-anchors the chain: the same transaction appends an
    `audit.pruned` row naming the first kept row's seq and prev_hash, which `verify` then accepts as the start."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    with Session(engine) as session, session.begin():
        _lock_chain(session)
        first_kept = session.scalars(
            select(AuditLog).where(AuditLog.created_at >= cutoff).order_by(AuditLog.seq).limit(1)
        ).first()
        if first_kept is None:
            last = session.scalar(select(func.max(AuditLog.seq)))
            if last is None:
                return 0
            # Everything is old: keep the last row, so the chain still has an anchored start.
            first_kept = session.scalars(select(AuditLog).where(AuditLog.seq == last)).one()
        deleted = session.execute(delete(AuditLog).where(AuditLog.seq < first_kept.seq)).rowcount or 0
        if deleted:
            record(
                session,
                PRUNED_ACTION,
                "auditlog",
                None,
                {
                    "deleted": deleted,
                    "older_than_days": older_than_days,
                    "first_kept": {"seq": first_kept.seq, "prev_hash": first_kept.prev_hash},
                },
                actor=actor,
            )
        return deleted


# --- reading (the Audit page) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None  # part of the actor label (email or "cli"), case-insensitive
    action: str | None = None  # exact action, or a prefix ending in "." ("provider.")
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(flt: AuditFilter) -> Any:
    query = select(AuditLog)
    if flt.actor:
        query = query.where(func.lower(AuditLog.actor_label).contains(flt.actor.lower(), autoescape=True))
    if flt.action:
        if flt.action.endswith("."):
            query = query.where(AuditLog.action.startswith(flt.action, autoescape=True))
        else:
            query = query.where(AuditLog.action == flt.action)
    if flt.target_type:
        query = query.where(AuditLog.target_type == flt.target_type)
    if flt.target_id:
        query = query.where(AuditLog.target_id == flt.target_id)
    if flt.since:
        query = query.where(AuditLog.created_at >= flt.since)
    if flt.until:
        query = query.where(AuditLog.created_at < flt.until)
    return query


def _require_admin(actor: User | None) -> None:
    if actor is None:  # the CLI reads the chain with verify, not through these
        raise PermissionDenied(_l("Only administrators can read the audit trail"))
    require_admin(actor)


def list_rows(
    engine: Engine, actor: User | None, flt: AuditFilter, before_seq: int | None = None, limit: int = 50
) -> list[AuditLog]:
    """Administrators: newest first, keyset-paged by `seq`: the next page is `before_seq=<last row's seq>`."""
    _require_admin(actor)
    query = _filtered(flt)
    if before_seq is not None:
        query = query.where(AuditLog.seq < before_seq)
    with Session(engine, expire_on_commit=False) as session:
        rows = list(session.scalars(query.order_by(AuditLog.seq.desc()).limit(limit)).all())
        session.expunge_all()
        return rows


def count_rows(engine: Engine, actor: User | None, flt: AuditFilter) -> int:
    _require_admin(actor)
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(_filtered(flt).subquery())) or 0


def actions(engine: Engine, actor: User | None) -> list[str]:
    _require_admin(actor)
    with Session(engine) as session:
        return list(session.scalars(select(AuditLog.action).distinct().order_by(AuditLog.action)).all())


CSV_COLUMNS = ("seq", "created_at", "actor", "ip", "user_agent", "action", "target_type", "target_id", "changes")


def _csv_cell(value: str) -> str:
    """A cell a spreadsheet will not run as a formula (untrusted text is data)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_csv(engine: Engine, actor: User | None, flt: AuditFilter, limit: int = 100_000, zone: tzinfo = UTC) -> str:
    """Administrators: the filtered rows (newest first) as CSV, times ISO-8601 with `zone`'s offset, cells a
    spreadsheet would run as formulas quoted."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    before: int | None = None
    written = 0
    while written < limit:
        rows = list_rows(engine, actor, flt, before, min(2000, limit - written))
        if not rows:
            break
        for row in rows:
            cells = [
                str(row.seq),
                iso_time(row.created_at, zone),
                row.actor_label,
                row.ip or "",
                row.user_agent or "",
                row.action,
                row.target_type or "",
                row.target_id or "",
                json.dumps(row.changes, sort_keys=True) if row.changes else "",
            ]
            writer.writerow([_csv_cell(c) for c in cells])
        written += len(rows)
        before = rows[-1].seq
    return out.getvalue()
