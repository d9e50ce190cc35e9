"""The seven tables of the schema document, plus MindRoute's documented additions.

Physical names are lower-case, as the document's unquoted SQL creates them on PostgreSQL,
so `SELECT email, isActive FROM Users` works as written. Timestamps are naive UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import FunctionElement

from mindroute.providers.builtin import BUILTIN_PROTOCOLS

ROLES = ("admin", "user")
TICKET_STATUSES = ("open", "in_progress", "resolved", "closed")
PROTOCOLS = BUILTIN_PROTOCOLS  # the registry's built-in names; a plug-in protocol needs a migration

# The names PostgreSQL itself gives these constraints, so models, migrations and a database
# built from the document's SQL all agree.
NAMING_CONVENTION = {
    "pk": "%(table_name)s_pkey",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
}


def utcnow() -> datetime:
    """Now, as the naive UTC timestamp every column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class utc_now(FunctionElement):  # noqa: N801 - reads as SQL
    """Server-side default: the current UTC time, whatever the server's time zone."""

    type = DateTime()
    inherit_cache = True


@compiles(utc_now, "postgresql")
def _utc_now_pg(element: utc_now, compiler: Any, **kw: Any) -> str:
    return "timezone('utc', now())"


@compiles(utc_now)
def _utc_now_default(element: utc_now, compiler: Any, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"  # SQLite's CURRENT_TIMESTAMP is UTC


class new_uuid(FunctionElement):  # noqa: N801 - reads as SQL
    """Server-side default id, so rows inserted by hand in SQL get one too."""

    type = Uuid()
    inherit_cache = True


@compiles(new_uuid, "postgresql")
def _new_uuid_pg(element: new_uuid, compiler: Any, **kw: Any) -> str:
    return "gen_random_uuid()"  # built in since PostgreSQL 13, no extension


@compiles(new_uuid)
def _new_uuid_default(element: new_uuid, compiler: Any, **kw: Any) -> str:
    return "(lower(hex(randomblob(16))))"  # SQLite: the 32 hex digits Uuid stores there


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _pk() -> Mapped[uuid.UUID]:
    return mapped_column("id", Uuid, primary_key=True, default=uuid.uuid4, server_default=new_uuid())


def _created() -> Mapped[datetime]:
    return mapped_column("createdat", DateTime, nullable=False, default=utcnow, server_default=utc_now())


def _updated() -> Mapped[datetime]:
    return mapped_column(
        "updatedat", DateTime, nullable=False, default=utcnow, onupdate=utcnow, server_default=utc_now()
    )


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'user')", name="users_role_check"),
        CheckConstraint("theme IS NULL OR theme IN ('light', 'dark')", name="users_theme_check"),
        CheckConstraint("language IS NULL OR language IN ('en', 'ko')", name="users_language_check"),
    )

    id: Mapped[uuid.UUID] = _pk()
    email: Mapped[str] = mapped_column("email", String(255), unique=True, nullable=False)
    password: Mapped[str] = mapped_column("password", String(255), nullable=False)
    name: Mapped[str] = mapped_column("name", String(100), nullable=False)
    role: Mapped[str] = mapped_column("role", String(10), nullable=False, default="user", server_default="user")
    is_active: Mapped[bool] = mapped_column("isactive", Boolean, nullable=False, default=True, server_default=true())
    last_login: Mapped[datetime | None] = mapped_column("lastlogin", DateTime)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    # Display preferences (migration 0009): an IANA zone and 'light' / 'dark'; None follows the browser.
    timezone: Mapped[str | None] = mapped_column("timezone", String(64))
    theme: Mapped[str | None] = mapped_column("theme", String(10))
    # The console's language (migration 0011): 'en' or 'ko'; None follows the browser.
    language: Mapped[str | None] = mapped_column("language", String(10))

    def __repr__(self) -> str:  # never the password hash
        return f"User(id={self.id}, email={self.email!r}, role={self.role!r})"


