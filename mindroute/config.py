"""Settings read from the environment, then `.streamlit/secrets.toml`, then defaults."""

from __future__ import annotations

import os
import stat
import sys
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from cryptography.fernet import Fernet
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

N = TypeVar("N", int, float)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _home() -> Path:
    """Where data/ and .streamlit/ are looked for by default: the checkout (it has Home.py), or, for an installed
    package (PROJECT_ROOT is then site-packages), the folder the command runs in."""
    return PROJECT_ROOT if (PROJECT_ROOT / "Home.py").is_file() else Path.cwd()


SECRET_KEY_FILENAME = "secret.key"  # noqa: S105 - a file name, not a secret
SQLITE_FILENAME = "mindroute.db"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
# The most messages one API request may carry (MINDROUTE_API_MAX_MESSAGES). Generous: Azure OpenAI
# refuses more than 2,048; a longer history is refused with a 400 before any of it is built.
DEFAULT_API_MAX_MESSAGES = 10_000
DEFAULT_API_MAX_BODY_BYTES = 25 * 1024 * 1024
DEFAULT_API_ROUTE_CACHE_S = 60.0
DEFAULT_LOG_QUEUE_MAX = 100_000
LOG_FORMATS = ("plain", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_RETENTION_DAYS_MAX = 36_500


class ConfigError(Exception):
    """A setting is malformed; the message names the setting and what is wrong."""


@dataclass(frozen=True)
class Settings:
    database_url: URL
    secret_keys: tuple[str, ...]
    data_dir: Path
    allow_signup: bool = False
    cookie_secure: bool | None = None  # None: decide from the request's scheme
    trust_proxy: bool = False  # take the client address from X-Forwarded-For
    allow_link_local_endpoints: bool = False  # provider endpoints on 169.254.0.0/16 or fe80::/10
    # The exact origins (scheme://host[:port]) the app is served at, MINDROUTE_PUBLIC_ORIGIN;
    # empty: the request's own (Host header and scheme).
    public_origins: tuple[str, ...] = ()
    api_max_messages: int = DEFAULT_API_MAX_MESSAGES  # messages per API request, MINDROUTE_API_MAX_MESSAGES
    # The browser origins allowed to call /v1 (CORS), MINDROUTE_API_CORS_ORIGINS; ("*",) any; empty: none.
    api_cors_origins: tuple[str, ...] = ()
    # Where the secret key came from, so the app can say it once (never the key itself).
    secret_key_source: str = field(default="environment")
    api_max_body_bytes: int = DEFAULT_API_MAX_BODY_BYTES  # MINDROUTE_API_MAX_BODY_BYTES
    api_route_cache_s: float = DEFAULT_API_ROUTE_CACHE_S  # MINDROUTE_API_ROUTE_CACHE_S; 0 re-routes every call
    log_queue_max: int = DEFAULT_LOG_QUEUE_MAX  # MINDROUTE_LOG_QUEUE_MAX
    redis_url: str | None = None  # MINDROUTE_REDIS_URL: the per-minute counters in Redis
    alert_webhook_url: str | None = None  # MINDROUTE_ALERT_WEBHOOK_URL (checked like an endpoint on first use)
    log_format: str = "plain"  # MINDROUTE_LOG_FORMAT: plain or json lines on stdout
    log_level: str = "info"  # MINDROUTE_LOG_LEVEL
    metrics_token: str | None = None  # MINDROUTE_METRICS_TOKEN: /metrics answers only with it (else 404)
    log_retention_days: int | None = None  # MINDROUTE_LOG_RETENTION_DAYS: logs older than this deleted daily
    password_signin: bool = True  # MINDROUTE_PASSWORD_SIGNIN: false leaves single sign-on as the only way in
    oidc_create_users: bool = False  # MINDROUTE_OIDC_CREATE_USERS
    oidc_admin_group: str | None = None  # MINDROUTE_OIDC_ADMIN_GROUP
    oidc_groups_claim: str = "groups"  # MINDROUTE_OIDC_GROUPS_CLAIM
    oidc_admin_emails: frozenset[str] = frozenset()  # MINDROUTE_OIDC_ADMIN_EMAILS, comma-separated


def _secrets_toml() -> dict[str, object]:
    path = Path(os.environ.get("MINDROUTE_SECRETS_FILE", _home() / ".streamlit" / "secrets.toml"))
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def _lookup(name: str, secrets: dict[str, object]) -> str | None:
    """The environment wins over secrets.toml."""
    if name in os.environ and os.environ[name] != "":
        return os.environ[name]
    value = secrets.get(name)
    return None if value is None else str(value)


def parse_bool(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def normalize_origin(raw: str) -> str | None:
    """`scheme://host[:port]` lower-cased, without a default port; None unless http(s) with a host
    and nothing else (no path, query, user or password)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_public_origins(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    origins = []
    for part in raw.split(","):
        if not part.strip():
            continue
        origin = normalize_origin(part)
        if origin is None:
            raise ConfigError(
                f"MINDROUTE_PUBLIC_ORIGIN: {part.strip()!r} is not an origin "
                "(expected e.g. https://console.example.com or http://10.0.0.5:8501, comma-separated)"
            )
        origins.append(origin)
    return tuple(origins)


def parse_cors_origins(raw: str | None) -> tuple[str, ...]:
    """MINDROUTE_API_CORS_ORIGINS: comma-separated exact origins, or "*" for any; empty or unset: none."""
    if raw is None:
        return ()
    origins = []
    for part in raw.split(","):
        if not part.strip():
            continue
        origin = "*" if part.strip() == "*" else normalize_origin(part)
        if origin is None:
            raise ConfigError(
                f"MINDROUTE_API_CORS_ORIGINS: {part.strip()!r} is not an origin "
                "(expected e.g. https://app.example.com, comma-separated, or *)"
            )
        origins.append(origin)
    return tuple(origins)


def parse_database_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:  # ValueError: e.g. a port that is not a number
        raise ConfigError(
            "MINDROUTE_DATABASE_URL: not a database URL "
            "(expected e.g. postgresql+psycopg://user@host/db or sqlite:///path/to/file.db)"
        ) from exc
    backend = url.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise ConfigError(f"MINDROUTE_DATABASE_URL: unsupported database {backend!r} (use postgresql or sqlite)")
    if backend == "postgresql" and url.drivername != "postgresql+psycopg":
        # psycopg 3 is the driver we install and test; anything else would fail later and less clearly.
        url = url.set(drivername="postgresql+psycopg")
    return url


def parse_secret_keys(raw: str, source: str = "MINDROUTE_SECRET_KEY") -> tuple[str, ...]:
    keys = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not keys:
        raise ConfigError(f"{source}: empty (expected one or more Fernet keys, newest first)")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{source}: key #{position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes; make one with `python -m mindroute generate-secret`)"
            ) from None
    return keys


def _generated_secret_keys(data_dir: Path) -> tuple[tuple[str, ...], str]:
    """Read the local key file, creating it (owner-only) on first run."""
    path = data_dir / SECRET_KEY_FILENAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key().decode()
        # O_EXCL: two processes starting together must not both write a different key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(key + "\n")
            print(
                f"MindRoute: generated a new secret key in {path} (owner-only). "
                "Back it up: stored provider keys cannot be decrypted without it.",
                file=sys.stderr,
            )
    return parse_secret_keys(path.read_text(), source=str(path)), str(path)


def load_settings() -> Settings:
    secrets = _secrets_toml()
    data_dir = Path(_lookup("MINDROUTE_DATA_DIR", secrets) or _home() / "data")

    raw_url = _lookup("MINDROUTE_DATABASE_URL", secrets)
    if raw_url is None:
        database_url = URL.create("sqlite", database=str(data_dir / SQLITE_FILENAME))
    else:
        database_url = parse_database_url(raw_url)

    raw_key = _lookup("MINDROUTE_SECRET_KEY", secrets)
    if raw_key is None:
        secret_keys, source = _generated_secret_keys(data_dir)
    else:
        secret_keys, source = parse_secret_keys(raw_key), "environment"

    raw_secure = _lookup("MINDROUTE_COOKIE_SECURE", secrets)
    cookie_secure = None if raw_secure in (None, "auto") else parse_bool("MINDROUTE_COOKIE_SECURE", raw_secure, False)

    load_upstream_limits()  # read on the first upstream call; a malformed one stops start-up here already

    return Settings(
        database_url=database_url,
        secret_keys=secret_keys,
        data_dir=data_dir,
        allow_signup=parse_bool("MINDROUTE_ALLOW_SIGNUP", _lookup("MINDROUTE_ALLOW_SIGNUP", secrets), False),
        cookie_secure=cookie_secure,
        trust_proxy=parse_bool("MINDROUTE_TRUST_PROXY", _lookup("MINDROUTE_TRUST_PROXY", secrets), False),
        allow_link_local_endpoints=parse_bool(
            "MINDROUTE_ALLOW_LINK_LOCAL_ENDPOINTS", _lookup("MINDROUTE_ALLOW_LINK_LOCAL_ENDPOINTS", secrets), False
        ),
        public_origins=parse_public_origins(_lookup("MINDROUTE_PUBLIC_ORIGIN", secrets)),
        api_max_messages=parse_positive_int(
            "MINDROUTE_API_MAX_MESSAGES", _lookup("MINDROUTE_API_MAX_MESSAGES", secrets), DEFAULT_API_MAX_MESSAGES
        ),
        api_cors_origins=parse_cors_origins(_lookup("MINDROUTE_API_CORS_ORIGINS", secrets)),
        secret_key_source=source,
        **_operations_settings(secrets),
    )


def _choice(name: str, raw: str | None, choices: tuple[str, ...], default: str) -> str:
    if raw is None:
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {raw!r}")
    return value


def _text(raw: str | None) -> str | None:
    return raw.strip() or None if raw is not None else None


def parse_seconds(name: str, raw: str | None, default: float) -> float:
    """A number of seconds, 0 or more (3, 0.5)."""
    if raw is None:
        return default
    try:
        value = float(raw.strip().replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name}: expected a number of seconds, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name}: must be 0 or more seconds, got {raw!r}")
    return value


def _operations_settings(secrets: dict[str, object]) -> dict[str, object]:
    """The API's, the log's, the metrics' and single sign-on's settings, each checked here so a malformed one
    stops start-up with its name."""

    def raw(name: str) -> str | None:
        return _lookup(name, secrets)

    retention = raw("MINDROUTE_LOG_RETENTION_DAYS")
    emails = raw("MINDROUTE_OIDC_ADMIN_EMAILS") or ""
    return {
        "api_max_body_bytes": parse_positive_int(
            "MINDROUTE_API_MAX_BODY_BYTES", raw("MINDROUTE_API_MAX_BODY_BYTES"), DEFAULT_API_MAX_BODY_BYTES
        ),
        "api_route_cache_s": parse_seconds(
            "MINDROUTE_API_ROUTE_CACHE_S", raw("MINDROUTE_API_ROUTE_CACHE_S"), DEFAULT_API_ROUTE_CACHE_S
        ),
        "log_queue_max": parse_positive_int(
            "MINDROUTE_LOG_QUEUE_MAX", raw("MINDROUTE_LOG_QUEUE_MAX"), DEFAULT_LOG_QUEUE_MAX
        ),
        "redis_url": _redis_url(raw("MINDROUTE_REDIS_URL")),
        "alert_webhook_url": _text(raw("MINDROUTE_ALERT_WEBHOOK_URL")),
        "log_format": _choice("MINDROUTE_LOG_FORMAT", raw("MINDROUTE_LOG_FORMAT"), LOG_FORMATS, "plain"),
        "log_level": _choice("MINDROUTE_LOG_LEVEL", raw("MINDROUTE_LOG_LEVEL"), LOG_LEVELS, "info"),
        "metrics_token": _metrics_token(raw("MINDROUTE_METRICS_TOKEN")),
        "log_retention_days": None if _text(retention) is None else _retention_days(retention),
        "password_signin": parse_bool("MINDROUTE_PASSWORD_SIGNIN", raw("MINDROUTE_PASSWORD_SIGNIN"), True),
        "oidc_create_users": parse_bool("MINDROUTE_OIDC_CREATE_USERS", raw("MINDROUTE_OIDC_CREATE_USERS"), False),
        "oidc_admin_group": _text(raw("MINDROUTE_OIDC_ADMIN_GROUP")),
        "oidc_groups_claim": _text(raw("MINDROUTE_OIDC_GROUPS_CLAIM")) or "groups",
        "oidc_admin_emails": frozenset(e.strip().lower() for e in emails.split(",") if e.strip()),
    }


def _retention_days(raw: str) -> int:
    days = parse_positive_int("MINDROUTE_LOG_RETENTION_DAYS", raw, 0, 1)
    if days > LOG_RETENTION_DAYS_MAX:
        raise ConfigError(f"MINDROUTE_LOG_RETENTION_DAYS: at most {LOG_RETENTION_DAYS_MAX:,} days, got {days:,}")
    return days


def _redis_url(raw: str | None) -> str | None:
    url = _text(raw)
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("MINDROUTE_REDIS_URL: expected a redis://, rediss:// or unix:// URL")  # never the value
    return url


METRICS_TOKEN_MIN_CHARS = 16


def _metrics_token(raw: str | None) -> str | None:
    token = _text(raw)
    if token is not None and len(token) < METRICS_TOKEN_MIN_CHARS:
        raise ConfigError(f"MINDROUTE_METRICS_TOKEN: must be at least {METRICS_TOKEN_MIN_CHARS} characters")
    return token


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()


# --- limits on what upstream providers may send and hold --------------------------------------

DEFAULT_UPSTREAM_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_UPSTREAM_MAX_LINE_BYTES = 1024 * 1024
DEFAULT_UPSTREAM_CONNECTIONS_PER_HOST = 100
DEFAULT_UPSTREAM_CONNECTIONS_TOTAL = 1000


@dataclass(frozen=True)
class UpstreamLimits:
    """What one provider's answer may be, and how many connections calls to providers may hold."""

    # The whole body of an answer, counted after decompression (a streamed answer too).
    max_body_bytes: int = DEFAULT_UPSTREAM_MAX_BODY_BYTES
    # One line of a streamed answer, and one server-sent event (its data lines together).
    max_line_bytes: int = DEFAULT_UPSTREAM_MAX_LINE_BYTES
    # Connections to one provider (scheme, host and port) at a time, so one slow provider cannot take
    # every connection; calls over it wait up to the pool timeout for one.
    connections_per_host: int = DEFAULT_UPSTREAM_CONNECTIONS_PER_HOST
    # Connections to all providers together, per process (per event loop on the API's path).
    connections_total: int = DEFAULT_UPSTREAM_CONNECTIONS_TOTAL


def parse_positive_int(name: str, raw: str | None, default: int, minimum: int = 1) -> int:
    """A whole number of at least `minimum`; digits only, with optional _ separators (32_000_000)."""
    if raw is None:
        return default
    text = raw.strip().replace("_", "")
    if not text.isdigit():
        raise ConfigError(f"{name}: expected a whole number, got {raw!r}")
    value = int(text)
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    return value


def load_upstream_limits() -> UpstreamLimits:
    secrets = _secrets_toml()

    def number(name: str, default: int, minimum: int) -> int:
        return parse_positive_int(name, _lookup(name, secrets), default, minimum)

    limits = UpstreamLimits(
        max_body_bytes=number("MINDROUTE_UPSTREAM_MAX_BODY_BYTES", DEFAULT_UPSTREAM_MAX_BODY_BYTES, 1024),
        max_line_bytes=number("MINDROUTE_UPSTREAM_MAX_LINE_BYTES", DEFAULT_UPSTREAM_MAX_LINE_BYTES, 1024),
        connections_per_host=number(
            "MINDROUTE_UPSTREAM_CONNECTIONS_PER_HOST", DEFAULT_UPSTREAM_CONNECTIONS_PER_HOST, 1
        ),
        connections_total=number("MINDROUTE_UPSTREAM_CONNECTIONS_TOTAL", DEFAULT_UPSTREAM_CONNECTIONS_TOTAL, 1),
    )
    if limits.max_line_bytes > limits.max_body_bytes:
        raise ConfigError(
            "MINDROUTE_UPSTREAM_MAX_LINE_BYTES: must not be more than MINDROUTE_UPSTREAM_MAX_BODY_BYTES "
            f"({limits.max_line_bytes} > {limits.max_body_bytes})"
        )
    if limits.connections_total < limits.connections_per_host:
        raise ConfigError(
            "MINDROUTE_UPSTREAM_CONNECTIONS_TOTAL: must be at least MINDROUTE_UPSTREAM_CONNECTIONS_PER_HOST "
            f"({limits.connections_total} < {limits.connections_per_host})"
        )
    return limits


@lru_cache(maxsize=1)
def get_upstream_limits() -> UpstreamLimits:
    """The process's upstream limits, read once (tests clear the cache after changing the environment)."""
    return load_upstream_limits()
