"""Who may use which provider: per-user grants (UserProviders), bulk changes, and the one access policy.

`check_access` is the rule the playground and the API both call before a provider is used:

- the user's account and the provider must be active;
- a non-admin needs a UserProviders row with allowed = true; admins may use every active provider
  (a row for an admin still sets their token limit and models; only its `allowed` flag is ignored);
- the model must be one of the provider's models (when it lists any) and one of the user's
  allowed models (when the grant lists any);
- the per-call token limit is the grant's maxTokensOverride when set, else the provider's
  maxTokens, else none.

A grant's `settings` has one key: {"models": [model ids the user may use]}; empty or missing means
all of the provider's models.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Uuid, func, literal, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mindroute.errors import ConflictError, NotFound
from mindroute.i18n import Message, _l
from mindroute.models import Provider, User, UserProvider, utcnow
from mindroute.provider_settings import read_settings
from mindroute.services import audit
from mindroute.services.admin_users import (
    DEFAULT_PAGE_SIZE,
    UserDeletionImpact,
    UserFilter,
    UserPage,
    UserRow,
    get_user,
    list_users,
    user_deletion_impact,
    user_filter_condition,
)
from mindroute.services.providers import list_providers
from mindroute.services.unit_of_work import unit_of_work
from mindroute.services.users import for_update, next_updated_at, require_admin, same_instant
from mindroute.validation import ValidationError, validate_flag, validate_model_id, validate_optional_positive_int

LIMIT_FROM_USER = _l("your per-user limit")
LIMIT_FROM_PROVIDER = _l("provider limit")
# Bound parameters per statement stay far below SQLite's and PostgreSQL's limits.
USER_ID_CHUNK = 500


@dataclass(frozen=True)
class Grant:
    """One provider as seen from one user's permissions page."""

    user_id: uuid.UUID
    provider_id: uuid.UUID
    provider_name: str
    provider_active: bool
    provider_models: tuple[str, ...]
    exists: bool  # False: no UserProviders row, which denies a non-admin
    allowed: bool
    max_tokens_override: int | None
    models: tuple[str, ...]  # the models this user may use; empty means all of the provider's
    updated_at: datetime | None  # hand back as `expected_updated_at` when saving


@dataclass(frozen=True)
class ProviderSummary:
    id: uuid.UUID
    name: str
    protocol: str
    is_active: bool


@dataclass(frozen=True)
class MatrixCell:
    allowed: bool
    max_tokens_override: int | None
    models: tuple[str, ...]


@dataclass(frozen=True)
class PermissionMatrix:
    """A page of users × every provider; a missing cell means no UserProviders row (not allowed)."""

    users: UserPage
    providers: list[ProviderSummary]
    cells: dict[tuple[uuid.UUID, uuid.UUID], MatrixCell]

    def cell(self, user_id: uuid.UUID, provider_id: uuid.UUID) -> MatrixCell | None:
        return self.cells.get((user_id, provider_id))


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    reason: str  # shown to the user when denied
    effective_max_tokens: int | None = None
    limit_source: str | None = None  # LIMIT_FROM_USER, LIMIT_FROM_PROVIDER, or None when unlimited


@dataclass(frozen=True)
class UsableProvider:
    """A provider the user may call, with what they may call it with."""

    id: uuid.UUID
    name: str
    protocol: str
    models: tuple[str, ...]  # empty: any model the provider accepts
    default_model: str | None
    effective_max_tokens: int | None
    limit_source: str | None
    allow_images: bool
    allow_videos: bool
    allow_files: bool


# --- reading --------------------------------------------------------------------------------


def grant_models(settings: object) -> tuple[str, ...]:
    """The models a grant's settings allow (empty: all), skipping anything malformed."""
    raw = settings.get("models") if isinstance(settings, Mapping) else None
    if not isinstance(raw, list):
        return ()
    return tuple(dict.fromkeys(m.strip() for m in raw if isinstance(m, str) and m.strip()))


def provider_models(provider: Provider) -> tuple[str, ...]:
    return tuple(read_settings(provider.settings)["models"])


def _grant(user_id: uuid.UUID, provider: Provider, row: UserProvider | None) -> Grant:
    return Grant(
        user_id=user_id,
        provider_id=provider.id,
        provider_name=provider.name,
        provider_active=provider.is_active,
        provider_models=provider_models(provider),
        exists=row is not None,
        allowed=bool(row and row.allowed),
        max_tokens_override=row.max_tokens_override if row else None,
        models=grant_models(row.settings) if row else (),
        updated_at=row.updated_at if row else None,
    )


