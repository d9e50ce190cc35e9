"""Providers for the admin console: create, edit, deactivate and delete them, with keys encrypted and never shown.

Their `settings` (models, default model, prices) have one documented shape, checked in
`mindroute.provider_settings`. "Refresh models" and "test connection" run here too, so no
page ever holds a decrypted key.

API keys are write-only: stored as Fernet ciphertext (`SecretBox` with MINDROUTE_SECRET_KEY),
shown only masked (last 4 characters), and decrypted only to call the provider.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mindroute.config import get_settings
from mindroute.db import transaction
from mindroute.errors import ConflictError, NotFound
from mindroute.i18n import N_, Message, _l
from mindroute.models import Log, Provider, User
from mindroute.provider_settings import (  # SettingsError, settings_json and the price lookup: for the Providers page
    SettingsError,  # noqa: F401
    builtin_prices,  # noqa: F401
    builtin_table,  # noqa: F401
    parse_settings_json,
    price_for,  # noqa: F401
    read_settings,
    settings_json,  # noqa: F401
    settings_with_models,
    validate_settings,
)
from mindroute.providers import models_list
from mindroute.providers.models_list import ModelListResult
from mindroute.providers.registry import DEFAULT_ENDPOINTS, protocols
from mindroute.providers.registry import protocol as registry_protocol
from mindroute.security import DecryptionError, SecretBox, mask_secret
from mindroute.services import audit
from mindroute.services.unit_of_work import unit_of_work
from mindroute.services.users import for_update, next_updated_at, require_admin, same_instant
from mindroute.validation import (
    FieldChecks,
    ValidationError,
    endpoint_origin,
    validate_endpoint_url,
    validate_flag,
    validate_optional_positive_int,
    validate_protocol,
    validate_provider_api_key,
    validate_provider_name,
)

UNDECRYPTABLE_KEY_MASK = "(cannot be decrypted)"
PROTOCOL_NAMES = {"openai": "OpenAI", "anthropic": "Anthropic", "google": "Google Gemini"}


@dataclass(frozen=True)
class ProtocolChoice:
    """One protocol as the Providers page offers it."""

    name: str
    label: str
    default_endpoint: str
    key_required: bool


def protocol_choices() -> tuple[ProtocolChoice, ...]:
    """Every protocol a provider may speak, in display order, plug-ins included: the registry's list."""
    return tuple(
        ProtocolChoice(spec.name, spec.label, spec.default_endpoint, spec.key_required) for spec in protocols()
    )


def needs_key(protocol: str) -> bool:
    """OpenAI, Anthropic and Gemini refuse every call without a key; OpenAI-compatible servers may not."""
    try:
        return registry_protocol(protocol).key_required
    except ValueError:  # an unknown protocol: validate_protocol names the choices
        return True


def _refuse_active_without_key(protocol: str, is_active: bool, has_key: bool) -> None:
    """An active provider is offered in the playground and the API: one that can only fail is not."""
    if is_active and not has_key and needs_key(protocol):
        raise ValidationError(
            "api_key",
            _l(
                "{protocol} providers need an API key to be active: "
                "enter the key, or turn Active off until you have it",
                protocol=PROTOCOL_NAMES.get(protocol, protocol),
            ),
        )


# --- views ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderView:
    """A provider as the admin console shows it: the key only masked, never plaintext or ciphertext."""

    id: uuid.UUID
    name: str
    protocol: str
    endpoint_url: str
    is_active: bool
    allow_images: bool
    allow_videos: bool
    allow_files: bool
    max_tokens: int | None
    settings: dict[str, Any]  # the documented shape, see the module docstring
    has_key: bool
    masked_key: str  # "••••a1b2", "" when no key is stored
    key_problem: str | None  # set when the stored key cannot be decrypted with the configured secret
    created_at: datetime
    updated_at: datetime  # hand back as `expected_updated_at` when saving an edit

    def form_values(self) -> dict[str, Any]:
        """The edit form's fields as they are now: the keyword arguments of update_provider."""
        return {
            "name": self.name,
            "protocol": self.protocol,
            "endpoint_url": self.endpoint_url,
            "allow_images": self.allow_images,
            "allow_videos": self.allow_videos,
            "allow_files": self.allow_files,
            "max_tokens": self.max_tokens,
            "is_active": self.is_active,
        }

    @property
    def models(self) -> list[str]:
        return list(self.settings["models"])

    @property
    def default_model(self) -> str | None:
        return self.settings["default_model"]

    @property
    def prices(self) -> dict[str, dict[str, float]]:
        return dict(self.settings["prices"])


