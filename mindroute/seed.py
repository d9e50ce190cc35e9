"""Seeding: the official providers, and synthetic demo data for trying the console."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mindroute.models import Provider
from mindroute.providers_catalog import DEFAULT_ENDPOINTS, OFFICIAL_PROVIDERS


def seed_providers(session: Session) -> list[str]:
    """Add OpenAI, Anthropic and Google AI if missing; returns the names added."""
    existing = set(session.scalars(select(Provider.name)))
    created = []
    for name, protocol in OFFICIAL_PROVIDERS:
        if name in existing:
            continue
        session.add(
            Provider(
                name=name,
                protocol=protocol,
                endpoint_url=DEFAULT_ENDPOINTS[protocol],
                is_active=False,  # no key yet: calls would only fail
                allow_images=True,
                settings={"models": [], "default_model": None, "prices": {}},
            )
        )
        created.append(name)
    session.flush()
    return created
