"""Where a user's chat call goes and under which limits: the access policy, the provider's connection,
the token and media limits; a refusal raises ChatRefused with the status to answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from sqlalchemy.orm import Session

from mindroute import redaction
from mindroute.i18n import _l
from mindroute.models import Provider, User
from mindroute.providers.errors import ProviderError
from mindroute.providers.media import check_media
from mindroute.providers.shapes import ChatRequest
from mindroute.security import DecryptionError
from mindroute.services.permissions import check_access
from mindroute.services.providers import provider_api_key, provider_endpoint, read_settings


class ChatRefused(Exception):  # noqa: N818 - reads better at the raise site
    """Refused before any upstream call; `status_code` is what the API answers."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class Route:
    """Where a user's call to one provider and model goes, once the access policy allowed it
    (route_call), before apply_route looks at the request's own limits (max tokens, media). The API's
    admission remembers it per key and model id; the playground routes every call afresh."""

    user_id: uuid.UUID
    provider_id: uuid.UUID
    provider_name: str
    protocol: str
    endpoint: str
    model: str
    prices: dict[str, dict[str, float]]
    effective_max_tokens: int | None
    limit_source: str | None
    allow_images: bool
    allow_videos: bool
    allow_files: bool
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PreparedCall:
    """A call every rule allowed, ready to go upstream: its route, and the request with the route's
    limits applied (max tokens filled in)."""

    route: Route
    request: ChatRequest


def route_call(session: Session, user: User, provider_id: uuid.UUID, model: str) -> Route:
    """The access policy for (user, provider, model) and the provider's connection; raises ChatRefused."""
    decision = check_access(session, user, provider_id, model)
    if not decision.allowed:
        raise ChatRefused(403, decision.reason)
    provider = session.get(Provider, provider_id)
    assert provider is not None  # check_access refused a missing one
    try:
        api_key = provider_api_key(provider)
    except DecryptionError:
        raise ChatRefused(
            502, _l("{provider}'s stored key cannot be used; ask an administrator", provider=provider.name)
        ) from None
    redaction.refresh_stored_keys(session)  # every provider's key, to take out of answers (issue 13, item 9)
    return Route(
        user_id=user.id,
        provider_id=provider.id,
        provider_name=provider.name,
        protocol=provider.protocol,
        endpoint=provider_endpoint(provider),
        model=model,
        prices=read_settings(provider.settings)["prices"],
        effective_max_tokens=decision.effective_max_tokens,
        limit_source=decision.limit_source,
        allow_images=provider.allow_images,
        allow_videos=provider.allow_videos,
        allow_files=provider.allow_files,
        api_key=api_key,
    )


def apply_route(route: Route, request: ChatRequest) -> PreparedCall:
    """The request's own rules on an allowed route (token limit, media); raises ChatRefused(400)."""
    limit = route.effective_max_tokens
    if limit is not None:
        if request.max_tokens is not None and request.max_tokens > limit:
            raise ChatRefused(
                400,
                _l(
                    "max tokens {asked} is over the limit of {limit} ({source})",
                    asked=request.max_tokens,
                    limit=limit,
                    source=route.limit_source,
                ),
            )
        if request.max_tokens is None:
            request = replace(request, max_tokens=limit)
    try:
        check_media(request, route.allow_images, route.allow_videos, route.allow_files)
    except ProviderError as exc:
        raise ChatRefused(400, exc.message) from None
    return PreparedCall(route, request)


def prepare_call(session: Session, user: User, provider_id: uuid.UUID, request: ChatRequest) -> PreparedCall:
    """Apply every rule before the upstream call, as the playground does (the API goes through
    admission's remembered route, then apply_route); raises ChatRefused with the status to answer."""
    return apply_route(route_call(session, user, provider_id, request.model), request)