@dataclass(frozen=True)
class ProviderConnection:
    """What a request to the provider needs. Holds the plaintext key: use it, never show or log it."""

    protocol: str
    endpoint_url: str
    api_key: str | None = field(repr=False)


def _box() -> SecretBox:
    return SecretBox(get_settings().secret_keys)


def provider_api_key(provider: Provider) -> str | None:
    """The provider's key in plaintext, for calling it (raises DecryptionError if it cannot be read)."""
    return _box().decrypt(provider.api_key) if provider.api_key else None


def provider_endpoint(provider: Provider) -> str:
    """The endpoint to call: the stored one, or the protocol's default when none is stored."""
    return provider.endpoint_url or DEFAULT_ENDPOINTS.get(provider.protocol, DEFAULT_ENDPOINTS["openai"])


def _view(provider: Provider) -> ProviderView:
    masked, problem = "", None
    if provider.api_key:
        try:
            masked = mask_secret(provider_api_key(provider))
        except DecryptionError as exc:
            masked, problem = UNDECRYPTABLE_KEY_MASK, str(exc)
    return ProviderView(
        id=provider.id,
        name=provider.name,
        protocol=provider.protocol,
        endpoint_url=provider_endpoint(provider),
        is_active=provider.is_active,
        allow_images=provider.allow_images,
        allow_videos=provider.allow_videos,
        allow_files=provider.allow_files,
        max_tokens=provider.max_tokens,
        settings=read_settings(provider.settings),
        has_key=bool(provider.api_key),
        masked_key=masked,
        key_problem=problem,
        created_at=provider.created_at,
        updated_at=provider.updated_at,
    )


@unit_of_work
def list_providers(session: Session, actor: User | None) -> list[ProviderView]:
    require_admin(actor)
    return [_view(p) for p in session.scalars(select(Provider).order_by(func.lower(Provider.name), Provider.id))]


@unit_of_work
def get_provider(session: Session, actor: User | None, provider_id: uuid.UUID) -> ProviderView:
    require_admin(actor)
    return _view(_load(session, provider_id))


def provider_connection(
    session: Session, actor: User | None, provider_id: uuid.UUID, typed_api_key: str | None = None
) -> ProviderConnection:
    """What "test connection" and "refresh models" call with: the key just typed, else the stored one."""
    require_admin(actor)
    provider = _load(session, provider_id)
    endpoint = provider_endpoint(provider)
    # An endpoint stored before link-local hosts were refused (or while they were allowed) is not called.
    validate_endpoint_url(endpoint, allow_link_local=get_settings().allow_link_local_endpoints)
    key = validate_provider_api_key(typed_api_key)
    if key is None:
        try:
            key = provider_api_key(provider)
        except DecryptionError as exc:
            raise ValidationError("api_key", _l("{problem}; enter the key again", problem=_reason(exc))) from None
    return ProviderConnection(protocol=provider.protocol, endpoint_url=endpoint, api_key=key)


# --- changes --------------------------------------------------------------------------------


def _load(session: Session, provider_id: uuid.UUID, *, lock: bool = False) -> Provider:
    stmt = select(Provider).where(Provider.id == provider_id)
    provider = session.scalar(for_update(session, stmt) if lock else stmt)
    if provider is None:
        raise NotFound(_l("This provider no longer exists"))
    return provider


def _load_unchanged_since(session: Session, provider_id: uuid.UUID, expected_updated_at: datetime) -> Provider:
    """The provider, locked, if nobody saved it since the editor loaded it; else ConflictError."""
    provider = _load(session, provider_id, lock=True)
    if not same_instant(provider.updated_at, expected_updated_at):
        raise ConflictError(
            _l(
                "{name} was changed by someone else since you opened it; "
                "reload to see their change, then make yours again",
                name=provider.name,
            )
        )
    return provider


_AUDITED = (
    "name",
    "protocol",
    "endpoint_url",
    "allow_images",
    "allow_videos",
    "allow_files",
    "max_tokens",
    "is_active",
)


def _audit_fields(provider: Provider) -> dict[str, Any]:
    """What the audit trail records of a provider: its fields, whether it has a key (never the key)."""
    fields: dict[str, Any] = {name: getattr(provider, name) for name in _AUDITED}
    fields["api_key"] = bool(provider.api_key)
    fields["settings"] = provider.settings
    return fields