class RefreshToken(Base):
    __tablename__ = "refreshtokens"
    __table_args__ = (
        Index("refreshtokens_userid_idx", "userid"),
        Index("refreshtokens_token_idx", "token"),
        Index("refreshtokens_expiresat_idx", "expiresat"),
    )

    id: Mapped[uuid.UUID] = _pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        "userid", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    token: Mapped[str] = mapped_column("token", String(255), unique=True, nullable=False)  # SHA-256 digest only
    expires_at: Mapped[datetime] = mapped_column("expiresat", DateTime, nullable=False)
    is_revoked: Mapped[bool] = mapped_column(
        "isrevoked", Boolean, nullable=False, default=False, server_default=false()
    )
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class ApiKey(Base):
    __tablename__ = "apikeys"
    __table_args__ = (
        Index("apikeys_userid_idx", "userid"),
        Index("apikeys_key_idx", "key"),
        Index("apikeys_expiresat_idx", "expiresat"),
    )

    id: Mapped[uuid.UUID] = _pk()
    # The document says INTEGER, which contradicts users.id; it is a UUID here.
    user_id: Mapped[uuid.UUID] = mapped_column(
        "userid", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column("name", String(255), nullable=False)
    key: Mapped[str] = mapped_column("key", String(255), unique=True, nullable=False)  # SHA-256 digest only
    last_used_at: Mapped[datetime | None] = mapped_column("lastusedat", DateTime)
    expires_at: Mapped[datetime | None] = mapped_column("expiresat", DateTime)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    # Addition (migration 0002): the first characters of the key, shown to tell keys apart.
    prefix: Mapped[str] = mapped_column("prefix", String(20), nullable=False, server_default="")
    # Addition (migration 0003): when the key stops working by revocation. In the future while a
    # rotated-out key is in its grace period; NULL for a key never revoked.
    revoked_at: Mapped[datetime | None] = mapped_column("revokedat", DateTime)


class Provider(Base):
    __tablename__ = "providers"
    __table_args__ = (
        CheckConstraint(
            "protocol IN (" + ", ".join(f"'{name}'" for name in PROTOCOLS) + ")", name="providers_protocol_check"
        ),
    )

    id: Mapped[uuid.UUID] = _pk()
    name: Mapped[str] = mapped_column("name", String(100), unique=True, nullable=False)
    api_key: Mapped[str | None] = mapped_column("apikey", Text)  # Fernet ciphertext, never plaintext
    endpoint_url: Mapped[str | None] = mapped_column("endpointurl", String(255))
    allow_images: Mapped[bool] = mapped_column(
        "allowimages", Boolean, nullable=False, default=False, server_default=false()
    )
    allow_videos: Mapped[bool] = mapped_column(
        "allowvideos", Boolean, nullable=False, default=False, server_default=false()
    )
    allow_files: Mapped[bool] = mapped_column(
        "allowfiles", Boolean, nullable=False, default=False, server_default=false()
    )
    max_tokens: Mapped[int | None] = mapped_column("maxtokens", Integer)
    settings: Mapped[dict[str, Any] | None] = mapped_column("settings", JSONType)
    is_active: Mapped[bool] = mapped_column("isactive", Boolean, nullable=False, default=True, server_default=true())
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    # Addition (migration 0002): which wire protocol the provider speaks.
    protocol: Mapped[str] = mapped_column(
        "protocol", String(30), nullable=False, default="openai", server_default="openai"
    )


class UserProvider(Base):
    __tablename__ = "userproviders"
    __table_args__ = (UniqueConstraint("userid", "providerid"),)

    id: Mapped[uuid.UUID] = _pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        "userid", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    provider_id: Mapped[uuid.UUID] = mapped_column(
        "providerid", Uuid, ForeignKey("providers.id", ondelete="CASCADE"), nullable=False
    )
    allowed: Mapped[bool] = mapped_column("allowed", Boolean, nullable=False, default=True, server_default=true())
    max_tokens_override: Mapped[int | None] = mapped_column("maxtokensoverride", Integer)
    settings: Mapped[dict[str, Any] | None] = mapped_column("settings", JSONType)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Log(Base):
    __tablename__ = "logs"
    __table_args__ = (
        Index("logs_userid_idx", "userid"),
        Index("logs_providerid_idx", "providerid"),
        Index("logs_createdat_idx", "createdat"),
        Index("logs_modelid_idx", "modelid"),
    )

    id: Mapped[uuid.UUID] = _pk()
    user_id: Mapped[uuid.UUID | None] = mapped_column("userid", Uuid, ForeignKey("users.id", ondelete="SET NULL"))
    provider_id: Mapped[uuid.UUID | None] = mapped_column(
        "providerid", Uuid, ForeignKey("providers.id", ondelete="SET NULL")
    )
    model_id: Mapped[str | None] = mapped_column("modelid", String(100))
    request_type: Mapped[str] = mapped_column("requesttype", String(50), nullable=False)
    request_body: Mapped[dict[str, Any] | None] = mapped_column("requestbody", JSONType)
    response_body: Mapped[dict[str, Any] | None] = mapped_column("responsebody", JSONType)
    tokens_used: Mapped[int | None] = mapped_column("tokensused", Integer)
    prompt_tokens: Mapped[int | None] = mapped_column("prompttokens", Integer)
    completion_tokens: Mapped[int | None] = mapped_column("completiontokens", Integer)
    status_code: Mapped[int | None] = mapped_column("statuscode", Integer)
    error_message: Mapped[str | None] = mapped_column("errormessage", Text)
    duration: Mapped[int | None] = mapped_column("duration", Integer)  # milliseconds
    ip: Mapped[str | None] = mapped_column("ip", String(50))
    user_agent: Mapped[str | None] = mapped_column("useragent", Text)
    created_at: Mapped[datetime] = _created()


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'in_progress', 'resolved', 'closed')", name="tickets_status_check"),
        Index("tickets_userid_idx", "userid"),
        Index("tickets_status_idx", "status"),
        Index("tickets_createdat_idx", "createdat"),
    )

    id: Mapped[uuid.UUID] = _pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        "userid", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    subject: Mapped[str] = mapped_column("subject", String(255), nullable=False)
    message: Mapped[str] = mapped_column("message", Text, nullable=False)
    status: Mapped[str] = mapped_column("status", String(20), nullable=False, default="open", server_default="open")
    admin_response: Mapped[str | None] = mapped_column("adminresponse", Text)
    admin_id: Mapped[uuid.UUID | None] = mapped_column("adminid", Uuid, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    resolved_at: Mapped[datetime | None] = mapped_column("resolvedat", DateTime)
    # Addition (migration 0003): the logged call the ticket is about (one of the owner's own).
    # Indexed so deleting old logs does not scan the tickets for each row.
    log_id: Mapped[uuid.UUID | None] = mapped_column(
        "logid", Uuid, ForeignKey("logs.id", ondelete="SET NULL"), index=True
    )


class LoginAttempt(Base):
    """Addition (migration 0002): sign-in attempts, for throttling shared by every app process."""

    __tablename__ = "loginattempts"
    __table_args__ = (
        Index("loginattempts_email_createdat_idx", "email", "createdat"),
        Index("loginattempts_ip_createdat_idx", "ip", "createdat"),
    )

    id: Mapped[uuid.UUID] = _pk()
    email: Mapped[str] = mapped_column("email", String(255), nullable=False)  # lower-cased as typed
    ip: Mapped[str | None] = mapped_column("ip", String(50))
    succeeded: Mapped[bool] = mapped_column("succeeded", Boolean, nullable=False, default=False, server_default=false())
    created_at: Mapped[datetime] = _created()


class TicketMessage(Base):
    """Addition (migration 0003): a ticket's history after its first message (which stays in tickets.message)."""

    __tablename__ = "ticketmessages"
    __table_args__ = (Index("ticketmessages_ticketid_createdat_idx", "ticketid", "createdat"),)

    id: Mapped[uuid.UUID] = _pk()
    ticket_id: Mapped[uuid.UUID] = mapped_column(
        "ticketid", Uuid, ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False
    )
    author_id: Mapped[uuid.UUID | None] = mapped_column("authorid", Uuid, ForeignKey("users.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column("body", Text, nullable=False)
    created_at: Mapped[datetime] = _created()


class _RollupSums:
    """The sums every rollup row carries (see mindroute.analytics.rollups)."""

    requests: Mapped[int] = mapped_column("requests", BigInteger, nullable=False)
    errors: Mapped[int] = mapped_column("errors", BigInteger, nullable=False)
    tokens: Mapped[int] = mapped_column("tokens", BigInteger, nullable=False)
    prompt_tokens: Mapped[int] = mapped_column("prompttokens", BigInteger, nullable=False)
    completion_tokens: Mapped[int] = mapped_column("completiontokens", BigInteger, nullable=False)
    duration_sum: Mapped[int] = mapped_column("durationsum", BigInteger, nullable=False)
    duration_count: Mapped[int] = mapped_column("durationcount", BigInteger, nullable=False)
    latency: Mapped[bytes] = mapped_column("latency", LargeBinary, nullable=False)


class _AllDims:
    """The dimensions of a call the fine rollups keep; `dimkey` is a digest of them (NULLs included),
    so the upsert has a plain unique key on both databases."""

    bucket: Mapped[datetime] = mapped_column("bucket", DateTime, primary_key=True)
    dim_key: Mapped[str] = mapped_column("dimkey", String(64), primary_key=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column("userid", Uuid)
    provider_id: Mapped[uuid.UUID | None] = mapped_column("providerid", Uuid)
    model_id: Mapped[str | None] = mapped_column("modelid", String(100))
    source: Mapped[str] = mapped_column("source", String(20), nullable=False)
    api_key_id: Mapped[str | None] = mapped_column("apikeyid", String(64))
    status_code: Mapped[int | None] = mapped_column("statuscode", Integer)
    request_type: Mapped[str] = mapped_column("requesttype", String(50), nullable=False, server_default="chat")


class UsageRollup(_AllDims, _RollupSums, Base):
    """Addition (migration 0004): Logs aggregated per UTC hour and dimensions, kept in step with Logs.

    One row per (hour, user, provider, model, source, API key, status code). `latency` is a histogram
    of durations over log-spaced buckets, packed (index, calls) pairs (see mindroute.analytics.rollups).
    """

    __tablename__ = "usagerollups"
    __table_args__ = (Index("usagerollups_userid_bucket_idx", "userid", "bucket"),)


class UsageDailyRollup(_AllDims, _RollupSums, Base):
    """Addition (migration 0005): the same as usagerollups per UTC day (`bucket` is its midnight), for
    the totals of long ranges; kept in step with Logs and rebuilt together with usagerollups."""

    __tablename__ = "usagedailyrollups"
    __table_args__ = (Index("usagedailyrollups_userid_bucket_idx", "userid", "bucket"),)


class UsageModelRollup(_RollupSums, Base):
    """Addition (migration 0005): calls per UTC hour and (provider, model, request type; migration 0006)
    only, for the charts of the unfiltered (or provider/model/request-type-filtered) Usage page; kept in
    step with Logs like usagerollups."""

    __tablename__ = "usagemodelrollups"

    bucket: Mapped[datetime] = mapped_column("bucket", DateTime, primary_key=True)  # UTC hour start
    dim_key: Mapped[str] = mapped_column("dimkey", String(64), primary_key=True)
    provider_id: Mapped[uuid.UUID | None] = mapped_column("providerid", Uuid)
    model_id: Mapped[str | None] = mapped_column("modelid", String(100))
    request_type: Mapped[str] = mapped_column("requesttype", String(50), nullable=False, server_default="chat")


class AuditLog(Base):
    """Addition (migration 0007): the audit trail, one row per admin action or security event, only ever inserted.

    `seq` orders the hash chain (1, 2, ... given under a lock, see mindroute.services.audit); `hash` is
    sha256 over `prevhash` and the row's canonical JSON content. `actoruserid` has no foreign key: deleting a
    user must not rewrite (and so break) the rows that name them.
    """

    __tablename__ = "auditlog"
    __table_args__ = (
        Index("auditlog_createdat_idx", "createdat"),
        Index("auditlog_actoruserid_createdat_idx", "actoruserid", "createdat"),
        Index("auditlog_action_createdat_idx", "action", "createdat"),
        Index("auditlog_targettype_targetid_idx", "targettype", "targetid"),
    )

    id: Mapped[uuid.UUID] = _pk()
    seq: Mapped[int] = mapped_column("seq", BigInteger, unique=True, nullable=False)
    created_at: Mapped[datetime] = _created()
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column("actoruserid", Uuid)
    actor_label: Mapped[str] = mapped_column("actorlabel", String(255), nullable=False)
    ip: Mapped[str | None] = mapped_column("ip", String(50))
    user_agent: Mapped[str | None] = mapped_column("useragent", Text)
    action: Mapped[str] = mapped_column("action", String(50), nullable=False)
    target_type: Mapped[str | None] = mapped_column("targettype", String(50))
    target_id: Mapped[str | None] = mapped_column("targetid", String(255))
    changes: Mapped[Any | None] = mapped_column("changes", JSONType)
    prev_hash: Mapped[str] = mapped_column("prevhash", String(64), nullable=False)
    hash: Mapped[str] = mapped_column("hash", String(64), nullable=False)


LIMIT_SCOPES = ("default", "user", "key", "provider")
LIMIT_SETTERS = ("admin", "owner")
LIMIT_PERIODS = ("day", "week", "month", "total")
ALERT_LEVELS = ("warning", "spent")


class Limit(Base):
    """Addition (migration 0008): one rule of requests per minute, tokens per minute and a budget per period.

    `target` names what it applies to, one rule per target: "default" (every user without a rule of their
    own), "user:<id>", "key:<id>" (set by an admin), "key:<id>:owner" (set by the key's owner, tighter
    only in effect: the tightest rule wins) and "provider:<id>" (the organisation's use of it). The id
    columns repeat the target for the foreign keys, so a deleted user, key or provider takes its rules.
    """

    __tablename__ = "limits"
    __table_args__ = (
        CheckConstraint("scope IN ('default', 'user', 'key', 'provider')", name="limits_scope_check"),
        CheckConstraint("setby IN ('admin', 'owner')", name="limits_setby_check"),
        CheckConstraint("period IN ('day', 'week', 'month', 'total')", name="limits_period_check"),
        CheckConstraint("warnpercent BETWEEN 1 AND 100", name="limits_warnpercent_check"),
        Index("limits_updatedat_idx", "updatedat"),
    )

    id: Mapped[uuid.UUID] = _pk()
    target: Mapped[str] = mapped_column("target", String(80), unique=True, nullable=False)
    scope: Mapped[str] = mapped_column("scope", String(20), nullable=False)
    set_by: Mapped[str] = mapped_column("setby", String(10), nullable=False, default="admin", server_default="admin")
    user_id: Mapped[uuid.UUID | None] = mapped_column("userid", Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column("apikeyid", Uuid, ForeignKey("apikeys.id", ondelete="CASCADE"))
    provider_id: Mapped[uuid.UUID | None] = mapped_column(
        "providerid", Uuid, ForeignKey("providers.id", ondelete="CASCADE")
    )
    rpm: Mapped[int | None] = mapped_column("rpm", Integer)
    tpm: Mapped[int | None] = mapped_column("tpm", BigInteger)
    budget_usd: Mapped[float | None] = mapped_column("budgetusd", Float)
    budget_tokens: Mapped[int | None] = mapped_column("budgettokens", BigInteger)
    period: Mapped[str] = mapped_column("period", String(10), nullable=False, default="month", server_default="month")
    timezone: Mapped[str] = mapped_column("timezone", String(64), nullable=False, default="UTC", server_default="UTC")
    warn_percent: Mapped[int] = mapped_column("warnpercent", Integer, nullable=False, default=80, server_default="80")
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class LimitCounter(Base):
    """Addition (migration 0008): requests and tokens of the current minute per counted target ("user:<id>",
    "key:<id>", "provider:<id>"); one row per target, restarted when `windowstart` (minutes since the epoch)
    moves on. UNLOGGED on PostgreSQL: a crash loses at most the current minute's counts."""

    __tablename__ = "limitcounters"

    counter_key: Mapped[str] = mapped_column("counterkey", String(80), primary_key=True)
    window_start: Mapped[int] = mapped_column("windowstart", BigInteger, nullable=False)
    requests: Mapped[int] = mapped_column("requests", Integer, nullable=False, default=0, server_default="0")
    tokens: Mapped[int] = mapped_column("tokens", BigInteger, nullable=False, default=0, server_default="0")


class BudgetSpend(Base):
    """Addition (migration 0008): what a target ("user:<id>", "key:<id>", "provider:<id>") has spent in one
    budget period. `periodkey` is "<period>:<time zone>:<local start date>" or "total". Kept up to date with
    each Logs row (in its transaction) and filled from Logs when a budget is first set mid-period."""

    __tablename__ = "budgetspend"

    target: Mapped[str] = mapped_column("target", String(80), primary_key=True)
    period_key: Mapped[str] = mapped_column("periodkey", String(120), primary_key=True)
    spent_usd: Mapped[float] = mapped_column("spentusd", Float, nullable=False, default=0.0, server_default="0")
    tokens: Mapped[int] = mapped_column("tokens", BigInteger, nullable=False, default=0, server_default="0")
    unpriced_calls: Mapped[int] = mapped_column("unpricedcalls", Integer, nullable=False, default=0, server_default="0")
    updated_at: Mapped[datetime] = _updated()


class BudgetAlert(Base):
    """Addition (migration 0008): a budget that crossed its warning threshold or was spent, once per rule,
    period, level and metric (the unique key is what makes the webhook go once across processes)."""

    __tablename__ = "budgetalerts"
    __table_args__ = (
        UniqueConstraint("limittarget", "periodkey", "level", "metric"),
        CheckConstraint("level IN ('warning', 'spent')", name="budgetalerts_level_check"),
        CheckConstraint("metric IN ('usd', 'tokens')", name="budgetalerts_metric_check"),
        Index("budgetalerts_createdat_idx", "createdat"),
    )

    id: Mapped[uuid.UUID] = _pk()
    limit_target: Mapped[str] = mapped_column("limittarget", String(80), nullable=False)
    period_key: Mapped[str] = mapped_column("periodkey", String(120), nullable=False)
    level: Mapped[str] = mapped_column("level", String(10), nullable=False)
    metric: Mapped[str] = mapped_column("metric", String(10), nullable=False)
    budget: Mapped[float] = mapped_column("budget", Float, nullable=False)
    spent: Mapped[float] = mapped_column("spent", Float, nullable=False)
    created_at: Mapped[datetime] = _created()
    webhook_status: Mapped[str | None] = mapped_column("webhookstatus", String(20))  # None: no webhook set
    webhook_at: Mapped[datetime | None] = mapped_column("webhookat", DateTime)
    webhook_error: Mapped[str | None] = mapped_column("webhookerror", Text)


class Conversation(Base):
    """Addition (migration 0010): a saved Playground conversation, its owner's only.

    `settings` holds what the page needs to carry on (temperature, max tokens, system prompt, stream), never a
    secret; `providerid` is set NULL when the provider is deleted, the conversation stays readable.
    """

    __tablename__ = "conversations"
    __table_args__ = (Index("conversations_userid_updatedat_idx", "userid", "updatedat"),)

    id: Mapped[uuid.UUID] = _pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        "userid", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column("title", String(200), nullable=False)
    provider_id: Mapped[uuid.UUID | None] = mapped_column(
        "providerid", Uuid, ForeignKey("providers.id", ondelete="SET NULL")
    )
    model_id: Mapped[str | None] = mapped_column("modelid", String(255))
    settings: Mapped[Any | None] = mapped_column("settings", JSONType)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class ConversationMessage(Base):
    """Addition (migration 0010): one message of a saved conversation, in `position` order (0, 1, ...).

    `meta` is what the page shows under an answer (model, tokens, duration, status, the Logs row's id, the
    attachments' names): never attachment bytes, never a secret.
    """

    __tablename__ = "conversationmessages"
    __table_args__ = (
        UniqueConstraint("conversationid", "position"),
        CheckConstraint("role IN ('user', 'assistant')", name="conversationmessages_role_check"),
    )

    id: Mapped[uuid.UUID] = _pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        "conversationid", Uuid, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    position: Mapped[int] = mapped_column("position", Integer, nullable=False)
    role: Mapped[str] = mapped_column("role", String(20), nullable=False)
    content: Mapped[str] = mapped_column("content", Text, nullable=False, default="", server_default="")
    meta: Mapped[Any | None] = mapped_column("meta", JSONType)
    created_at: Mapped[datetime] = _created()
