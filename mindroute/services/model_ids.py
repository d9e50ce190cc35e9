"""The API's model ids ("<provider name>/<model>", or a bare model): which ones a user may call, and
which provider and model an id names."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from mindroute.models import Provider, User, UserProvider
from mindroute.services.permissions import provider_models, usable_providers
from mindroute.services.providers import read_settings
from mindroute.services.routing import ChatRefused
from mindroute.services.unit_of_work import unit_of_work


def _offers(models: tuple[str, ...], default_model: str | None, model: str) -> bool:
    # A provider with no model list offers its default model by name (it may accept others, unnamed).
    return model in models if models else model == default_model


def _granted_provider_ids(session: Session, user: User) -> set[uuid.UUID] | None:
    """The providers the user holds an allowed grant on; None for an admin, who may see them all."""
    if user.role == "admin":
        return None
    allowed = select(UserProvider.provider_id).where(UserProvider.user_id == user.id, UserProvider.allowed.is_(True))
    return set(session.scalars(allowed))


def resolve_model_id(session: Session, user: User, model_id: str) -> tuple[uuid.UUID, str]:
    """(provider id, model) for an API model id: "<provider name>/<model>", or a bare model that
    exactly one provider the user may use offers. Raises ChatRefused: 400 ambiguous, 403 not
    allowed, 404 exists nowhere. Whether the call is allowed is routing.route_call's decision.

    A provider the user holds no allowed grant on (admins: every provider) is treated as if it did
    not exist: the same 404 as for an unknown model, so 403-vs-404 does not tell which providers
    exist. 403 is kept for what the user may already see: a granted provider that is deactivated, a
    model outside the grant's list or the provider's."""
    model_id = model_id.strip()
    if not model_id:
        raise ChatRefused(400, "model is required: use an id from GET /v1/models")
    unknown = ChatRefused(404, f"The model {model_id} does not exist")
    granted = _granted_provider_ids(session, user)
    providers = [p for p in session.scalars(select(Provider)) if granted is None or p.id in granted]
    named = sorted(
        (p for p in providers if model_id.startswith(p.name + "/") and len(model_id) > len(p.name) + 1),
        key=lambda p: -len(p.name),
    )
    if named:
        provider = named[0]
        model = model_id[len(provider.name) + 1 :]
        offered = provider_models(provider)
        if offered and model not in offered and not any(model in provider_models(p) for p in providers):
            raise unknown
        return provider.id, model
    offering = [p for p in usable_providers(session, user) if _offers(p.models, p.default_model, model_id)]
    if len(offering) == 1:
        return offering[0].id, model_id
    if offering:
        choices = ", ".join(f"{p.name}/{model_id}" for p in offering)
        raise ChatRefused(400, f"The model {model_id} is offered by several providers; choose one of: {choices}")
    exists = any(_offers(provider_models(p), read_settings(p.settings)["default_model"], model_id) for p in providers)
    if exists:
        raise ChatRefused(403, f"You may not use the model {model_id}")
    raise unknown


@unit_of_work
def api_model_ids(session: Session, user: User) -> list[tuple[str, str]]:
    """(provider name, "<provider name>/<model>") for each model the user may call; a provider
    that lists no models contributes its default model, if it has one."""
    ids = []
    for provider in usable_providers(session, user):
        models = provider.models or ((provider.default_model,) if provider.default_model else ())
        ids += [(provider.name, f"{provider.name}/{model}") for model in models]
    return ids