def _access_changed(provider: str) -> Message:
    return _l("This user's access to {provider} was changed by someone else; reload and try again", provider=provider)


def _user(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(_l("This user no longer exists"))
    return user


def _provider(session: Session, provider_id: uuid.UUID) -> Provider:
    provider = session.get(Provider, provider_id)
    if provider is None:
        raise NotFound(_l("This provider no longer exists"))
    return provider


@unit_of_work
def user_grants(session: Session, actor: User | None, user_id: uuid.UUID) -> list[Grant]:
    """Every provider, with this user's grant for it (or the absence of one)."""
    require_admin(actor)
    _user(session, user_id)
    rows = {r.provider_id: r for r in session.scalars(select(UserProvider).where(UserProvider.user_id == user_id))}
    providers = session.scalars(select(Provider).order_by(func.lower(Provider.name), Provider.id))
    return [_grant(user_id, p, rows.get(p.id)) for p in providers]


@unit_of_work
def permission_matrix(
    session: Session,
    actor: User | None,
    where: UserFilter | None = None,
    *,
    sort: str = "email",
    descending: bool = False,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> PermissionMatrix:
    """One page of users (filtered and sorted as the user list) against every provider."""
    users = list_users(session, actor, where, sort=sort, descending=descending, page=page, page_size=page_size)
    providers = [
        ProviderSummary(id=p.id, name=p.name, protocol=p.protocol, is_active=p.is_active)
        for p in session.scalars(select(Provider).order_by(func.lower(Provider.name), Provider.id))
    ]
    cells: dict[tuple[uuid.UUID, uuid.UUID], MatrixCell] = {}
    user_ids = [row.id for row in users.rows]
    if user_ids:
        for grant in session.scalars(select(UserProvider).where(UserProvider.user_id.in_(user_ids))):
            cells[(grant.user_id, grant.provider_id)] = MatrixCell(
                allowed=grant.allowed,
                max_tokens_override=grant.max_tokens_override,
                models=grant_models(grant.settings),
            )
    return PermissionMatrix(users=users, providers=providers, cells=cells)


@dataclass(frozen=True)
class UsersPage:
    """What one run of the Users page shows, read in one transaction."""

    matrix: PermissionMatrix  # the page of users (matrix.users) against every provider
    selected: UserRow | None  # the chosen user: the one asked for (on this page or not), else the page's first
    grants: list[Grant]  # the selected user's access to every provider
    provider_limits: dict[uuid.UUID, int | None]  # each provider's own token limit per call
    impact: UserDeletionImpact | None  # set when deleting the selected user awaits confirmation


def _user_row(session: Session, actor: User | None, user_id: str | None) -> UserRow | None:
    """The user with this id (as text, from a URL), or None for a malformed or unknown one."""
    try:
        wanted = uuid.UUID(user_id or "")
    except ValueError:
        return None
    try:
        return get_user(session, actor, wanted)
    except NotFound:
        return None


@unit_of_work
def users_page(
    session: Session,
    actor: User | None,
    where: UserFilter | None,
    *,
    sort: str,
    descending: bool,
    page: int,
    page_size: int,
    selected_id: str | None,
    delete_pending: str | None,
) -> UsersPage:
    """The Users page's reads: a page of users with the provider matrix, the selected user's grants,
    and what deleting them would take along when that waits for confirmation."""
    matrix = permission_matrix(session, actor, where, sort=sort, descending=descending, page=page, page_size=page_size)
    by_id = {str(r.id): r for r in matrix.users.rows}
    # A user asked for by a link (?user=) stays chosen while the list pages or filters past them.
    selected = by_id.get(selected_id or "") or _user_row(session, actor, selected_id)
    selected = selected or next(iter(by_id.values()), None)
    limits = {p.id: p.max_tokens for p in list_providers(session, actor)}
    grants = user_grants(session, actor, selected.id) if selected else []
    deleting = selected is not None and delete_pending == str(selected.id)
    impact = user_deletion_impact(session, actor, selected.id) if deleting else None
    return UsersPage(matrix=matrix, selected=selected, grants=grants, provider_limits=limits, impact=impact)


# --- changing -------------------------------------------------------------------------------


@unit_of_work
def set_grant(
    session: Session,
    actor: User | None,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    *,
    allowed: bool,
    max_tokens_override: int | str | None = None,
    models: Sequence[str] = (),
    expected_updated_at: datetime | None = None,
) -> Grant:
    """Create or replace one user's grant for one provider.

    `models` empty means all of the provider's models. With `expected_updated_at` (the Grant's
    `updated_at` the form was loaded with) the save is refused with ConflictError if the grant
    changed since.
    """
    require_admin(actor)
    allowed = validate_flag(allowed, "allowed", _l("Allowed"))
    override = validate_optional_positive_int(max_tokens_override, "max_tokens_override", _l("Token limit"))
    if isinstance(models, str):  # a lone string would otherwise be read letter by letter
        raise ValidationError("models", _l("Models must be a list of model ids"))
    chosen = tuple(dict.fromkeys(validate_model_id(m, "models") for m in models))
    _user(session, user_id)
    provider = _provider(session, provider_id)
    offered = provider_models(provider)
    unknown = [m for m in chosen if offered and m not in offered]
    if unknown:
        raise ValidationError(
            "models", _l("{models}: not among {provider}'s models", models=", ".join(unknown), provider=provider.name)
        )
    row = session.scalar(
        for_update(
            session,
            select(UserProvider).where(UserProvider.user_id == user_id, UserProvider.provider_id == provider_id),
        )
    )
    if expected_updated_at is not None and (row is None or not same_instant(row.updated_at, expected_updated_at)):
        raise ConflictError(_access_changed(provider.name))
    before = (
        {"allowed": row.allowed, "max_tokens_override": row.max_tokens_override, "models": grant_models(row.settings)}
        if row is not None
        else {}
    )
    if row is None:
        row = UserProvider(user_id=user_id, provider_id=provider_id)
        session.add(row)
    else:
        row.updated_at = next_updated_at(row.updated_at)
    row.allowed = allowed
    row.max_tokens_override = override
    # Keep any other keys a later feature may have stored next to "models".
    row.settings = {**(row.settings if isinstance(row.settings, Mapping) else {}), "models": list(chosen)}
    try:
        session.flush()
    except IntegrityError:
        # Another admin created this grant between our read and our insert.
        raise ConflictError(_access_changed(provider.name)) from None
    after = {"allowed": allowed, "max_tokens_override": override, "models": list(chosen)}
    changes = audit.diff({**before, "models": list(before.get("models", ()))} if before else {}, after)
    audit.record(
        session, "grant.set", "userprovider", f"{user_id}/{provider_id}", changes or {"unchanged": True}, actor=actor
    )
    return _grant(user_id, provider, row)


def _user_conditions(user_ids: Sequence[uuid.UUID] | None, matching: UserFilter | None) -> Iterator[Any]:
    if user_ids is not None:
        unique = list(dict.fromkeys(user_ids))
        for start in range(0, len(unique), USER_ID_CHUNK):
            yield User.id.in_(unique[start : start + USER_ID_CHUNK])
    else:
        assert matching is not None
        yield user_filter_condition(matching)


def _upsert_allowed(session: Session, provider_id: uuid.UUID, condition: ColumnElement[bool]) -> None:
    """INSERT a granting row for every matching user, or flip an existing row to allowed; one statement."""
    table = UserProvider.__table__
    now = utcnow()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    # Every matching user, whatever is in the WHERE; SQLite needs a WHERE here to parse ON CONFLICT.
    source = select(
        User.id, literal(provider_id, Uuid()), true(), literal(now, DateTime()), literal(now, DateTime())
    ).where(condition)
    stmt = insert(table).from_select(
        ["userid", "providerid", "allowed", "createdat", "updatedat"],
        source,
        include_defaults=False,  # ids come from the server default: a Python default would repeat one id
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["userid", "providerid"],
        set_={"allowed": True, "updatedat": now},
        where=table.c.allowed.is_(False),  # rows already allowed keep their timestamp
    )
    session.execute(stmt)


@unit_of_work
def set_provider_access(
    session: Session,
    actor: User | None,
    provider_id: uuid.UUID,
    *,
    allowed: bool,
    user_ids: Sequence[uuid.UUID] | None = None,
    matching: UserFilter | None = None,
) -> int:
    """Grant (or revoke) one provider for many users at once: those listed, or all matching a filter.

    Existing grants keep their token limit and models; only `allowed` changes. Returns how many
    users the change covered.
    """
    require_admin(actor)
    allowed = validate_flag(allowed, "allowed", _l("Allowed"))
    if (user_ids is None) == (matching is None):
        raise ValidationError("users", _l("Choose the users either from a list or by a search, not both"))
    if user_ids is not None and not user_ids:
        raise ValidationError("users", _l("Select at least one user"))
    _provider(session, provider_id)
    covered = 0
    for condition in _user_conditions(user_ids, matching):
        covered += session.scalar(select(func.count()).select_from(User).where(condition)) or 0
        if allowed:
            _upsert_allowed(session, provider_id, condition)
        else:
            # Users without a row are already denied; existing rows keep their limits for a later re-grant.
            session.execute(
                update(UserProvider)
                .where(
                    UserProvider.provider_id == provider_id,
                    UserProvider.allowed.is_(True),
                    UserProvider.user_id.in_(select(User.id).where(condition)),
                )
                .values(allowed=False, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
    # Grants loaded earlier in this session no longer match their rows.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, UserProvider) and obj.provider_id == provider_id:
            session.expire(obj)
    chosen = {"user_ids": [str(u) for u in dict.fromkeys(user_ids)]} if user_ids is not None else {"matching": matching}
    changes = {"allowed": allowed, "users": covered, **chosen}
    audit.record(session, "grant.bulk_set", "provider", provider_id, changes, actor=actor)
    return covered


# --- the policy -----------------------------------------------------------------------------


def effective_max_tokens(provider: Provider, grant: UserProvider | None) -> tuple[int | None, str | None]:
    """The per-call token limit and where it comes from: the user's override, else the provider's, else none."""
    if grant is not None and grant.max_tokens_override is not None:
        return grant.max_tokens_override, LIMIT_FROM_USER
    if provider.max_tokens is not None:
        return provider.max_tokens, LIMIT_FROM_PROVIDER
    return None, None


def _deny(reason: str) -> AccessDecision:
    return AccessDecision(allowed=False, reason=reason)


def check_access(session: Session, user: User, provider_id: uuid.UUID, model: str | None) -> AccessDecision:
    """Whether `user` may call `model` on the provider, and with which token limit.

    `model` None checks the provider only (e.g. to open the playground); every call passes its model.
    """
    if not user.is_active:
        return _deny(_l("Your account is deactivated"))
    provider = session.get(Provider, provider_id)
    if provider is None:
        return _deny(_l("This provider does not exist"))
    if not provider.is_active:
        return _deny(_l("{provider} is deactivated", provider=provider.name))
    grant = session.scalar(
        select(UserProvider).where(UserProvider.user_id == user.id, UserProvider.provider_id == provider.id)
    )
    if user.role != "admin":
        if grant is None:
            return _deny(_l("You have no access to {provider}; ask an administrator", provider=provider.name))
        if not grant.allowed:
            return _deny(_l("Your access to {provider} is turned off; ask an administrator", provider=provider.name))
    if model is not None:
        model = model.strip()
        if not model:
            return _deny(_l("Choose a model"))
        offered = provider_models(provider)
        if offered and model not in offered:
            return _deny(_l("{model} is not one of {provider}'s models", model=model, provider=provider.name))
        mine = grant_models(grant.settings) if grant is not None else ()
        if mine and model not in mine:
            return _deny(
                _l(
                    "You may not use {model} on {provider}; you may use {models}",
                    model=model,
                    provider=provider.name,
                    models=", ".join(mine),
                )
            )
    limit, source = effective_max_tokens(provider, grant)
    return AccessDecision(allowed=True, reason="Allowed", effective_max_tokens=limit, limit_source=source)


def _usable_models(offered: tuple[str, ...], mine: tuple[str, ...]) -> tuple[str, ...] | None:
    """What check_access would allow: () for any model, None when no model is left."""
    if offered and mine:
        both = tuple(m for m in offered if m in mine)
        return both or None
    return offered or mine


@unit_of_work
def usable_providers(session: Session, user: User) -> list[UsableProvider]:
    """The providers `user` may call now, each with its models and limit, in the same terms as check_access."""
    if not user.is_active:
        return []
    grants = {g.provider_id: g for g in session.scalars(select(UserProvider).where(UserProvider.user_id == user.id))}
    usable = []
    for provider in session.scalars(
        select(Provider).where(Provider.is_active.is_(True)).order_by(func.lower(Provider.name), Provider.id)
    ):
        grant = grants.get(provider.id)
        if user.role != "admin" and (grant is None or not grant.allowed):
            continue
        settings = read_settings(provider.settings)
        models = _usable_models(tuple(settings["models"]), grant_models(grant.settings) if grant else ())
        if models is None:
            continue
        default = settings["default_model"]
        if models and default not in models:
            default = models[0]
        limit, source = effective_max_tokens(provider, grant)
        usable.append(
            UsableProvider(
                id=provider.id,
                name=provider.name,
                protocol=provider.protocol,
                models=models,
                default_model=default,
                effective_max_tokens=limit,
                limit_source=source,
                allow_images=provider.allow_images,
                allow_videos=provider.allow_videos,
                allow_files=provider.allow_files,
            )
        )
    return usable
