"""Seeding: the official providers, and synthetic demo data for trying the console."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import random
import secrets
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from tqdm import tqdm

from mindroute.analytics.levels import day_of
from mindroute.analytics.rollups import rebuild_days
from mindroute.cli.demo_data import (
    DEMO_EMAIL_DOMAIN,
    DEMO_PROVIDERS,
    DEMO_USER_COUNT,
    DEMO_UTC_OFFSET_HOURS,
    ERROR_MESSAGES,
    FIRST_NAMES,
    INCIDENT_STATUSES,
    LAST_NAMES,
    PROMPTS,
    STATUS_SHARES,
    USER_AGENTS,
    DemoModel,
    demo_email,
    demo_grants,
)
from mindroute.db import transaction
from mindroute.errors import CommandError
from mindroute.models import Provider, User, UserProvider, utcnow
from mindroute.providers.registry import DEFAULT_ENDPOINTS, official_providers, protocol
from mindroute.security import hash_password


def seed_providers(session: Session) -> list[str]:
    """Add OpenAI, Anthropic and Google AI if missing; returns the names added."""
    existing = set(session.scalars(select(Provider.name)))
    created = []
    for name, protocol_name in official_providers():
        if name in existing:
            continue
        session.add(
            Provider(
                name=name,
                protocol=protocol_name,
                endpoint_url=DEFAULT_ENDPOINTS[protocol_name],
                is_active=False,  # no key yet: calls would only fail
                allow_images=True,
                settings={"models": [], "default_model": None, "prices": {}},
            )
        )
        created.append(name)
    session.flush()
    return created


# --- demo data: what it is lives in mindroute/cli/demo_data.py ---------------------------------

# PostgreSQL: one COPY and commit per batch; SQLite: one executemany and commit per batch.
PG_BATCH_ROWS = 50_000
SQLITE_BATCH_ROWS = 10_000
SLOT_DRAW_ROWS = 1_000_000  # rows whose hours are drawn at once (memory, not randomness)
LOG_COLUMNS = (
    "id",
    "userid",
    "providerid",
    "modelid",
    "requesttype",
    "requestbody",
    "responsebody",
    "tokensused",
    "prompttokens",
    "completiontokens",
    "statuscode",
    "errormessage",
    "duration",
    "ip",
    "useragent",
    "createdat",
)
# Built from the constant column list above only.
_PG_COPY = f"COPY logs ({', '.join(LOG_COLUMNS)}) FROM STDIN"
_SQLITE_INSERT = f"INSERT INTO logs ({', '.join(LOG_COLUMNS)}) VALUES ({', '.join('?' * len(LOG_COLUMNS))})"  # noqa: S608


@dataclass
class DemoSummary:
    users: int = 0
    users_created: int = 0
    providers: int = 0
    providers_created: int = 0
    grants_created: int = 0
    logs: int = 0


@dataclass(frozen=True)
class _Route:
    """One (user, provider, model) a log row can be for, with what the row needs precomputed."""

    user_id: str
    provider_id: str
    model: str
    model_json: str
    model_spec: DemoModel
    ips: tuple[str, ...]
    user_agents: tuple[str, ...]
    incidents: tuple[tuple[float, float], ...]  # seconds after the range start when this provider is failing


def ensure_demo_entities(session: Session, rng: random.Random) -> DemoSummary:
    """Create the demo users, providers and grants that are missing; returns what exists and what was added."""
    summary = DemoSummary()
    now = utcnow()
    emails = [demo_email(n) for n in range(1, DEMO_USER_COUNT + 1)]
    users = {u.email: u for u in session.scalars(select(User).where(User.email.in_(emails)))}
    missing = [e for e in emails if e not in users]
    if missing:
        # One bcrypt hash (cost 12 takes ~0.25 s) of a random password nobody ever sees, shared by all:
        # demo accounts exist to be looked at, not signed in to.
        password_hash = hash_password(secrets.token_urlsafe(32))
        for email in missing:
            number = int(email.split("@")[0].rsplit("-", 1)[1])
            name = f"{FIRST_NAMES[number % len(FIRST_NAMES)]} {LAST_NAMES[(number * 7) % len(LAST_NAMES)]} (demo)"
            created = now - timedelta(days=rng.uniform(60, 400))
            user = User(
                email=email,
                name=name,
                password=password_hash,
                role="user",
                is_active=number % 13 != 0,  # a few deactivated accounts, as in real life
                last_login=now - timedelta(hours=rng.uniform(1, 24 * 20)),
                created_at=created,
                updated_at=created,
            )
            session.add(user)
            users[email] = user
        summary.users_created = len(missing)
    summary.users = len(users)

    names = [spec.name for spec in DEMO_PROVIDERS]
    providers = {p.name: p for p in session.scalars(select(Provider).where(Provider.name.in_(names)))}
    for spec in DEMO_PROVIDERS:
        if spec.name in providers:
            continue
        provider = Provider(
            name=spec.name,
            protocol=spec.protocol,
            endpoint_url=spec.endpoint_url,
            api_key=None,
            # No key: an OpenAI, Anthropic or Gemini provider could only fail, so it is not offered.
            is_active=spec.is_active and not protocol(spec.protocol).key_required,
            allow_images=spec.protocol != "openai-compatible",
            settings=spec.settings(),
        )
        session.add(provider)
        providers[spec.name] = provider
        summary.providers_created += 1
    summary.providers = len(providers)
    session.flush()

    user_ids = [u.id for u in users.values()]
    provider_ids = [p.id for p in providers.values()]
    existing = {
        (row.user_id, row.provider_id)
        for row in session.execute(
            select(UserProvider.user_id, UserProvider.provider_id).where(
                UserProvider.user_id.in_(user_ids), UserProvider.provider_id.in_(provider_ids)
            )
        )
    }
    for email, user in users.items():
        number = int(email.split("@")[0].rsplit("-", 1)[1])
        for index in demo_grants(number):
            provider = providers[DEMO_PROVIDERS[index].name]
            if (user.id, provider.id) in existing:
                continue
            session.add(
                UserProvider(
                    user_id=user.id,
                    provider_id=provider.id,
                    allowed=True,
                    max_tokens_override=4096 if number % 4 == 0 else None,
                )
            )
            summary.grants_created += 1
    session.flush()
    return summary


def _demo_routes(
    session: Session, rng: random.Random, total_seconds: float, dashed: bool
) -> list[tuple[_Route, float]]:
    """Every (user, provider, model) the demo users are granted, with a traffic weight each."""
    specs = {spec.name: spec for spec in DEMO_PROVIDERS}
    rows = session.execute(
        select(User.id, User.email, User.is_active, Provider.id, Provider.name, Provider.settings)
        .join(UserProvider, UserProvider.user_id == User.id)
        .join(Provider, UserProvider.provider_id == Provider.id)
        .where(User.email.like(f"demo-user-%@{DEMO_EMAIL_DOMAIN}"), Provider.name.in_(specs), UserProvider.allowed)
        .order_by(User.email, Provider.name)
    ).all()

    def text_id(value: uuid.UUID) -> str:
        return str(value) if dashed else value.hex

    # A few outages per provider and month: an hour or three where most calls fail.
    incidents: dict[str, tuple[tuple[float, float], ...]] = {}
    for name in sorted(specs):
        windows = []
        for _ in range(max(1, round(total_seconds / 86400 / 20))):
            if rng.random() < 0.7:
                start = rng.uniform(0, max(total_seconds - 3600, 0))
                windows.append((start, start + rng.uniform(1800, 3 * 3600)))
        incidents[name] = tuple(windows)

    user_weights: dict[str, float] = {}
    routes: list[tuple[_Route, float]] = []
    for user_id, email, user_active, provider_id, provider_name, settings in rows:
        spec = specs[provider_name]
        if email not in user_weights:
            # Heavy-tailed: a handful of users make most of the calls; deactivated accounts hardly any.
            user_weights[email] = rng.paretovariate(1.2) * (1.0 if user_active else 0.05)
        # The provider's current model list wins (an admin may have edited it); unknown models
        # borrow the profile of the provider's first demo model.
        listed = settings.get("models") if isinstance(settings, dict) else None
        known = {m.name: m for m in spec.models}
        names = [m for m in listed if isinstance(m, str) and m] if isinstance(listed, list) else []
        names = names or list(known)
        # Addresses from the documentation ranges (RFC 5737), fixed per user so re-runs agree.
        bits = int(hashlib.sha256(email.encode()).hexdigest()[:4], 16)
        ips = (f"203.0.113.{bits % 254 + 1}", f"198.51.100.{(bits >> 8) % 254 + 1}")
        agents = (USER_AGENTS[bits % len(USER_AGENTS)], USER_AGENTS[(bits >> 4) % len(USER_AGENTS)])
        for model in names:
            profile = known.get(model, spec.models[0])
            route = _Route(
                user_id=text_id(user_id),
                provider_id=text_id(provider_id),
                model=model,
                model_json=json.dumps(model),
                model_spec=profile,
                ips=ips,
                user_agents=agents,
                incidents=incidents[provider_name],
            )
            weight = user_weights[email] * spec.weight * (profile.weight if model in known else 0.2)
            routes.append((route, weight))
    return routes


def _hour_weights(rng: random.Random, start: datetime, slots: int) -> list[float]:
    """Relative traffic per hour: working hours in Seoul, quiet weekends, day-to-day noise, slow growth."""
    day_noise: dict[int, float] = {}
    weights = []
    for slot in range(slots):
        moment = start + timedelta(hours=slot)
        local = moment + timedelta(hours=DEMO_UTC_OFFSET_HOURS)
        hour = local.hour + local.minute / 60
        # Two humps (late morning, mid afternoon) over a night-time floor.
        daily = 0.08 + math.exp(-(((hour - 11) / 2.2) ** 2)) + 0.9 * math.exp(-(((hour - 15.5) / 2.5) ** 2))
        daily += 0.25 * math.exp(-(((hour - 21) / 1.5) ** 2))  # evening tinkering
        weekday = 0.35 if local.weekday() >= 5 else 1.0
        day = (local.date() - start.date()).days
        noise = day_noise.setdefault(day, rng.uniform(0.8, 1.2))
        growth = 1.0 + 0.4 * slot / max(slots - 1, 1)
        weights.append(daily * weekday * noise * growth)
    return weights


def generate_log_batches(
    routes: list[tuple[_Route, float]],
    *,
    rows: int,
    start: datetime,
    total_seconds: float,
    rng: random.Random,
    dashed: bool,
    batch_rows: int,
) -> Iterator[list[tuple[Any, ...]]]:
    """Log rows (in LOG_COLUMNS order, all created between `start` and `start + total_seconds`), in batches."""
    slots = max(1, math.ceil(total_seconds / 3600))
    slot_cum = list(itertools.accumulate(_hour_weights(rng, start, slots)))
    slot_range = range(slots)
    last_slot_len = total_seconds - (slots - 1) * 3600
    route_list = [r for r, _ in routes]
    route_cum = list(itertools.accumulate(w for _, w in routes))
    route_range = range(len(route_list))
    statuses = [s for s, _ in STATUS_SHARES]
    status_cum = list(itertools.accumulate(share for _, share in STATUS_SHARES))
    prompts = [json.dumps(p) for p in PROMPTS]
    error_bodies = {
        code: [json.dumps({"error": {"code": code, "message": m}, "demo": True}) for m in messages]
        for code, messages in ERROR_MESSAGES.items()
    }
    rand = rng.random
    lognorm = rng.lognormvariate
    log = math.log
    make_id = uuid.uuid4

    # How many rows each hour gets is drawn first (one number per hour), then the rows come hour by
    # hour: the batches are in time order, so each one touches only a few UTC days (whose rollups
    # its transaction rebuilds).
    per_slot = [0] * slots
    for offset in range(0, rows, SLOT_DRAW_ROWS):
        counts = Counter(rng.choices(slot_range, cum_weights=slot_cum, k=min(SLOT_DRAW_ROWS, rows - offset)))
        for slot, count in counts.items():
            per_slot[slot] += count
    slot_stream = itertools.chain.from_iterable(itertools.repeat(slot, count) for slot, count in enumerate(per_slot))

    done = 0
    while done < rows:
        n = min(batch_rows, rows - done)
        route_picks = rng.choices(route_range, cum_weights=route_cum, k=n)
        slot_picks = list(itertools.islice(slot_stream, n))
        status_picks = rng.choices(statuses, cum_weights=status_cum, k=n)
        batch = []
        for i in range(n):
            route = route_list[route_picks[i]]
            spec = route.model_spec
            slot = slot_picks[i]
            offset = slot * 3600 + rand() * (3600 if slot < slots - 1 else last_slot_len)
            status = status_picks[i]
            for begin, end in route.incidents:
                if begin <= offset < end and rand() < 0.45:
                    status = INCIDENT_STATUSES[int(rand() * 3)]
            row_id = make_id()
            prompt_json = prompts[int(rand() * len(prompts))]
            max_tokens = 4096 if rand() < 0.7 else 1024
            request = (
                f'{{"model": {route.model_json}, "messages": [{{"role": "user", "content": {prompt_json}}}], '
                f'"max_tokens": {max_tokens}, "demo": true}}'
            )
            if status == 200:
                prompt_tokens = int(lognorm(log(spec.prompt_median), 0.9)) + 8
                completion_tokens = min(int(lognorm(log(spec.completion_median), 0.8)) + 1, max_tokens)
                total = prompt_tokens + completion_tokens
                finish = "length" if completion_tokens == max_tokens else "stop"
                response = (
                    f'{{"id": "demo-{row_id.hex[:12]}", "model": {route.model_json}, "finish_reason": "{finish}", '
                    f'"usage": {{"prompt_tokens": {prompt_tokens}, "completion_tokens": {completion_tokens}, '
                    f'"total_tokens": {total}}}, "demo": true}}'
                )
                duration = int((spec.first_token_ms + completion_tokens * spec.ms_per_token) * lognorm(0.0, 0.25))
                error = None
            else:
                # Failed calls are not billed: zero tokens, so tokensUsed = prompt + completion still holds.
                prompt_tokens = completion_tokens = total = 0
                pick = int(rand() * len(ERROR_MESSAGES[status]))
                error = ERROR_MESSAGES[status][pick]
                response = error_bodies[status][pick]
                if status == 504:
                    duration = 60_000 + int(rand() * 500)
                elif status in (429, 401, 400):
                    duration = 15 + int(rand() * 180)
                else:
                    duration = int(lognorm(log(900), 0.6))
            created = (start + timedelta(seconds=offset)).isoformat(" ", "microseconds")
            batch.append(
                (
                    str(row_id) if dashed else row_id.hex,
                    route.user_id,
                    route.provider_id,
                    route.model,
                    "chat",
                    request,
                    response,
                    total,
                    prompt_tokens,
                    completion_tokens,
                    status,
                    error,
                    duration,
                    route.ips[0] if rand() < 0.8 else route.ips[1],
                    route.user_agents[0] if rand() < 0.75 else route.user_agents[1],
                    created,
                )
            )
        done += n
        yield batch


def _insert_batches(engine: Engine, batches: Iterable[list[tuple[Any, ...]]], bar: tqdm) -> None:
    """Each batch in a transaction of its own, with the rollups of the UTC days it touches rebuilt
    from Logs in the same transaction: an interrupted load keeps whole batches only, and the Usage
    page agrees with the rows kept (profiled on 50,000 rows, rebuilding whole days took half the
    time of adding the rows to the rollups with the call logger's upserts).

    PostgreSQL: COPY (~10x faster than INSERT; text format lets the server parse the timestamp and
    jsonb strings exactly as it would from psql); SQLite: a raw executemany in the formats
    SQLAlchemy itself writes (hex UUIDs, ISO text timestamps with microseconds, JSON text), so the
    ORM reads these rows like its own."""
    postgresql = engine.dialect.name == "postgresql"
    for batch in batches:
        if not batch:
            continue
        with transaction(engine) as session:
            cursor = session.connection().connection.cursor()  # the driver's own cursor, in this transaction
            try:
                if postgresql:
                    with cursor.copy(_PG_COPY) as copy:
                        for row in batch:
                            copy.write_row(row)
                else:
                    cursor.executemany(_SQLITE_INSERT, batch)
            finally:
                cursor.close()
            # ISO timestamps sort as text; the batch's days include those of older rows, read back too.
            first, last = (
                datetime.fromisoformat(min(r[15] for r in batch)),
                datetime.fromisoformat(max(r[15] for r in batch)),
            )
            rebuild_days(session, day_of(first), day_of(last) + timedelta(days=1))
        bar.update(len(batch))


def seed_demo(
    engine: Engine, *, rows: int, days: int, seed: int | None = None, progress: bool | None = None
) -> DemoSummary:
    """Add demo users/providers/grants (once) and `rows` demo log rows spread over the last `days` days."""
    rng = random.Random(seed)
    # Its own generator, so the logs a seed gives do not depend on whether the users existed already.
    entity_rng = random.Random(rng.getrandbits(64))
    dashed = engine.dialect.name == "postgresql"
    with transaction(engine) as session:
        summary = ensure_demo_entities(session, entity_rng)
    end = utcnow()
    start = end - timedelta(days=days)
    total_seconds = (end - start).total_seconds()
    with Session(engine) as session:
        routes = _demo_routes(session, rng, total_seconds, dashed)
    if rows and not routes:
        raise CommandError("no demo user is granted a demo provider (were the grants removed?); nothing to log")
    batch_rows = PG_BATCH_ROWS if dashed else SQLITE_BATCH_ROWS
    batches = generate_log_batches(
        routes, rows=rows, start=start, total_seconds=total_seconds, rng=rng, dashed=dashed, batch_rows=batch_rows
    )
    # By default (None) a bar on a terminal only, so logs and pipes do not fill with carriage returns.
    disable = None if progress is None else not progress
    with tqdm(total=rows, unit="row", unit_scale=True, file=sys.stderr, disable=disable, desc="demo logs") as bar:
        _insert_batches(engine, batches, bar)
    summary.logs = rows
    return summary


# --- the `seed-demo` command ----------------------------------------------------------------


def cmd_seed_demo(args: argparse.Namespace) -> None:
    from mindroute.db import ensure_schema, get_engine

    engine = get_engine()
    ensure_schema(engine)
    started = time.perf_counter()
    summary = seed_demo(engine, rows=args.rows, days=args.days, seed=args.seed)
    elapsed = time.perf_counter() - started
    print(
        f"demo data: {summary.users} users ({summary.users_created} new), "
        f"{summary.providers} providers ({summary.providers_created} new), {summary.grants_created} new grants; "
        f"added {summary.logs:,} log rows over the last {args.days} days in {elapsed:.1f} s"
    )
