"""The first-run checklist for administrators: each step from provider to first call, ticked from the data."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from mindroute.models import ApiKey, Log, Provider, User, UserProvider
from mindroute.provider_settings import price_for, read_settings
from mindroute.services.unit_of_work import unit_of_work

PROVIDERS_PAGE = "pages/admin/providers.py"
USERS_PAGE = "pages/admin/users.py"
API_KEYS_PAGE = "pages/workspace/api_keys.py"
PLAYGROUND_PAGE = "pages/workspace/playground.py"


@dataclass(frozen=True)
class Step:
    """One step of the checklist: what to do, the page where it is done, and whether the data shows it done."""

    key: str
    title: str
    detail: str
    page: str  # the page's path, as the navigation names it
    done: bool


def _any(session: Session, stmt: object) -> bool:
    return bool(session.scalar(select(exists(stmt))))


@unit_of_work
def steps(session: Session) -> list[Step]:
    """The six steps in order, each `done` when the database holds what the step makes.

    A handful of small queries: providers are few (their settings are read whole), and the other
    steps ask only whether one matching row exists.
    """
    providers = session.execute(select(Provider.protocol, Provider.endpoint_url, Provider.settings)).all()
    listed = [(p, read_settings(p.settings)) for p in providers]
    has_models = any(s["models"] for _, s in listed)
    # A price in use, typed or built-in, for at least one listed model: costs can then be counted.
    priced = any(
        s["prices"] or any(price_for(s["prices"], m, p.protocol, p.endpoint_url).source for m in s["models"])
        for p, s in listed
    )
    granted = _any(
        session,
        select(UserProvider.id)
        .join(User, User.id == UserProvider.user_id)
        .where(UserProvider.allowed.is_(True), User.role == "user"),
    )
    has_key = _any(session, select(ApiKey.id))
    answered = _any(session, select(Log.id).where(Log.status_code >= 200, Log.status_code < 300))
    return [
        Step(
            "provider",
            "Add a provider",
            "OpenAI, Anthropic, Gemini or any OpenAI-compatible server.",
            PROVIDERS_PAGE,
            bool(providers),
        ),
        Step("models", "Refresh its models", "On the provider's Models and prices tab.", PROVIDERS_PAGE, has_models),
        Step(
            "prices",
            "Set prices or use the built-in table",
            "Well-known models have built-in prices; type your own for the others.",
            PROVIDERS_PAGE,
            priced,
        ),
        Step("grant", "Grant users access", "Choose who may use which provider.", USERS_PAGE, granted),
        Step("key", "Create an API key", "For scripts and tools that speak the OpenAI API.", API_KEYS_PAGE, has_key),
        Step(
            "call",
            "Make the first call",
            "Try a model in the playground, or call the API with the key.",
            PLAYGROUND_PAGE,
            answered,
        ),
    ]


def all_done(checklist: list[Step]) -> bool:
    return all(step.done for step in checklist)
