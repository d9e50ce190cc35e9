"""Input validation against the schema's limits, with messages a person can act on."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from mindroute.i18n import N_, Message, _l, _ln
from mindroute.models import ROLES, TICKET_STATUSES
from mindroute.providers.registry import supported_protocols

EMAIL_MAX = 255
NAME_MAX = 100
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_BYTES = 72  # bcrypt's limit
PROVIDER_NAME_MAX = 100
ENDPOINT_URL_MAX = 255
API_KEY_NAME_MAX = 255
TICKET_SUBJECT_MAX = 255
MODEL_ID_MAX = 100


class ValidationError(Exception):
    """Bad input for one field; `field` names the form field the message belongs to. The message is a deferred
    `Message` (`_l(...)`): its str is English (the API, the CLI, logs), the page shows `i18n.text(exc)`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message


class FormValidationError(ValidationError):
    """Bad input in several fields at once; `problems` maps each field to its message, in the form's order.
    `field`/`message` are the first problem's, so code that expects one ValidationError still reads it."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        first_field, first_message = next(iter(problems.items()))
        more = len(problems) - 1
        message = (
            _ln("{first} (and {n} more problem)", "{first} (and {n} more problems)", more, first=first_message)
            if more
            else first_message
        )
        super().__init__(first_field, message)
        self.problems = dict(problems)


T = TypeVar("T")


class FieldChecks:
    """Runs a form's checks one after another and keeps every refusal, so the form can show them all at once
    (each at its field) instead of one per submit."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {}

    def check(self, check: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """`check(*args, **kwargs)`, or None when it refuses (its message kept: the first one per field)."""
        try:
            return check(*args, **kwargs)
        except FormValidationError as exc:
            for field, message in exc.problems.items():
                self.problems.setdefault(field, message)
        except ValidationError as exc:
            self.problems.setdefault(exc.field, exc.message)
        return None

    def refused(self, field: str) -> bool:
        return field in self.problems

    def raise_any(self) -> None:
        """Raise what was refused: a ValidationError for one field, FormValidationError for several."""
        if len(self.problems) == 1:
            [(field, message)] = self.problems.items()
            raise ValidationError(field, message)
        if self.problems:
            raise FormValidationError(self.problems)


def _required_text(value: str | None, field: str, label: Message, max_len: int) -> str:
    """`value` stripped; `label` is the field's name as a Message (`_l("Email")`), shown inside the refusal."""
    cleaned = (value or "").strip()
    if not cleaned:
        raise ValidationError(field, _l("{label} is required", label=label))
    if len(cleaned) > max_len:
        raise ValidationError(
            field,
            _l("{label} must be at most {max} characters (got {got})", label=label, max=max_len, got=len(cleaned)),
        )
    return cleaned


def normalize_email(value: str | None, field: str = "email") -> str:
    """An address as email-validator reads it (RFC syntax, internationalised domains such as 예시.한국, no quoted
    local parts or IP literals; nothing is looked up), normalised and lower-cased as every email is stored."""
    email = _required_text(value, field, _l("Email"), EMAIL_MAX)
    try:
        checked = validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationError(
            field, _l("Enter an email address like name@example.com: {reason}", reason=str(exc))
        ) from None
    return checked.normalized.lower()


def validate_name(value: str | None, field: str = "name") -> str:
    name = _required_text(value, field, _l("Name"), NAME_MAX)
    if any(ord(ch) < 32 for ch in name):
        raise ValidationError(field, _l("Name cannot contain control characters"))
    return name


def validate_password(password: str | None, email: str | None = None, field: str = "password") -> str:
    """The one password policy: 8 characters to 72 bytes, not the email."""
    password = password or ""
    if len(password) < PASSWORD_MIN_CHARS:
        raise ValidationError(field, _l("Password must be at least {min} characters", min=PASSWORD_MIN_CHARS))
    size = len(password.encode("utf-8"))
    if size > PASSWORD_MAX_BYTES:
        raise ValidationError(
            field,
            _l(
                "Password must be at most {max} bytes (this one is {size}; "
                "characters outside ASCII take several bytes)",
                max=PASSWORD_MAX_BYTES,
                size=size,
            ),
        )
    if email and password.strip().lower() == email.strip().lower():
        raise ValidationError(field, _l("Password cannot be the same as the email address"))
    return password


def _one_of(value: str | None, allowed: Iterable[str], field: str, refusal: str) -> str:
    """`value` when one of `allowed`; else ValidationError with `refusal`, a template of {value} and {choices}."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValidationError(field, Message(refusal, value=repr(value), choices=", ".join(allowed)))
    return value


def validate_role(value: str | None, field: str = "role") -> str:
    return _one_of(value, ROLES, field, N_("Unknown role {value}: choose one of {choices}"))


def validate_ticket_status(value: str | None, field: str = "status") -> str:
    return _one_of(value, TICKET_STATUSES, field, N_("Unknown status {value}: choose one of {choices}"))


def validate_protocol(value: str | None, field: str = "protocol") -> str:
    return _one_of(value, supported_protocols(), field, N_("Unknown protocol {value}: choose one of {choices}"))


def validate_provider_name(value: str | None, field: str = "name") -> str:
    return _required_text(value, field, _l("Provider name"), PROVIDER_NAME_MAX)


def _ipv4_of(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a literal host names, in any form a resolver accepts ("169.254.169.254",
    "2852039166", "0xa9.0xfe.43518", "0251.0376.0251.0376"), else None."""
    if not host or not all(ch in "0123456789abcdefx." for ch in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address carried inside an IPv6 one (mapped, compatible, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = int(address)
    if (packed >> 32 == 0 and packed > 1) or address in _NAT64:  # ::a.b.c.d and 64:ff9b::a.b.c.d
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_link_local_host(host: str | None) -> bool:
    """Whether `host` (a URL's hostname, lower-case, without brackets) is a link-local address
    literal: 169.254.0.0/16 or fe80::/10, also written as an integer, in hex or octal, or inside an
    IPv6 address (::ffff:169.254.169.254). Names are not resolved."""
    host = (host or "").strip().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        address = _ipv4_of(host)
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_link_local:
            return True
        address = _embedded_ipv4(address)
    return address is not None and address.is_link_local


RESOLVE_TIMEOUT_S = 1.0


def resolves_to_link_local(
    host: str, resolve: Callable[..., list[tuple[Any, ...]]] = socket.getaddrinfo, timeout_s: float = RESOLVE_TIMEOUT_S
) -> bool:
    """Whether the name `host` resolves (now, within `timeout_s`) to a link-local address, like
    `169.254.169.254.nip.io` or `metadata.google.internal` do. A name that does not resolve, or not
    in time, is not refused here: what it resolves to at call time can differ anyway."""
    found: list[str] = []

    def lookup() -> None:
        with contextlib.suppress(OSError, UnicodeError, ValueError):
            found.extend(str(info[4][0]) for info in resolve(host, None, proto=socket.IPPROTO_TCP))

    worker = threading.Thread(target=lookup, name="endpoint-dns", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return any(is_link_local_host(address) for address in list(found))


def validate_endpoint_url(value: str | None, field: str = "endpoint_url", *, allow_link_local: bool = False) -> str:
    """An http(s) URL naming a host, without credentials; link-local hosts (cloud metadata
    services live there) only when `allow_link_local` (MINDROUTE_ALLOW_LINK_LOCAL_ENDPOINTS)."""
    url = _required_text(value, field, _l("Endpoint URL"), ENDPOINT_URL_MAX)
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError:
        raise ValidationError(field, _l("Endpoint URL has a port that is not a number from 1 to 65535")) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationError(field, _l("Endpoint URL must start with http:// or https:// and name a host"))
    if parts.username or parts.password:
        raise ValidationError(field, _l("Endpoint URL must not contain credentials; put the key in the API key field"))
    if not allow_link_local and (is_link_local_host(parts.hostname) or resolves_to_link_local(parts.hostname)):
        raise ValidationError(
            field,
            _l(
                "Endpoint URL names or resolves to a link-local address (169.254.0.0/16 or fe80::/10, where cloud "
                "metadata services answer); an administrator can allow these with {setting}",
                setting="MINDROUTE_ALLOW_LINK_LOCAL_ENDPOINTS=1",
            ),
        )
    return url.rstrip("/")


def endpoint_origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an endpoint URL, the port filled in from the scheme: where a key goes."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").rstrip("."), port or (443 if scheme == "https" else 80)


def validate_optional_positive_int(value: object, field: str, label: Message) -> int | None:
    """A whole number above 0, or None when blank; `label` names the field in the refusal (`_l("Max tokens")`)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValidationError(field, _l("{label} must be a whole number", label=label))
    if isinstance(value, float):
        if not value.is_integer():
            raise ValidationError(field, _l("{label} must be a whole number", label=label))
        value = int(value)
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValidationError(field, _l("{label} must be a whole number", label=label)) from None
    if number <= 0:
        raise ValidationError(field, _l("{label} must be greater than 0", label=label))
    if number > 2_147_483_647:
        raise ValidationError(field, _l("{label} is too large", label=label))
    return number


def validate_api_key_name(value: str | None, field: str = "name") -> str:
    return _required_text(value, field, _l("Key name"), API_KEY_NAME_MAX)


def validate_ticket_subject(value: str | None, field: str = "subject") -> str:
    return _required_text(value, field, _l("Subject"), TICKET_SUBJECT_MAX)


PROVIDER_API_KEY_MAX = 4096


def validate_flag(value: object, field: str, label: Message) -> bool:
    """A checkbox value: only True or False (a string like "false" would otherwise read as True)."""
    if not isinstance(value, bool):
        raise ValidationError(field, _l("{label} must be on or off", label=label))
    return value


def validate_provider_api_key(value: str | None, field: str = "api_key") -> str | None:
    """A provider key as typed: None when blank. Messages never repeat the key."""
    key = (value or "").strip()
    if not key:
        return None
    if len(key) > PROVIDER_API_KEY_MAX:
        raise ValidationError(field, _l("API key must be at most {max} characters", max=PROVIDER_API_KEY_MAX))
    # It travels in an HTTP header: printable ASCII with no spaces (a pasted line break is the usual cause).
    if not all(33 <= ord(ch) <= 126 for ch in key):
        raise ValidationError(field, _l("API key cannot contain spaces, line breaks or characters outside ASCII"))
    return key


def validate_model_id(value: object, field: str = "model") -> str:
    if not isinstance(value, str):
        raise ValidationError(field, _l("A model id must be text, got {value}", value=repr(value)))
    model = _required_text(value, field, _l("Model id"), MODEL_ID_MAX)
    if any(ord(ch) < 32 for ch in model):
        raise ValidationError(field, _l("A model id cannot contain control characters"))
    return model