def _audit_change(before: dict[str, Any], after: dict[str, Any], key_replaced: bool) -> dict[str, Any]:
    changes = audit.diff(
        {k: v for k, v in before.items() if k not in ("api_key", "settings")},
        {k: v for k, v in after.items() if k not in ("api_key", "settings")},
    )
    if before["settings"] != after["settings"]:
        changes["settings"] = "changed"
    if key_replaced:
        changes["api_key"] = audit.KEY_REPLACED
    elif before["api_key"] != after["api_key"]:
        changes["api_key"] = "key set" if after["api_key"] else "key removed"
    return changes


def _touch(provider: Provider) -> None:
    provider.updated_at = next_updated_at(provider.updated_at)


def _refuse_duplicate_name(session: Session, name: str, provider_id: uuid.UUID | None) -> None:
    # Case-insensitive: "OpenAI" and "openai" side by side would only confuse.
    stmt = select(Provider.id).where(func.lower(Provider.name) == name.lower())
    if provider_id is not None:
        stmt = stmt.where(Provider.id != provider_id)
    if session.scalar(stmt.limit(1)) is not None:
        raise ValidationError("name", _l("A provider named {name} already exists", name=repr(name)))


def _flush_or_duplicate(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        # Another admin saved the same name between our check and our insert.
        raise ValidationError("name", _l("A provider named {name} already exists", name=repr(name))) from None


@dataclass(frozen=True)
class _CheckedForm:
    """The form's values as checked; a refused field is None (its problem is in the FieldChecks)."""

    name: str | None
    protocol: str | None
    endpoint_url: str | None
    allow_images: bool | None
    allow_videos: bool | None
    allow_files: bool | None
    max_tokens: int | None
    is_active: bool | None


def _check_form(
    checks: FieldChecks,
    name: str,
    protocol: str,
    endpoint_url: str | None,
    allow_images: object,
    allow_videos: object,
    allow_files: object,
    max_tokens: object,
    is_active: object,
) -> _CheckedForm:
    """Every field checked, each refusal kept in `checks`: the form shows them all at once."""
    checked_name = checks.check(validate_provider_name, name)  # first: problems are listed in the form's order
    checked_protocol = checks.check(validate_protocol, protocol)
    blank_endpoint = not (endpoint_url or "").strip()
    allow_link_local = get_settings().allow_link_local_endpoints
    return _CheckedForm(
        name=checked_name,
        protocol=checked_protocol,
        endpoint_url=DEFAULT_ENDPOINTS.get(checked_protocol or "")
        if blank_endpoint
        else checks.check(validate_endpoint_url, endpoint_url, allow_link_local=allow_link_local),
        allow_images=checks.check(validate_flag, allow_images, "allow_images", _l("Allow images")),
        allow_videos=checks.check(validate_flag, allow_videos, "allow_videos", _l("Allow videos")),
        allow_files=checks.check(validate_flag, allow_files, "allow_files", _l("Allow files")),
        max_tokens=checks.check(validate_optional_positive_int, max_tokens, "max_tokens", _l("Max tokens")),
        is_active=checks.check(validate_flag, is_active, "is_active", _l("Active")),
    )


@unit_of_work
def create_provider(
    session: Session,
    actor: User | None,
    *,
    name: str,
    protocol: str,
    endpoint_url: str | None = None,
    api_key: str | None = None,
    allow_images: bool = False,
    allow_videos: bool = False,
    allow_files: bool = False,
    max_tokens: int | str | None = None,
    is_active: bool = True,
    settings: Mapping[str, Any] | None = None,
) -> ProviderView:
    """Add a provider; a blank endpoint means the protocol's default. The key is stored encrypted."""
    require_admin(actor)
    checks = FieldChecks()
    form = _check_form(
        checks, name, protocol, endpoint_url, allow_images, allow_videos, allow_files, max_tokens, is_active
    )
    key = checks.check(validate_provider_api_key, api_key)
    checked_settings = checks.check(validate_settings, settings)
    if form.name is not None:
        checks.check(_refuse_duplicate_name, session, form.name, None)
    if form.protocol is not None and form.is_active is not None and not checks.refused("api_key"):
        checks.check(_refuse_active_without_key, form.protocol, form.is_active, bool(key))
    checks.raise_any()
    provider = Provider(
        name=form.name,
        protocol=form.protocol,
        endpoint_url=form.endpoint_url,
        api_key=_box().encrypt(key) if key else None,
        allow_images=form.allow_images,
        allow_videos=form.allow_videos,
        allow_files=form.allow_files,
        max_tokens=form.max_tokens,
        is_active=form.is_active,
        settings=checked_settings,
    )
    session.add(provider)
    _flush_or_duplicate(session, form.name)
    created = _audit_fields(provider)
    created.pop("settings")
    created["api_key"] = "key set" if key else "no key"
    audit.record(session, "provider.create", "provider", provider.id, created, actor=actor)
    return _view(provider)


KEY_REDIRECT_MESSAGE = N_(
    "The endpoint now points to another host ({new}, was {old}): enter the API key again, "
    "or remove the stored key; a stored key is only sent to the host it was entered for"
)


def _refuse_redirected_key(old_url: str, new_url: str) -> None:
    """A stored key may follow an edit of the endpoint's path, never one of its scheme, host or port:
    otherwise whoever can edit a provider could send its key to a host of their choosing."""
    old, new = endpoint_origin(old_url), endpoint_origin(new_url)
    if old != new:
        raise ValidationError("api_key", Message(KEY_REDIRECT_MESSAGE, old=_origin_text(old), new=_origin_text(new)))


def _reason(exc: BaseException) -> str:
    """An exception's message as it was raised: its Message (translated where shown), else its text."""
    first = exc.args[0] if len(exc.args) == 1 else None
    return first if isinstance(first, Message) else str(exc)


def _origin_text(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


@unit_of_work
def update_provider(
    session: Session,
    actor: User | None,
    provider_id: uuid.UUID,
    *,
    expected_updated_at: datetime,
    name: str,
    protocol: str,
    endpoint_url: str | None,
    allow_images: bool,
    allow_videos: bool,
    allow_files: bool,
    max_tokens: int | str | None,
    is_active: bool,
    api_key: str | None = None,
    clear_api_key: bool = False,
    settings: Mapping[str, Any] | None = None,
) -> ProviderView:
    """Save the edit form. A blank `api_key` keeps the stored key, unless the endpoint's scheme, host
    or port changes (ValidationError on "api_key": the key must be typed again); `clear_api_key`
    removes it; `settings` None keeps the stored settings. ConflictError if the row changed since
    `expected_updated_at` (the `updated_at` of the ProviderView the form was filled from)."""
    require_admin(actor)
    checks = FieldChecks()
    form = _check_form(
        checks, name, protocol, endpoint_url, allow_images, allow_videos, allow_files, max_tokens, is_active
    )
    key = checks.check(validate_provider_api_key, api_key)
    if key and clear_api_key:
        checks.problems.setdefault("api_key", _l("Either type a new key or clear the stored one, not both"))
    checked_settings = checks.check(validate_settings, settings) if settings is not None else None
    provider = _load_unchanged_since(session, provider_id, expected_updated_at)
    if form.name is not None:
        checks.check(_refuse_duplicate_name, session, form.name, provider.id)
    if provider.api_key and not key and not clear_api_key and form.endpoint_url is not None:
        checks.check(_refuse_redirected_key, provider_endpoint(provider), form.endpoint_url)
    keeps_key = bool(key) or (bool(provider.api_key) and not clear_api_key)
    already = (provider.is_active, bool(provider.api_key), provider.protocol)
    known = form.protocol is not None and form.is_active is not None and not checks.refused("api_key")
    if known and (form.is_active, keeps_key, form.protocol) != already:  # a row left so before may stay so
        checks.check(_refuse_active_without_key, form.protocol, form.is_active, keeps_key)
    checks.raise_any()
    before = _audit_fields(provider)
    provider.name = form.name
    provider.protocol = form.protocol
    provider.endpoint_url = form.endpoint_url
    provider.allow_images = form.allow_images
    provider.allow_videos = form.allow_videos
    provider.allow_files = form.allow_files
    provider.max_tokens = form.max_tokens
    provider.is_active = form.is_active
    if key:
        provider.api_key = _box().encrypt(key)
    elif clear_api_key:
        provider.api_key = None
    if checked_settings is not None:
        provider.settings = checked_settings
    _touch(provider)
    _flush_or_duplicate(session, form.name)
    changes = _audit_change(before, _audit_fields(provider), key_replaced=bool(key) and before["api_key"])
    if changes:
        action = "provider.key_replaced" if set(changes) == {"api_key"} else "provider.update"
        audit.record(session, action, "provider", provider.id, changes, actor=actor)
    return _view(provider)


@unit_of_work
def update_provider_settings(
    session: Session,
    actor: User | None,
    provider_id: uuid.UUID,
    settings: Mapping[str, Any],
    *,
    expected_updated_at: datetime,
) -> ProviderView:
    """Save models, default model and prices (from the widgets); ConflictError as for update_provider."""
    require_admin(actor)
    checked = validate_settings(settings)
    provider = _load_unchanged_since(session, provider_id, expected_updated_at)
    changed = provider.settings != checked
    provider.settings = checked
    _touch(provider)
    session.flush()
    if changed:
        audit.record(session, "provider.settings", "provider", provider.id, {"settings": "changed"}, actor=actor)
    return _view(provider)


@unit_of_work
def update_provider_settings_json(
    session: Session, actor: User | None, provider_id: uuid.UUID, text: str, *, expected_updated_at: datetime
) -> ProviderView:
    """Save settings from the raw JSON editor, refusing text that does not parse or fit the shape."""
    require_admin(actor)
    return update_provider_settings(
        session, actor, provider_id, parse_settings_json(text), expected_updated_at=expected_updated_at
    )


@unit_of_work
def set_provider_active(session: Session, actor: User | None, provider_id: uuid.UUID, active: bool) -> ProviderView:
    """Deactivate (calls are refused, history stays) or reactivate a provider (ValidationError on
    "api_key" for a provider whose protocol needs a key and that has none)."""
    require_admin(actor)
    validate_flag(active, "is_active", "Active")
    provider = _load(session, provider_id, lock=True)
    if provider.is_active != active:
        _refuse_active_without_key(provider.protocol, active, bool(provider.api_key))
        provider.is_active = active
        _touch(provider)
        session.flush()
        action = "provider.activate" if active else "provider.deactivate"
        audit.record(session, action, "provider", provider.id, {"is_active": [not active, active]}, actor=actor)
    return _view(provider)


@unit_of_work
def provider_log_count(session: Session, actor: User | None, provider_id: uuid.UUID) -> int:
    """How many log rows would lose their provider link if the provider were deleted (for the confirmation)."""
    require_admin(actor)
    _load(session, provider_id)
    return session.scalar(select(func.count()).select_from(Log).where(Log.provider_id == provider_id)) or 0


@unit_of_work
def delete_provider(session: Session, actor: User | None, provider_id: uuid.UUID) -> int:
    """Delete a provider and its per-user grants; its log rows stay with no provider. Returns how many."""
    require_admin(actor)
    provider = _load(session, provider_id, lock=True)
    unlinked = session.scalar(select(func.count()).select_from(Log).where(Log.provider_id == provider_id)) or 0
    # ON DELETE SET NULL (logs) and CASCADE (userproviders) are the database's, as the schema defines.
    name = provider.name
    session.execute(delete(Provider).where(Provider.id == provider.id).execution_options(synchronize_session=False))
    session.expunge(provider)
    changes = {"name": [name, None], "logs_unlinked": unlinked}
    audit.record(session, "provider.delete", "provider", provider_id, changes, actor=actor)
    return unlinked


# --- asking the provider --------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRefresh:
    """What "refresh models" got: the provider's answer (no key in it) and, when it listed models, the saved view."""

    answer: ModelListResult
    view: ProviderView | None


def refresh_models(
    engine: Engine, actor: User | None, provider_id: uuid.UUID, *, expected_updated_at: datetime
) -> ModelRefresh:
    """Ask the provider for its models with the stored key and save them as the provider's model list
    (keeping prices and, when still offered, the default). No transaction stays open while the provider
    answers; the save is refused with ConflictError as for update_provider."""
    with transaction(engine) as session:
        conn = provider_connection(session, actor, provider_id)
    answer = models_list.fetch_models(conn.protocol, conn.endpoint_url, conn.api_key)
    if not answer.ok:
        return ModelRefresh(answer, None)
    with transaction(engine) as session:
        fresh = settings_with_models(get_provider(session, actor, provider_id).settings, answer.models)
        view = update_provider_settings(session, actor, provider_id, fresh, expected_updated_at=expected_updated_at)
    return ModelRefresh(answer, view)


def test_connection(
    engine: Engine, actor: User | None, provider_id: uuid.UUID, typed_api_key: str | None = None
) -> ModelListResult:
    """One request to the provider's model list with the key just typed, else the stored one: status,
    latency and the first page of models, or the provider's error with any key text removed."""
    with transaction(engine) as session:
        conn = provider_connection(session, actor, provider_id, typed_api_key=typed_api_key)
    return models_list.test_connection(conn.protocol, conn.endpoint_url, conn.api_key)


# pytest would otherwise collect this function wherever a test module imports it by name.
test_connection.__test__ = False  # type: ignore[attr-defined]
